//! The module subsystems this binary links, registered explicitly (no link-time magic), in
//! SPDK's order and with SPDK's dependencies.

use std::cell::RefCell;
use std::rc::Rc;

use env::Reactors;
use rpc::RpcRegistry;
use serde_json::Value;

use crate::subsystem::{FiniDone, InitDone, Subsystem};

/// SPDK's `iobuf` subsystem: the global buffer pools, created at init with the options that
/// STARTUP calls of `iobuf_set_options` gave.
pub struct IobufSubsystem;

impl Subsystem for IobufSubsystem {
    fn name(&self) -> &'static str {
        "iobuf"
    }
    fn init(&self, done: InitDone) {
        done(
            env::iobuf::iobuf_initialize()
                .map(|_| ())
                .map_err(|e| e.to_string()),
        )
    }
    fn config_json(&self, _with_batches: bool) -> Vec<Value> {
        vec![crate::env_rpc::iobuf_config_json()]
    }
}

/// SPDK's `keyring` subsystem: the key ring (`keyring_file_add_key` and friends), saved
/// before `nvmf` so a replayed configuration has its keys when hosts name them.
pub struct KeyringSubsystem;

impl Subsystem for KeyringSubsystem {
    fn name(&self) -> &'static str {
        "keyring"
    }
    fn config_json(&self, _with_batches: bool) -> Vec<Value> {
        nvmf::keyring::config_json()
    }
}

/// SPDK's `bdev` subsystem: the block device layer and the bdev modules this binary links.
pub struct BdevSubsystem;

impl Subsystem for BdevSubsystem {
    fn name(&self) -> &'static str {
        "bdev"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["accel", "sock", "iobuf"]
    }
    fn init(&self, done: InitDone) {
        done(bdev::init().map_err(|e| e.to_string()))
    }
    fn fini(&self, done: FiniDone) {
        bdev::fini();
        done()
    }
    fn config_json(&self, _with_batches: bool) -> Vec<Value> {
        match bdev::subsystem_config_json() {
            Value::Array(calls) => calls,
            other => vec![other],
        }
    }
}

/// SPDK's `nvmf` subsystem: the NVMe-oF target with one poll group Thread per reactor core
/// (`nvmf_tgt_poll_group_000`, ...), as SPDK's CREATE_POLL_GROUPS step.
pub struct NvmfTgtSubsystem {
    nvmf: nvmf::rpc::NvmfSubsystem,
    reactors: Reactors,
    threads: RefCell<Vec<env::ThreadHandle>>,
}

impl Subsystem for NvmfTgtSubsystem {
    fn name(&self) -> &'static str {
        "nvmf"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["bdev", "sock", "accel", "iobuf", "keyring"]
    }
    fn init(&self, done: InitDone) {
        let mut threads = Vec::new();
        for (i, core) in self.reactors.cores().into_iter().enumerate() {
            let name = format!("nvmf_tgt_poll_group_{i:03}");
            match self.reactors.spawn_thread(core, &name, || {}) {
                Ok(t) => threads.push(t),
                Err(e) => return done(Err(format!("cannot start thread {name}: {e}"))),
            }
        }
        *self.threads.borrow_mut() = threads.clone();
        self.nvmf
            .init(threads, move |r| done(r.map_err(|e| e.to_string())));
    }
    fn fini(&self, done: FiniDone) {
        let threads = std::mem::take(&mut *self.threads.borrow_mut());
        self.nvmf.fini(move || {
            for t in threads {
                if let Err(e) = t.request_exit() {
                    tracing::warn!(thread = %t.name(), error = %e, "poll group thread did not exit");
                }
            }
            done()
        });
    }
    fn config_json(&self, _with_batches: bool) -> Vec<Value> {
        match self.nvmf.config_json() {
            Value::Array(calls) => calls,
            other => vec![other],
        }
    }
}

/// Every subsystem of `nvmf_tgt`, registering their RPC methods in `registry`.
pub fn subsystems(registry: &Rc<RpcRegistry>, reactors: &Reactors) -> Vec<Rc<dyn Subsystem>> {
    bdev::rpc::register_rpcs(registry);
    bdev_malloc::register(registry);
    bdev_nvme::register(registry);
    nvmf::keyring::register_rpcs(registry);
    let mut list: Vec<Rc<dyn Subsystem>> = vec![
        crate::compat::SchedulerSubsystem::new(registry),
        crate::compat::SockSubsystem::new(registry),
        Rc::new(IobufSubsystem),
        Rc::new(KeyringSubsystem),
        crate::compat::AccelSubsystem::new(registry),
        Rc::new(BdevSubsystem),
    ];
    match nvmf::rpc::NvmfSubsystem::new(registry) {
        Ok(nvmf) => {
            register_transports(&nvmf);
            list.push(Rc::new(NvmfTgtSubsystem {
                nvmf,
                reactors: reactors.clone(),
                threads: RefCell::new(Vec::new()),
            }));
        }
        Err(e) => tracing::error!(error = %e, "cannot create the nvmf target"),
    }
    list
}

/// The transports this binary links (explicit registration).
fn register_transports(nvmf: &nvmf::rpc::NvmfSubsystem) {
    nvmf.target()
        .register_transport_factory("TCP", nvmf_tcp::factory());
    #[cfg(feature = "rdma")]
    nvmf.target()
        .register_transport_factory("RDMA", nvmf_rdma::factory());
}
