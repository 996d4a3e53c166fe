//! The transport plug-in point (SPDK `struct spdk_nvme_transport_ops`): a [`Transport`]
//! opens [`TransportQpair`]s; the generic layer ([`super::qpair`]) does everything above the
//! wire (command identifiers, fabrics Connect, timeouts). TCP is built in
//! ([`super::tcp::TcpTransport`]); RDMA and PCIe implement the same two traits.

use std::os::fd::RawFd;

use super::{HostError, TransportId};
use crate::spec::cqe::Cqe;
use crate::spec::sqe::Sqe;

/// Data that goes with a command. The buffer's length is the transfer length.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Payload {
    /// No data.
    #[default]
    None,
    /// Host to controller (write): the buffer is sent.
    ToCtrl(Vec<u8>),
    /// Controller to host (read): the buffer is filled.
    FromCtrl(Vec<u8>),
}

impl Payload {
    /// Transfer length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::None => 0,
            Payload::ToCtrl(b) | Payload::FromCtrl(b) => b.len(),
        }
    }

    /// True when there is no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer, whatever the direction (empty for `None`).
    pub fn into_buf(self) -> Vec<u8> {
        match self {
            Payload::None => Vec::new(),
            Payload::ToCtrl(b) | Payload::FromCtrl(b) => b,
        }
    }
}

/// A completion as the transport delivers it: the CQE and the command's buffer back.
#[derive(Debug, PartialEq, Eq)]
pub struct RawCompletion {
    /// The completion queue entry (for a C2HData SUCCESS completion, a synthesized one).
    pub cqe: Cqe,
    /// The buffer that was submitted with the command (filled for reads).
    pub buf: Vec<u8>,
}

/// Parameters of one queue pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpairParams {
    /// Queue ID (0 = admin).
    pub qid: u16,
    /// Number of entries (1-based).
    pub queue_size: u16,
    /// Request header digests.
    pub hdgst: bool,
    /// Request data digests.
    pub ddgst: bool,
    /// Time allowed for the transport connection (TCP connect + IC exchange).
    pub connect_timeout: std::time::Duration,
}

/// A transport: opens connections for queue pairs. Shared by all qpairs of a controller.
pub trait Transport: Send + Sync {
    /// Transport name as SPDK spells it ("TCP").
    fn name(&self) -> &'static str;

    /// Open the transport connection of one queue pair (for TCP: socket, ICReq/ICResp). The
    /// fabrics Connect command is sent by the caller over the returned qpair.
    fn connect_qpair(
        &self,
        trid: &TransportId,
        params: &QpairParams,
    ) -> Result<Box<dyn TransportQpair>, HostError>;
}

/// One connected queue pair at the transport level. Polled: nothing happens outside
/// [`TransportQpair::poll`]. Called in this order: `submit`* / `poll`* ... then dropped (or
/// [`TransportQpair::abort_all`] after a failure).
pub trait TransportQpair: Send {
    /// Queue a command (its CID is already set and unique among outstanding ones). Fails if
    /// the qpair failed or the payload cannot be carried.
    fn submit(&mut self, sqe: Sqe, payload: Payload) -> Result<(), HostError>;

    /// Make progress (send what is queued, receive what arrived) and append finished
    /// commands to `done`. A protocol violation by the target fails the qpair: the error is
    /// returned now and by every later call.
    fn poll(&mut self, done: &mut Vec<RawCompletion>) -> Result<(), HostError>;

    /// Largest data a command may carry in its capsule on this qpair.
    fn max_in_capsule(&self) -> u32;

    /// Set the in-capsule data limit (from Identify IOCCSZ, for I/O qpairs).
    fn set_max_in_capsule(&mut self, bytes: u32);

    /// Take back every outstanding command's CID and buffer (after a failure or before a
    /// drop), so the caller can complete them as aborted.
    fn abort_all(&mut self) -> Vec<(u16, Vec<u8>)>;

    /// The descriptor that becomes readable when the target sent something, for event-driven
    /// polling (an interrupt-mode reactor waits on it); `None` when there is none.
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    /// True while queued bytes could not be handed to the kernel yet: the caller must poll
    /// again soon instead of waiting for [`TransportQpair::raw_fd`] to become readable.
    fn has_unsent(&self) -> bool {
        false
    }
}
