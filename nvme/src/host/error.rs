//! Errors of the host driver.

use crate::spec::status::Status;
use crate::spec::tcp::pdu::Fes;

/// Every error the NVMe host driver reports. A controller that reports a protocol error
/// (`Protocol`, `TermReq`, `BadIdentify`, `Timeout`) is failed: its qpair stops and every
/// outstanding command completes with Aborted - SQ Deletion; [`super::Controller::reset`]
/// reconnects it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A transport ID string or field is malformed or names something unsupported.
    #[error("invalid transport ID: {0}")]
    InvalidTrid(String),
    /// A socket operation failed (connect, read, write).
    #[error("{op} failed: {msg}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error text.
        msg: String,
    },
    /// The target closed the connection.
    #[error("connection closed by the target")]
    Closed,
    /// The target broke the NVMe/TCP or NVMe protocol (malformed PDU, CQE for an unknown
    /// CID, data outside the command's transfer, ...).
    #[error("protocol error from target: {0}")]
    Protocol(String),
    /// The target sent a C2HTermReq.
    #[error("target terminated the connection: FES {fes:#x}")]
    TermReq {
        /// Fatal error status sent by the target.
        fes: u16,
    },
    /// A command completed with an error status.
    #[error("{what} failed: {status}")]
    Command {
        /// The command.
        what: &'static str,
        /// Its completion status.
        status: Status,
    },
    /// Identify (or log page) data that cannot be true (e.g. NLBAF or LBADS out of range).
    #[error("invalid identify data: {0}")]
    BadIdentify(String),
    /// A command or state change did not complete in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The qpair has no free command identifier (queue full).
    #[error("queue full")]
    QueueFull,
    /// The qpair or controller failed earlier and must be reset/reconnected.
    #[error("qpair failed: {0}")]
    Failed(String),
    /// A request is malformed (buffer size does not match the LBA count, unknown namespace...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The controller does not support what was asked (authentication, I/O on discovery...).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

impl HostError {
    pub(crate) fn io(op: &'static str, e: &std::io::Error) -> Self {
        HostError::Io {
            op,
            msg: e.to_string(),
        }
    }

    pub(crate) fn term_req(fes: Fes) -> Self {
        HostError::TermReq { fes: fes.0 }
    }
}

impl From<crate::Error> for HostError {
    fn from(e: crate::Error) -> Self {
        HostError::Protocol(e.to_string())
    }
}
