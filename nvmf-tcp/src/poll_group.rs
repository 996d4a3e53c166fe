//! Per-Thread poll group: non-blocking reads and writes on each connection's socket
//! (SPDK `nvmf_tcp_poll_group_poll`).
//!
//! Each socket is registered with `env::interrupt_register` (the Thread's epoll set, checked
//! with one `epoll_wait` per poll for all of them, as SPDK's sock group does): only a socket
//! epoll reports readable is read, so idle connections cost no system call, and a read that
//! does not fill the buffer is not followed by one that would block. Each poll, per
//! connection: read what is there (not past 4 MiB of responses waiting unread), feed the bytes
//! to the sans-IO [`TcpConnection`], hand finished commands to the target core, give waiting
//! writes their iobuf data buffers, encode completions, and write the outbound queue (PDU
//! headers and the responses' own data buffers, no copy) with as few vectored writes as the
//! socket takes. In interrupt mode the same registration wakes a sleeping reactor.

use crate::proto::{ConnState, TcpConnection};
use crate::transport::TcpConn;
use env::PollStatus;
use nvmf::transport::TransportPollGroup;
use nvmf::{NvmfError, Qpair};
use std::cell::Cell;
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

const RECV_BUF: usize = 64 * 1024;
/// Stop reading from a host that does not read its responses once this much is queued.
const MAX_QUEUED_OUT: usize = 4 << 20;

struct Entry {
    /// The socket in the Thread's epoll set: its handler sets `readable` (and wakes the reactor
    /// in interrupt mode). Declared before `stream`: it must be unregistered before the fd
    /// closes. `None` only when registration failed in polling mode: the socket is then read
    /// on every poll.
    intr: Option<env::Interrupt>,
    /// Epoll reported the socket readable since it was last read.
    readable: Rc<Cell<bool>>,
    /// The reactor sleeps in epoll (interrupt mode): it must also wake for writability.
    interrupt_mode: bool,
    stream: TcpStream,
    conn: TcpConnection,
    qpair: Qpair,
    /// Socket shut down and qpair disconnected.
    closed: bool,
    /// The readiness `intr` waits for: (readable, writable).
    events: (bool, bool),
    /// The last readiness change that failed (logged once; retried on every poll).
    events_failed: Option<(bool, bool)>,
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
    /// While a write waits for pool buffers: a timed poller, so that a reactor in interrupt
    /// mode wakes to retry (buffers freed on another Thread wake nobody here).
    retry_timer: Option<env::Poller>,
}

/// How often writes waiting for pool buffers are retried when nothing else wakes the reactor.
const BUFFER_RETRY_PERIOD: Duration = Duration::from_millis(1);

impl TcpPollGroup {
    /// An empty poll group.
    pub fn new() -> TcpPollGroup {
        TcpPollGroup {
            conns: Vec::new(),
            buf: vec![0; RECV_BUF],
            retry_timer: None,
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
        // Receive, when epoll said there is something (or always, without registration).
        let may_read = self.intr.is_none() || self.readable.get();
        while may_read
            && self.conn.state() != ConnState::Terminating
            && self.conn.out_queue().len() < MAX_QUEUED_OUT
        {
            // Cleared before the read: data arriving after it makes epoll report it again.
            self.readable.set(false);
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
                    // A short read took everything there was: asking again would only block.
                    // (Level-triggered epoll reports the socket again when more arrives.)
                    if n < buf.len() && self.intr.is_some() {
                        break;
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

    /// Watch for input only while it will be read (not past MAX_QUEUED_OUT of unsent output),
    /// and in interrupt mode for writability while output waits (polling mode retries the write
    /// on every poll anyway). A host that stops reading its responses then costs no CPU in
    /// interrupt mode instead of a spinning reactor.
    fn update_events(&mut self) {
        let Some(intr) = &self.intr else { return };
        let out = self.conn.out_queue().len();
        let want = (
            out < MAX_QUEUED_OUT && self.conn.state() != ConnState::Terminating,
            out > 0 && self.interrupt_mode,
        );
        if want != self.events {
            match intr.set_events(want.0, want.1) {
                Ok(()) => {
                    self.events = want;
                    self.events_failed = None;
                }
                // Retried on the next poll (a connection whose input stays off would stall),
                // logged once per wanted change, not once per poll.
                Err(e) if self.events_failed != Some(want) => {
                    tracing::error!(error = %e, "cannot change the socket's interrupt events");
                    self.events_failed = Some(want);
                }
                Err(_) => {}
            }
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
        // The socket joins the Thread's epoll set: polled without waiting on every Thread poll
        // (one epoll_wait for every socket, as SPDK's sock group), and what a reactor in
        // interrupt mode sleeps on. The handler only records readiness: the poll group's
        // poller reads the socket.
        let interrupt_mode = env::reactors().is_some_and(|r| r.interrupt_mode());
        let readable = Rc::new(Cell::new(true));
        let flag = readable.clone();
        let intr = match env::interrupt_register(conn.stream.as_raw_fd(), move || {
            flag.set(true);
            PollStatus::Busy
        }) {
            Ok(i) => Some(i),
            Err(e) if interrupt_mode => {
                tracing::error!(error = %e, "cannot register the socket for interrupts");
                return Err(NvmfError::Env(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, "socket not in the Thread's epoll set: read on every poll");
                None
            }
        };
        self.conns.push(Entry {
            intr,
            readable,
            interrupt_mode,
            stream: conn.stream,
            conn: TcpConnection::new(conn.cfg),
            qpair,
            closed: false,
            events: (true, false),
            events_failed: None,
            closing_since: None,
        });
        Ok(())
    }

    fn poll(&mut self) -> PollStatus {
        let mut busy = false;
        let mut waiting = false;
        for e in &mut self.conns {
            busy |= e.poll(&mut self.buf);
            waiting |= !e.closed && e.conn.waiting_for_buffers() > 0;
        }
        if waiting && self.retry_timer.is_none() {
            // The timer's own work is nothing: its expiry makes the Thread poll, and so this
            // poll group retry the waiting writes.
            match env::poller_register_periodic(|| PollStatus::Idle, BUFFER_RETRY_PERIOD) {
                Ok(p) => self.retry_timer = Some(p),
                Err(e) => tracing::error!(error = %e, "cannot arm the buffer retry timer"),
            }
        } else if !waiting {
            self.retry_timer = None;
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
