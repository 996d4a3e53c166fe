//! Transport-independent queue pair (SPDK `struct spdk_nvme_qpair` + `nvme_qpair.c`):
//! command identifiers, fabrics Connect, per-command timeouts, failure handling.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::transport::{Payload, QpairParams, RawCompletion, Transport, TransportQpair};
use super::{HostError, TransportId};
use crate::spec::cqe::Cqe;
use crate::spec::fabrics::{ConnectCmd, connect_rsp_authreq, connect_rsp_cntlid};
use crate::spec::sqe::Sqe;
use crate::spec::status::{GenericStatus, Status};

/// A finished command.
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    /// The caller's tag given at submission.
    pub tag: u64,
    /// Completion status.
    pub status: Status,
    /// Command specific result (CQE DW0).
    pub dw0: u32,
    /// CQE DW1 (upper half of a 64-bit Property Get value).
    pub dw1: u32,
    /// The buffer given at submission (read data filled in).
    pub buf: Vec<u8>,
}

impl Completion {
    /// True for Generic / Successful Completion.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

/// A submission the queue pair refused; the buffer comes back.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub error: HostError,
    /// The buffer that was passed in.
    pub buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: u64,
    submitted: Instant,
}

/// How often outstanding commands are checked against the timeout.
const TIMEOUT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Time allowed for a fabrics Connect response.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connected queue pair. Not shared between threads (it is `Send`, so it may move to
/// the thread that polls it).
pub struct Qpair {
    qid: u16,
    tq: Box<dyn TransportQpair>,
    slots: Vec<Option<Slot>>,
    free: Vec<u16>,
    failed: Option<HostError>,
    timeout: Option<Duration>,
    last_timeout_check: Instant,
    raw: Vec<RawCompletion>,
    /// Completions reaped by [`Qpair::execute`] for other commands, handed out next poll.
    stash: Vec<Completion>,
}

impl std::fmt::Debug for Qpair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qpair")
            .field("qid", &self.qid)
            .field("outstanding", &self.outstanding())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Qpair {
    /// Wrap a transport qpair of `queue_size` entries. One entry is kept free (a queue of
    /// N entries holds N-1 commands), so at most `queue_size - 1` commands are outstanding.
    pub fn new(qid: u16, queue_size: u16, tq: Box<dyn TransportQpair>) -> Self {
        let depth = queue_size.saturating_sub(1).max(1);
        Qpair {
            qid,
            tq,
            slots: vec![None; usize::from(depth)],
            free: (0..depth).rev().collect(),
            failed: None,
            timeout: None,
            last_timeout_check: Instant::now(),
            raw: Vec::new(),
            stash: Vec::new(),
        }
    }

    /// Open a transport connection and send the fabrics Connect command. `cntlid` is
    /// 0xFFFF for the admin queue and the controller's ID for I/O queues. Returns the qpair
    /// and the controller ID from the Connect response.
    pub fn connect(
        transport: &dyn Transport,
        trid: &TransportId,
        params: &QpairParams,
        conn: &ConnectArgs<'_>,
    ) -> Result<(Qpair, u16), HostError> {
        let tq = transport.connect_qpair(trid, params)?;
        let mut q = Qpair::new(params.qid, params.queue_size, tq);
        let data = connect_data(conn.hostid, conn.cntlid, conn.hostnqn, &trid.subnqn)?;
        let cmd = ConnectCmd::new(
            0,
            params.qid,
            params.queue_size.saturating_sub(1),
            conn.kato_ms,
        );
        let cqe = q.execute(
            cmd.to_sqe(),
            Payload::ToCtrl(data),
            CONNECT_TIMEOUT,
            "Connect",
        )?;
        if connect_rsp_authreq(&cqe.0) != 0 {
            return Err(HostError::Unsupported(
                "in-band authentication (DH-HMAC-CHAP)",
            ));
        }
        Ok((q, connect_rsp_cntlid(&cqe.0)))
    }

    /// Queue ID.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Commands outstanding.
    pub fn outstanding(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Most commands that can be outstanding at once.
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// The error that failed this qpair, if any.
    pub fn failure(&self) -> Option<&HostError> {
        self.failed.as_ref()
    }

    /// Fail a command that stays outstanding longer than `timeout` (None: never). A timeout
    /// fails the qpair (SPDK's timeout action "reset": the owner resets the controller).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The transport's descriptor that becomes readable when the target sent something
    /// (`None` if the transport has none): an event loop may wait on it between polls.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.tq.raw_fd()
    }

    /// True while submitted bytes are still queued in user space (the socket was full):
    /// poll again soon rather than wait for [`Qpair::raw_fd`].
    pub fn has_unsent(&self) -> bool {
        self.tq.has_unsent()
    }

    /// Largest in-capsule data on this qpair.
    pub fn max_in_capsule(&self) -> u32 {
        self.tq.max_in_capsule()
    }

    /// Set the in-capsule data limit.
    pub fn set_max_in_capsule(&mut self, bytes: u32) {
        self.tq.set_max_in_capsule(bytes);
    }

    /// Submit a command; its CID is assigned here. `tag` comes back in the [`Completion`].
    pub fn submit(&mut self, mut sqe: Sqe, payload: Payload, tag: u64) -> Result<u16, Rejected> {
        if let Some(e) = &self.failed {
            return Err(Rejected {
                error: HostError::Failed(e.to_string()),
                buf: payload.into_buf(),
            });
        }
        let Some(cid) = self.free.pop() else {
            return Err(Rejected {
                error: HostError::QueueFull,
                buf: payload.into_buf(),
            });
        };
        sqe.cid = cid.into();
        // The transport only fails a submit before queueing anything; the buffer is lost
        // with the payload in that case, so hand back an empty one.
        if let Err(error) = self.tq.submit(sqe, payload) {
            self.free.push(cid);
            if matches!(error, HostError::Protocol(_) | HostError::Failed(_)) {
                self.failed.get_or_insert(error.clone());
            }
            return Err(Rejected {
                error,
                buf: Vec::new(),
            });
        }
        if let Some(s) = self.slots.get_mut(usize::from(cid)) {
            *s = Some(Slot {
                tag,
                submitted: Instant::now(),
            });
        }
        Ok(cid)
    }

    /// Make progress and append finished commands to `out`; returns how many were added.
    /// After a failure every outstanding command completes with Aborted - SQ Deletion and
    /// the error is returned (once per call).
    pub fn process_completions(&mut self, out: &mut Vec<Completion>) -> Result<usize, HostError> {
        let before = out.len();
        out.append(&mut self.stash);
        if self.failed.is_none() {
            let r = self.tq.poll(&mut self.raw);
            let raw = std::mem::take(&mut self.raw);
            for rc in raw {
                if let Err(e) = self.finish(rc, out) {
                    self.failed.get_or_insert(e);
                }
            }
            if let Err(e) = r {
                self.failed.get_or_insert(e);
            }
            self.check_timeouts();
        }
        if let Some(e) = self.failed.clone() {
            self.abort_outstanding(out);
            return Err(e);
        }
        Ok(out.len() - before)
    }

    fn finish(&mut self, rc: RawCompletion, out: &mut Vec<Completion>) -> Result<(), HostError> {
        let cid = rc.cqe.cid();
        let slot = self
            .slots
            .get_mut(usize::from(cid))
            .and_then(|s| s.take())
            .ok_or_else(|| HostError::Protocol(format!("completion for unknown CID {cid}")))?;
        self.free.push(cid);
        out.push(Completion {
            tag: slot.tag,
            status: rc.cqe.status(),
            dw0: rc.cqe.dw0.get(),
            dw1: rc.cqe.dw1.get(),
            buf: rc.buf,
        });
        Ok(())
    }

    fn check_timeouts(&mut self) {
        let Some(timeout) = self.timeout else { return };
        let now = Instant::now();
        if now.duration_since(self.last_timeout_check) < TIMEOUT_CHECK_INTERVAL {
            return;
        }
        self.last_timeout_check = now;
        let expired = self
            .slots
            .iter()
            .flatten()
            .any(|s| now.duration_since(s.submitted) > timeout);
        if expired {
            tracing::error!(qid = self.qid, ?timeout, "command timed out; failing qpair");
            self.failed.get_or_insert(HostError::Timeout("command"));
        }
    }

    fn abort_outstanding(&mut self, out: &mut Vec<Completion>) {
        let mut bufs: Vec<(u16, Vec<u8>)> = self.tq.abort_all();
        for (cid, slot) in self.slots.iter_mut().enumerate() {
            if let Some(s) = slot.take() {
                let buf = bufs
                    .iter()
                    .position(|(c, _)| usize::from(*c) == cid)
                    .map(|i| bufs.swap_remove(i).1)
                    .unwrap_or_default();
                out.push(Completion {
                    tag: s.tag,
                    status: GenericStatus::ABORTED_SQ_DELETION.into(),
                    dw0: 0,
                    dw1: 0,
                    buf,
                });
                self.free.push(cid as u16);
            }
        }
    }

    /// Submit one command and poll until it completes or `timeout` passes (for admin and
    /// fabrics commands at setup; never on an I/O path). Other completions that arrive
    /// meanwhile are kept and returned by the next [`Qpair::process_completions`].
    pub fn execute(
        &mut self,
        sqe: Sqe,
        payload: Payload,
        timeout: Duration,
        what: &'static str,
    ) -> Result<(Cqe, Vec<u8>), HostError> {
        const TAG: u64 = u64::MAX;
        let cid = self.submit(sqe, payload, TAG).map_err(|r| r.error)?;
        let deadline = deadline_after(timeout);
        let mut out = Vec::new();
        loop {
            let r = self.process_completions(&mut out);
            let mine = out
                .iter()
                .position(|c| c.tag == TAG)
                .map(|i| out.swap_remove(i));
            self.stash.append(&mut out);
            r?;
            if let Some(c) = mine {
                let mut cqe = Cqe::new(cid, c.status);
                cqe.dw0 = c.dw0.into();
                cqe.dw1 = c.dw1.into();
                if !c.status.is_success() {
                    return Err(HostError::Command {
                        what,
                        status: c.status,
                    });
                }
                return Ok((cqe, c.buf));
            }
            if Instant::now() >= deadline {
                self.failed.get_or_insert(HostError::Timeout(what));
                return Err(HostError::Timeout(what));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// `now + timeout`, saturating: a timeout too large to add to the clock (`Duration::MAX`, or
/// a user-given `u64` of seconds) means "practically never" instead of a panic.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// About 136 years: what a deadline saturates to.
const FAR_FUTURE: Duration = Duration::from_secs(u32::MAX as u64);

/// What the fabrics Connect command says about the host.
#[derive(Clone, Copy, Debug)]
pub struct ConnectArgs<'a> {
    /// Host NQN.
    pub hostnqn: &'a str,
    /// Host identifier.
    pub hostid: [u8; 16],
    /// Controller ID (0xFFFF: dynamic, for the admin queue).
    pub cntlid: u16,
    /// Keep-alive timeout in ms (admin queue only; 0 disables).
    pub kato_ms: u32,
}

/// The 1024 bytes of Connect data (`spec::fabrics::ConnectData`: HOSTID at 0, CNTLID at 16,
/// SUBNQN at 256, HOSTNQN at 512), after checking both NQNs (SPDK's NQN rules, < 256 bytes).
pub fn connect_data(
    hostid: [u8; 16],
    cntlid: u16,
    hostnqn: &str,
    subnqn: &str,
) -> Result<Vec<u8>, HostError> {
    for (nqn, what) in [(subnqn, "subnqn"), (hostnqn, "hostnqn")] {
        crate::spec::nqn::validate_nqn(nqn)
            .map_err(|e| HostError::InvalidRequest(format!("{what}: {e}")))?;
    }
    let d = crate::spec::fabrics::ConnectData::new(hostid, cntlid, hostnqn, subnqn)
        .map_err(|e| HostError::InvalidRequest(format!("connect data: {e}")))?;
    Ok(zerocopy::IntoBytes::as_bytes(&d).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_data_puts_subnqn_at_256_and_hostnqn_at_512() {
        let (h, n) = ("nqn.2016-06.io.spdk:host1", "nqn.2016-06.io.spdk:s");
        let d = connect_data([9; 16], 0xfffe, h, n).unwrap();
        assert_eq!(d.len(), 1024);
        assert_eq!(&d[..16], &[9; 16]);
        assert_eq!(&d[16..18], &[0xfe, 0xff]);
        assert_eq!(&d[256..256 + n.len()], n.as_bytes());
        assert_eq!(d[256 + n.len()], 0);
        assert_eq!(&d[512..512 + h.len()], h.as_bytes());
        assert_eq!(d[512 + h.len()], 0);
        assert!(connect_data([0; 16], 0, "bad", n).is_err());
    }
}
