//! Shared test harness: a target on env::testing Threads with the in-memory transport.
#![allow(dead_code)]

use env::testing::TestThreads;
use nvme::spec::fabrics::{ConnectCmd, PropertyGetCmd, PropertySetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::{Cqe, Sqe, Status};
use nvmf::testing::{TestHost, TestNetwork};
use nvmf::{ListenAddr, SubType, Subsystem, Target, TransportOpts};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const SUBNQN: &str = "nqn.2016-06.io.spdk:cnode1";
pub const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
pub const CC_ENABLE: u32 = 0x0046_0001;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique bdev name (the bdev registry is process-global).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub struct Env {
    pub threads: TestThreads,
    pub tgt: Target,
    pub net: TestNetwork,
    pub addr: ListenAddr,
    pub bdev: String,
}

impl Env {
    pub fn poll(&self) {
        assert!(self.threads.poll_threads(), "threads never went idle");
    }

    /// Advances the clock past the acceptor period and polls.
    pub fn accept(&self) {
        self.threads.advance_time(Duration::from_millis(10));
        self.poll();
    }

    pub fn connect_host(&self) -> TestHost {
        let h = self.net.connect(&self.addr).unwrap();
        self.accept();
        h
    }

    pub fn cmd(
        &self,
        h: &TestHost,
        sqe: Sqe,
        data: Option<Vec<u8>>,
        len: u32,
    ) -> (Cqe, Option<Vec<u8>>) {
        h.submit(sqe, data, len);
        self.poll();
        h.take_response().expect("no response")
    }

    pub fn update(&self) {
        self.tgt.update(|| {});
        self.poll();
    }
}

/// Target on 2 poll group Threads, TCP-named test transport, subsystem SUBNQN with one
/// 1024 x 512 malloc namespace, allow_any_host, listener 127.0.0.1:4420.
pub fn setup() -> Env {
    let threads = TestThreads::new(2);
    threads.set_current(0);
    let net = TestNetwork::new();
    let tgt = Target::new("nvmf_tgt").unwrap();
    tgt.register_transport_factory("TCP", net.factory("TCP"));
    tgt.start(
        vec![threads.thread(0).handle(), threads.thread(1).handle()],
        || {},
    )
    .unwrap();
    assert!(threads.poll_threads());
    tgt.create_transport("TCP", TransportOpts::default(), |r| r.unwrap());
    assert!(threads.poll_threads());
    let bdev = unique("Malloc");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&bdev, 1024, 512)).unwrap();
    let mut s = Subsystem::new(SUBNQN, SubType::Nvme);
    s.allow_any_host = true;
    s.max_namespaces = 32;
    tgt.create_subsystem(s).unwrap();
    tgt.add_ns(SUBNQN, &bdev, 0, None, None, None, 0, false)
        .unwrap();
    let addr = ListenAddr::tcp("127.0.0.1", "4420");
    tgt.add_listener(SUBNQN, addr.clone(), false).unwrap();
    let env = Env {
        threads,
        tgt,
        net,
        addr,
        bdev,
    };
    env.update();
    env
}

pub fn connect_sqe(cid: u16, qid: u16, sqsize: u16, kato: u32) -> Sqe {
    ConnectCmd::new(cid, qid, sqsize, kato).to_sqe()
}

/// 1024 bytes of Connect data in the wire layout (NVMe-oF 1.1 Figure 20, Linux
/// `struct nvmf_connect_data`): HOSTID 0..16, CNTLID 16..18, SUBNQN 256..512,
/// HOSTNQN 512..768.
pub fn connect_data(hostnqn: &str, subnqn: &str, cntlid: u16) -> Vec<u8> {
    let mut d = vec![0u8; 1024];
    d[..16].fill(7);
    d[16..18].copy_from_slice(&cntlid.to_le_bytes());
    d[256..256 + subnqn.len()].copy_from_slice(subnqn.as_bytes());
    d[512..512 + hostnqn.len()].copy_from_slice(hostnqn.as_bytes());
    d
}

pub fn prop_set(cid: u16, ofst: PropertyOffset, v: u64) -> Sqe {
    PropertySetCmd::new(cid, PropertySize::Four, ofst, v).to_sqe()
}

pub fn prop_get(cid: u16, size: PropertySize, ofst: PropertyOffset) -> Sqe {
    PropertyGetCmd::new(cid, size, ofst).to_sqe()
}

pub fn ok(c: &Cqe) {
    assert_eq!(
        c.status(),
        Status::SUCCESS,
        "expected success, got {}",
        c.status()
    );
}

/// Admin Connect + CC.EN=1; returns the host and the controller ID.
pub fn admin_connect(env: &Env, hostnqn: &str, kato: u32) -> (TestHost, u16) {
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 0, 31, kato),
        Some(connect_data(hostnqn, SUBNQN, 0xffff)),
        1024,
    );
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    let (c, _) = env.cmd(
        &h,
        prop_set(2, PropertyOffset::CC, u64::from(CC_ENABLE)),
        None,
        0,
    );
    ok(&c);
    (h, cntlid)
}

pub fn io_connect(env: &Env, hostnqn: &str, cntlid: u16, qid: u16) -> TestHost {
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, qid, 127, 0),
        Some(connect_data(hostnqn, SUBNQN, cntlid)),
        1024,
    );
    ok(&c);
    h
}

pub fn sqe(opc: u8, cid: u16, nsid: u32, cdw10: u32, cdw11: u32, cdw12: u32) -> Sqe {
    let mut s = Sqe::new(opc, cid);
    s.nsid = nsid.into();
    s.cdw10 = cdw10.into();
    s.cdw11 = cdw11.into();
    s.cdw12 = cdw12.into();
    s
}

/// An RPC registry with the nvmf methods on `env`'s target, in the RUNTIME state.
pub fn rpc_registry(env: &Env) -> std::rc::Rc<rpc::RpcRegistry> {
    let reg = rpc::RpcRegistry::new();
    nvmf::register_rpcs(&reg, &env.tgt);
    reg.set_state(rpc::RpcState::Runtime);
    reg
}

/// Calls `method` on the app Thread and polls until it is answered.
pub fn rpc_call(
    env: &Env,
    reg: &rpc::RpcRegistry,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, rpc::RpcError> {
    env.threads.set_current(0);
    let out = std::rc::Rc::new(std::cell::RefCell::new(None));
    let o = out.clone();
    reg.call_local(method, Some(params), move |r| *o.borrow_mut() = Some(r));
    env.poll();
    env.threads.set_current(0);
    let r = out.borrow_mut().take();
    r.expect("RPC not answered")
}
