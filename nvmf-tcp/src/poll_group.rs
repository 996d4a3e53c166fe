//! Per-Thread poll group: non-blocking reads and writes on each connection's socket
//! (SPDK `nvmf_tcp_poll_group_poll`).
//!
//! Each poll, per connection: read until the socket would block (or 4 MiB of responses wait
//! unread), feed the bytes to the sans-IO [`TcpConnection`], hand finished commands to the
//! target core, give waiting writes their iobuf data buffers, encode completions, and write
//! the outbound queue (PDU headers and the responses' own data buffers, no copy) with as few
//! vectored writes as the socket takes. In interrupt mode
//! each socket is registered with `env::interrupt_register`, so a sleeping reactor wakes when
//! data arrives.

use crate::proto::{ConnState, TcpConnection};
use crate::transport::TcpConn;
use env::PollStatus;
use nvmf::transport::TransportPollGroup;
use nvmf::{NvmfError, Qpair};
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const RECV_BUF: usize = 64 * 1024;
/// Stop reading from a host that does not read its responses once this much is queued.
const MAX_QUEUED_OUT: usize = 4 << 20;

struct Entry {
    /// Wakes the reactor when the socket is readable (interrupt mode only). Declared before
    /// `stream`: it must be unregistered before the fd closes.
    intr: Option<env::Interrupt>,
    stream: TcpStream,
    conn: TcpConnection,
    qpair: Qpair,
    /// Socket shut down and qpair disconnected.
    closed: bool,
    /// The readiness `intr` waits for: (readable, writable).
    events: (bool, bool),
    /// When the connection was first seen terminating or its qpair disconnected: its last
    /// output (a TermReq, a final response) gets [`CLOSE_FLUSH_LIMIT`] to reach a host that does
    /// not read, then the socket closes and the output's data buffers go back to their pools.
    closing_since: Option<Instant>,
}

/// How long a terminating or disconnected connection may hold unsent output.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// The TCP transport's poll group.
pub struct TcpPollGroup {
    conns: Vec<Entry>,
    buf: Vec<u8>,
}

impl TcpPollGroup {
    /// An empty poll group.
    pub fn new() -> TcpPollGroup {
        TcpPollGroup {
            conns: Vec::new(),
            buf: vec![0; RECV_BUF],
        }
    }
}

impl Default for TcpPollGroup {
    fn default() -> Self {
        TcpPollGroup::new()
    }
}

impl Entry {
    fn poll(&mut self, buf: &mut [u8]) -> bool {
        if self.closed {
            return false;
        }
        let mut busy = false;
        // Receive.
        while self.conn.state() != ConnState::Terminating
            && self.conn.out_queue().len() < MAX_QUEUED_OUT
        {
            match self.stream.read(buf) {
                Ok(0) => {
                    tracing::info!("NVMe/TCP peer closed the connection");
                    self.close();
                    return true;
                }
                Ok(n) => {
                    busy = true;
                    self.conn.receive(buf.get(..n).unwrap_or_default());
                    while let Some(req) = self.conn.take_request() {
                        self.qpair.handle_request(req);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::info!(error = %e, "NVMe/TCP read failed");
                    self.close();
                    return true;
                }
            }
        }
        // Commands waiting for a data buffer (freed by completions of earlier polls).
        if self.conn.waiting_for_buffers() > 0 && self.conn.retry_buffers() {
            busy = true;
        }
        // Completions.
        while let Some(rsp) = self.qpair.poll_response() {
            busy = true;
            self.conn.send_response(rsp);
        }
        match self.conn.out_queue().write_to(&mut self.stream) {
            // Output the socket would not take is no work: wait for writability (below).
            Ok(n) => busy |= n > 0,
            Err(e) => {
                tracing::debug!(error = %e, "NVMe/TCP write failed");
                self.close();
                return true;
            }
        }
        if self.conn.state() == ConnState::Terminating || self.qpair.is_disconnected() {
            let since = *self.closing_since.get_or_insert_with(Instant::now);
            if self.conn.out_queue().is_empty() {
                self.close();
                busy = true;
            } else if since.elapsed() >= CLOSE_FLUSH_LIMIT {
                tracing::info!(
                    unsent = self.conn.out_queue().len(),
                    "NVMe/TCP connection closed with output the host did not read"
                );
                self.close();
                busy = true;
            } else {
                // Check again soon even if the socket stays blocked (interrupt mode sleeps).
                busy = true;
            }
        }
        self.update_events();
        busy
    }

    /// Interrupt mode: wake for input only while it will be read (not past MAX_QUEUED_OUT of
    /// unsent output), and for writability while output waits. A host that stops reading its
    /// responses then costs no CPU instead of a spinning reactor.
    fn update_events(&mut self) {
        let Some(intr) = &self.intr else { return };
        let out = self.conn.out_queue().len();
        let want = (
            out < MAX_QUEUED_OUT && self.conn.state() != ConnState::Terminating,
            out > 0,
        );
        if want != self.events {
            if let Err(e) = intr.set_events(want.0, want.1) {
                tracing::error!(error = %e, "cannot change the socket's interrupt events");
            }
            // Recorded even on failure: one log line per change, not one per poll.
            self.events = want;
        }
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            // A shut-down socket stays readable (EOF): stop waking the reactor for it.
            self.intr = None;
            // The peer may already be gone; nothing to do about a failed shutdown.
            let _ = self.stream.shutdown(Shutdown::Both);
            // Nothing more can be written: give queued data buffers back to their pools now.
            self.conn.out_queue().clear();
            self.qpair.disconnect();
        }
    }
}

impl TransportPollGroup for TcpPollGroup {
    type Connection = TcpConn;

    fn add_qpair(&mut self, conn: TcpConn, qpair: Qpair) -> Result<(), NvmfError> {
        qpair.set_listen_addr(conn.addr.clone());
        // In interrupt mode the reactor sleeps when every poller is idle; the socket's
        // readability wakes it (SPDK registers the sock group's epoll fd the same way). The
        // handler only reports work: the poll group's poller reads the socket.
        let intr = if env::reactors().is_some_and(|r| r.interrupt_mode()) {
            match env::interrupt_register(conn.stream.as_raw_fd(), || PollStatus::Busy) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::error!(error = %e, "cannot register the socket for interrupts");
                    return Err(NvmfError::Env(e));
                }
            }
        } else {
            None
        };
        self.conns.push(Entry {
            intr,
            stream: conn.stream,
            conn: TcpConnection::new(conn.cfg),
            qpair,
            closed: false,
            events: (true, false),
            closing_since: None,
        });
        Ok(())
    }

    fn poll(&mut self) -> PollStatus {
        let mut busy = false;
        for e in &mut self.conns {
            busy |= e.poll(&mut self.buf);
        }
        if busy {
            PollStatus::Busy
        } else {
            PollStatus::Idle
        }
    }

    fn remove_qpair(&mut self) -> usize {
        self.conns.retain(|e| !(e.closed && e.qpair.is_drained()));
        self.conns.len()
    }

    fn disconnect_all(&mut self) {
        for e in &mut self.conns {
            e.close();
        }
    }
}
