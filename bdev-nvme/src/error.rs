//! Errors of the nvme bdev module.

/// Every error this crate reports; [`BdevNvmeError::errno`] gives SPDK's errno for RPCs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BdevNvmeError {
    /// A parameter is invalid or names something unsupported (EINVAL).
    #[error("{0}")]
    InvalidArgument(String),
    /// A controller with this name exists already (EEXIST).
    #[error("A controller named {0} already exists and multipath is disabled")]
    Exists(String),
    /// No controller has this name (ENODEV).
    #[error("controller {0} not found")]
    NotFound(String),
    /// An attach under this name is still connecting: a second attach or a detach of the
    /// name must wait for its answer (EBUSY).
    #[error("controller {0} is still being attached")]
    AttachInProgress(String),
    /// As many attaches as allowed are still connecting (EAGAIN).
    #[error("too many controller attaches in progress (at most {0}); try again later")]
    TooManyAttaches(usize),
    /// Not allowed in the current state (EPERM).
    #[error("{0}")]
    NotPermitted(String),
    /// The NVMe host driver failed (connect, identify, ...) (EIO, or ENODEV when the target
    /// cannot be reached).
    #[error("{0}")]
    Host(#[from] nvme::host::HostError),
    /// The bdev layer refused a bdev (its errno).
    #[error("{0}")]
    Bdev(#[from] bdev::BdevError),
}

const EINVAL: i32 = 22;
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const EPERM: i32 = 1;
const EIO: i32 = 5;
const EBUSY: i32 = 16;
const EAGAIN: i32 = 11;

impl BdevNvmeError {
    /// SPDK's errno (positive).
    pub fn errno(&self) -> i32 {
        match self {
            BdevNvmeError::InvalidArgument(_) => EINVAL,
            BdevNvmeError::Exists(_) => EEXIST,
            BdevNvmeError::NotFound(_) => ENODEV,
            BdevNvmeError::NotPermitted(_) => EPERM,
            BdevNvmeError::AttachInProgress(_) => EBUSY,
            BdevNvmeError::TooManyAttaches(_) => EAGAIN,
            BdevNvmeError::Host(nvme::host::HostError::Io { .. }) => ENODEV,
            BdevNvmeError::Host(nvme::host::HostError::InvalidTrid(_)) => EINVAL,
            BdevNvmeError::Host(_) => EIO,
            BdevNvmeError::Bdev(e) => e.errno(),
        }
    }
}
