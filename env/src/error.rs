//! The crate's error type.

/// Every error the environment layer reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// A core mask string could not be parsed (SPDK syntaxes: `0x3`, `3`, `[0-3,7]`).
    #[error("invalid core mask {mask:?}: {reason}")]
    InvalidCpuMask {
        /// The text given.
        mask: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A core mask selects no core.
    #[error("core mask is empty")]
    EmptyCpuMask,
    /// A core in the mask does not exist or is not allowed for this process (sched_getaffinity).
    #[error("core {0} is not available to this process")]
    CoreNotAvailable(u32),
    /// The call needs a current lightweight Thread (it must run inside `Thread::poll`,
    /// on a reactor, or after `TestThreads::set_current`).
    #[error("no current lightweight thread on this OS thread")]
    NoCurrentThread,
    /// The target Thread's message ring is full; the message was not queued.
    #[error("message ring of thread {0:?} is full")]
    RingFull(String),
    /// The target Thread has exited; the message was not queued.
    #[error("thread {0:?} has exited")]
    ThreadExited(String),
    /// An argument is out of its allowed range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The system call or operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A planned allocation of DMA memory is larger than the memory the system can still
    /// give ([`crate::dma::check_available`]); nothing was allocated (ENOMEM).
    #[error("cannot allocate {requested} bytes of DMA memory: only {available} bytes available")]
    NoMemory {
        /// Bytes asked for.
        requested: u64,
        /// Bytes available (see [`crate::dma::mem_available`]).
        available: u64,
    },
    /// `iobuf_set_options` was called after the buffer pools were initialised.
    #[error("iobuf pools are already initialised; options can only be set before")]
    IobufInitialized,
    /// The requested buffer is larger than the large buffer size of the pool.
    #[error("iobuf request of {len} bytes exceeds the large buffer size {max}")]
    IobufTooLarge {
        /// The requested length.
        len: usize,
        /// The pool's large buffer size.
        max: usize,
    },
    /// The reactors are not running (not started yet, or stopped).
    #[error("reactors are not running")]
    ReactorNotRunning,
    /// No reactor runs on the given core.
    #[error("no reactor on core {0}")]
    NoSuchCore(u32),
    /// A reactor OS thread panicked or could not start.
    #[error("reactor on core {core} failed: {reason}")]
    ReactorFailed {
        /// The reactor's core.
        core: u32,
        /// What went wrong.
        reason: String,
    },
}

impl EnvError {
    /// Builds an [`EnvError::Os`] from the last OS error (`errno`).
    pub(crate) fn last_os(op: &'static str) -> EnvError {
        EnvError::Os {
            op,
            source: std::io::Error::last_os_error(),
        }
    }
}
