//! An in-memory transport for tests (no sockets): the host side submits SQEs with their data
//! and reads CQEs with theirs.
//!
//! ```text
//!  TestNetwork::connect(addr) ─▶ TestHost ──submit(sqe, data)──▶ [pipe] ──▶ TestPollGroup::poll
//!                                   ▲                                        │ Qpair::handle_request
//!                                   └──────── take_response() ◀── [pipe] ◀───┘ Qpair::poll_response
//! ```
//!
//! Register it under any name (e.g. "TCP" for RPC shape tests) with
//! [`crate::Target::register_transport_factory`] and [`TestNetwork::factory`].

use crate::request::{DataBuf, Request, Response};
use crate::transport::{
    DiscoverInfo, ListenAddr, PollGroupBuilder, TrType, Transport, TransportOpts,
    TransportPollGroup,
};
use crate::{NvmfError, Qpair};
use env::PollStatus;
use nvme::spec::{Cqe, Sqe};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Pipe {
    to_target: VecDeque<Request>,
    to_host: VecDeque<(Cqe, Option<Vec<u8>>)>,
    host_closed: bool,
    target_closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Default)]
struct Net {
    listening: Vec<(String, ListenAddr)>,
    pending: VecDeque<(String, ListenAddr, Arc<Mutex<Pipe>>)>,
}

/// The shared "network" of one or more test transports (`Send + Sync`, clone freely).
#[derive(Clone, Default)]
pub struct TestNetwork(Arc<Mutex<Net>>);

/// The host end of one connection.
#[derive(Clone)]
pub struct TestHost(Arc<Mutex<Pipe>>);

impl TestNetwork {
    /// A new empty network.
    pub fn new() -> TestNetwork {
        TestNetwork::default()
    }

    /// A transport factory named `name` for [`crate::Target::register_transport_factory`].
    pub fn factory(
        &self,
        name: &str,
    ) -> impl Fn(TransportOpts) -> Result<TestTransport, NvmfError> + 'static {
        let net = self.clone();
        let name = name.to_string();
        move |opts| {
            for k in opts.specific.keys() {
                if !matches!(
                    k.as_str(),
                    "c2h_success" | "sock_priority" | "control_msg_num"
                ) {
                    return Err(NvmfError::InvalidParam(format!("unknown option {k}")));
                }
            }
            Ok(TestTransport {
                name: name.clone(),
                opts,
                net: net.clone(),
            })
        }
    }

    /// Connects to a listening address, like a TCP connect; fails when nobody listens there.
    pub fn connect(&self, addr: &ListenAddr) -> Result<TestHost, NvmfError> {
        let mut n = lock(&self.0);
        let Some((name, _)) = n.listening.iter().find(|(_, a)| a.same_as(addr)).cloned() else {
            return Err(NvmfError::NotFound(format!("nobody listens on {addr}")));
        };
        let pipe = Arc::new(Mutex::new(Pipe::default()));
        n.pending.push_back((name, addr.clone(), pipe.clone()));
        Ok(TestHost(pipe))
    }

    /// True when some transport listens on `addr`.
    pub fn is_listening(&self, addr: &ListenAddr) -> bool {
        lock(&self.0).listening.iter().any(|(_, a)| a.same_as(addr))
    }
}

impl TestHost {
    /// Sends a command with host-to-controller `data` (None for other commands) and the SGL
    /// transfer length `length`.
    pub fn submit(&self, sqe: Sqe, data: Option<Vec<u8>>, length: u32) {
        let req = Request {
            sqe,
            length,
            data: data.map(DataBuf::from_vec),
        };
        lock(&self.0).to_target.push_back(req);
    }

    /// The next completion with its controller-to-host data.
    pub fn take_response(&self) -> Option<(Cqe, Option<Vec<u8>>)> {
        lock(&self.0).to_host.pop_front()
    }

    /// Closes the connection from the host side.
    pub fn close(&self) {
        lock(&self.0).host_closed = true;
    }

    /// True when the target closed the connection.
    pub fn closed_by_target(&self) -> bool {
        lock(&self.0).target_closed
    }
}

/// The in-memory transport.
pub struct TestTransport {
    name: String,
    opts: TransportOpts,
    net: TestNetwork,
}

