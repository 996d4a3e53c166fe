//! Requests and responses crossing the transport boundary (SPDK `spdk_nvmf_request`).
//!
//! A transport decodes a command capsule into a [`Request`]: the SQE, the transfer length it
//! parsed from the SGL, and, for host-to-controller commands, the data it already received
//! into a [`DataBuf`]. The controller answers with a [`Response`]: the CQE and, for
//! controller-to-host commands, the data to send.
//!
//! [`DataBuf`] is a list of owned segments; the same segments move into the bdev layer's
//! scatter-gather list ([`bdev::IoVecs`]) and back out of its completion, so a write is never copied between the
//! socket and the bdev and a read is never copied between the bdev and the socket.

use nvme::spec::{Cqe, Sqe, Status};

/// The data buffer of a request: the bdev layer's owned scatter-gather list, so the same
/// segments (heap, DMA or iobuf memory) go from the transport to the bdev and back.
pub use bdev::{IoVec, IoVecs as DataBuf};

/// One command as the transport hands it to [`crate::Qpair::handle_request`].
#[derive(Debug)]
pub struct Request {
    /// The submission queue entry.
    pub sqe: Sqe,
    /// Transfer length in bytes from the command's SGL (0 when the command moves no data).
    pub length: u32,
    /// Host-to-controller data, fully received (`length` bytes); None for other commands.
    pub data: Option<DataBuf>,
}

impl Request {
    /// A command that moves no data or reads `length` bytes.
    pub fn new(sqe: Sqe, length: u32) -> Request {
        Request {
            sqe,
            length,
            data: None,
        }
    }

    /// A command carrying host-to-controller data.
    pub fn with_data(sqe: Sqe, data: DataBuf) -> Request {
        let length = u32::try_from(data.total_len()).unwrap_or(u32::MAX);
        Request {
            sqe,
            length,
            data: Some(data),
        }
    }
}

/// The answer to one [`Request`], yielded by [`crate::Qpair::poll_response`].
#[derive(Debug)]
pub struct Response {
    /// The completion queue entry (CID, status, DW0/DW1, SQHD, SQID filled in).
    pub cqe: Cqe,
    /// Controller-to-host data to send before the CQE (None for other commands or on error).
    pub data: Option<DataBuf>,
}

impl Response {
    /// A response without data.
    pub fn status(cid: u16, status: Status) -> Response {
        Response {
            cqe: Cqe::new(cid, status),
            data: None,
        }
    }

    /// The completion's status.
    pub fn status_of(&self) -> Status {
        self.cqe.status()
    }
}

/// Where a request is in the target core (the part of SPDK's request life nvmf owns; the
/// transport's own states, e.g. TCP's `NEED_BUFFER`/`TRANSFERRING_*`, stay in the transport).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// Received while its subsystem is paused; runs when the subsystem resumes.
    Queued,
    /// Submitted to the bdev layer or waiting for an event (AER).
    Executing,
    /// Completed; its response waits in the qpair's response queue.
    Completed,
}
