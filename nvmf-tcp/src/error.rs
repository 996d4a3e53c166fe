//! Errors of the TCP transport.

use nvme::spec::tcp::Fes;

/// What can go wrong in the NVMe/TCP transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcpError {
    /// A transport-specific option is unknown or has the wrong type.
    #[error("invalid transport option: {0}")]
    InvalidOption(String),
    /// The host violated the NVMe/TCP protocol; a C2HTermReq was queued and the connection
    /// must be closed once it is written.
    #[error("NVMe/TCP protocol error (FES {fes:#x}, FEI {fei:#x}): {reason}")]
    Protocol {
        /// Fatal error status sent in the TermReq.
        fes: u16,
        /// Fatal error information sent in the TermReq.
        fei: u32,
        /// Human-readable cause.
        reason: String,
    },
    /// The host sent an H2CTermReq (it terminates the connection).
    #[error("host terminated the connection (FES {0:#x})")]
    HostTerminated(u16),
    /// A socket operation failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl TcpError {
    /// A protocol error with its TermReq values.
    pub fn protocol(fes: Fes, fei: u32, reason: impl Into<String>) -> TcpError {
        TcpError::Protocol {
            fes: fes.0,
            fei,
            reason: reason.into(),
        }
    }
}