/// A connection on its way to a poll group.
pub struct TestConn {
    addr: ListenAddr,
    pipe: Arc<Mutex<Pipe>>,
}

impl Transport for TestTransport {
    type PollGroup = TestPollGroup;
    type Connection = TestConn;

    fn name(&self) -> &str {
        &self.name
    }
    fn trtype(&self) -> TrType {
        TrType::from_name(&self.name).unwrap_or(TrType::LOOP)
    }
    fn opts(&self) -> &TransportOpts {
        &self.opts
    }
    fn listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError> {
        let mut n = lock(&self.net.0);
        if !n.listening.iter().any(|(_, a)| a.same_as(addr)) {
            n.listening.push((self.name.clone(), addr.clone()));
        }
        Ok(())
    }
    fn stop_listen(&mut self, addr: &ListenAddr) -> Result<(), NvmfError> {
        lock(&self.net.0)
            .listening
            .retain(|(_, a)| !a.same_as(addr));
        Ok(())
    }
    fn accept(&mut self) -> Option<TestConn> {
        let mut n = lock(&self.net.0);
        let i = n
            .pending
            .iter()
            .position(|(name, _, _)| *name == self.name)?;
        let (_, addr, pipe) = n.pending.remove(i)?;
        Some(TestConn { addr, pipe })
    }
    fn poll_group_builder(&self) -> PollGroupBuilder<TestPollGroup> {
        Box::new(|| Ok(TestPollGroup { conns: Vec::new() }))
    }
    fn dump_opts_json(&self, out: &mut Map<String, Value>) {
        if self.name.eq_ignore_ascii_case("TCP") {
            let get = |k: &str, d: Value| self.opts.specific.get(k).cloned().unwrap_or(d);
            out.insert("c2h_success".into(), get("c2h_success", Value::Bool(true)));
            out.insert("sock_priority".into(), get("sock_priority", Value::from(0)));
        }
    }
    fn listener_discover(&self, addr: &ListenAddr) -> DiscoverInfo {
        DiscoverInfo {
            trtype: Transport::trtype(self),
            adrfam: addr.adrfam.wire(),
            treq: 0,
            traddr: addr.traddr.clone(),
            trsvcid: addr.trsvcid.clone(),
            tsas: [0; 256],
        }
    }
}

/// The in-memory transport's poll group.
pub struct TestPollGroup {
    conns: Vec<(Arc<Mutex<Pipe>>, Qpair)>,
}

impl TransportPollGroup for TestPollGroup {
    type Connection = TestConn;

    fn add_qpair(&mut self, conn: TestConn, qpair: Qpair) -> Result<(), NvmfError> {
        qpair.set_listen_addr(conn.addr.clone());
        self.conns.push((conn.pipe, qpair));
        Ok(())
    }

    fn poll(&mut self) -> PollStatus {
        let mut busy = false;
        for (pipe, q) in &self.conns {
            let (reqs, host_closed) = {
                let mut p = lock(pipe);
                (p.to_target.drain(..).collect::<Vec<_>>(), p.host_closed)
            };
            for r in reqs {
                busy = true;
                q.handle_request(r);
            }
            if host_closed && !q.is_disconnected() {
                q.disconnect();
                busy = true;
            }
            while let Some(rsp) = q.poll_response() {
                busy = true;
                let Response { cqe, data } = rsp;
                lock(pipe)
                    .to_host
                    .push_back((cqe, data.map(|d| d.to_vec())));
            }
            if q.is_disconnected() {
                let mut p = lock(pipe);
                if !p.target_closed {
                    p.target_closed = true;
                    busy = true;
                }
            }
        }
        if busy {
            PollStatus::Busy
        } else {
            PollStatus::Idle
        }
    }

    fn remove_qpair(&mut self) -> usize {
        self.conns.retain(|(pipe, q)| {
            if q.is_drained() {
                lock(pipe).target_closed = true;
                false
            } else {
                true
            }
        });
        self.conns.len()
    }

    fn disconnect_all(&mut self) {
        for (pipe, q) in &self.conns {
            q.disconnect();
            lock(pipe).target_closed = true;
        }
    }
}
