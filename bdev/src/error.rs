//! The bdev crate's error type.

/// Errors of the bdev layer. Each maps to the errno SPDK returns in the same case
/// ([`BdevError::errno`]), which RPC handlers turn into `{"code": -errno, "message": strerror}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BdevError {
    /// No bdev has this name or alias (ENODEV).
    #[error("bdev {0} not found")]
    NotFound(String),
    /// A bdev name or alias (or UUID alias) is already registered (EEXIST).
    #[error("bdev name or alias {0} already exists")]
    Exists(String),
    /// A parameter is out of the accepted range (EINVAL).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The bdev is being unregistered; it accepts no new descriptors (ENODEV).
    #[error("bdev {0} is being removed")]
    Removing(String),
    /// A claim or a writable open conflicts with an existing claim or writer (EPERM).
    #[error("bdev {bdev}: {reason}")]
    ClaimConflict {
        /// The bdev concerned.
        bdev: String,
        /// Why the claim or open was refused.
        reason: String,
    },
    /// A resource (channel, memory) could not be allocated (ENOMEM).
    #[error("out of memory: {0}")]
    NoMemory(String),
    /// The call must be made on an env Thread and was not (EINVAL).
    #[error("not called on an env thread")]
    NoThread,
    /// The module's channel could not be created (the module's reason) (ENOMEM).
    #[error("cannot create I/O channel for bdev {bdev}: {reason}")]
    Channel {
        /// The bdev concerned.
        bdev: String,
        /// The module's or env's reason.
        reason: String,
    },
    /// The bdev is already being unregistered (EBUSY).
    #[error("bdev {0} is busy")]
    Busy(String),
    /// The operation is not allowed in the current state, e.g. options after init (EPERM).
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
}

impl BdevError {
    /// The positive errno SPDK uses for this error (`-errno` is the JSON-RPC code).
    pub fn errno(&self) -> i32 {
        match self {
            BdevError::NotFound(_) | BdevError::Removing(_) => libc_errno::ENODEV,
            BdevError::Exists(_) => libc_errno::EEXIST,
            BdevError::InvalidArgument(_) | BdevError::NoThread => libc_errno::EINVAL,
            BdevError::ClaimConflict { .. } | BdevError::NotPermitted(_) => libc_errno::EPERM,
            BdevError::NoMemory(_) | BdevError::Channel { .. } => libc_errno::ENOMEM,
            BdevError::Busy(_) => libc_errno::EBUSY,
        }
    }

    /// The message SPDK sends with this errno (`spdk_strerror`, i.e. glibc's `strerror`).
    pub fn strerror(&self) -> &'static str {
        strerror(self.errno())
    }
}

/// glibc's `strerror` text for the errnos this crate produces.
pub fn strerror(errno: i32) -> &'static str {
    match errno {
        libc_errno::EPERM => "Operation not permitted",
        libc_errno::ENOMEM => "Cannot allocate memory",
        libc_errno::EEXIST => "File exists",
        libc_errno::ENODEV => "No such device",
        libc_errno::EINVAL => "Invalid argument",
        libc_errno::EBUSY => "Device or resource busy",
        libc_errno::ENOTSUP => "Operation not supported",
        _ => "Unknown error",
    }
}

/// Linux errno values used by this crate (asm-generic/errno-base.h).
pub mod libc_errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Operation not supported.
    pub const ENOTSUP: i32 = 95;
}
