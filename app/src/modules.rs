//! The module subsystems this binary links, registered explicitly (no link-time magic), in
//! SPDK's order and with SPDK's dependencies.

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

/// SPDK's `bdev` subsystem: the block device layer and the bdev modules this binary links.
pub struct BdevSubsystem;

impl Subsystem for BdevSubsystem {
    fn name(&self) -> &'static str {
        "bdev"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["iobuf"]
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

/// Every subsystem of `nvmf_tgt`, registering their RPC methods in `registry`.
pub fn subsystems(registry: &Rc<RpcRegistry>, reactors: &Reactors) -> Vec<Rc<dyn Subsystem>> {
    let _ = reactors;
    bdev::rpc::register_rpcs(registry);
    bdev_malloc::register(registry);
    vec![Rc::new(IobufSubsystem), Rc::new(BdevSubsystem)]
}
