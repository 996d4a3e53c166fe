//! Serves a few methods on a Unix socket, for trying SPDK's `spdk-rpc` client by hand:
//! `cargo run -p rspdk-rpc --example serve_unix -- /tmp/rpc.sock` then
//! `spdk-rpc -s /tmp/rpc.sock rpc_get_methods`. Stops after 60 s or on `framework_wait_init`.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rpc::client::{VersionFields, VersionInfo};
use rpc::{RpcError, RpcRegistry, RpcState, ServerOpts, StateMask, UnixServer};

fn main() -> Result<(), rpc::Error> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/rspdk-rpc-example.sock"));
    let reg = RpcRegistry::new();
    reg.register("spdk_get_version", StateMask::BOTH, |r| {
        if r.params().is_some() {
            return r.err(RpcError::invalid_params(
                "spdk_get_version method requires no parameters",
            ));
        }
        r.ok(VersionInfo {
            version: "rspdk v0.1.0".into(),
            fields: VersionFields {
                major: 0,
                minor: 1,
                patch: 0,
                suffix: String::new(),
                commit: None,
            },
        })
    });
    let weak = Rc::downgrade(&reg);
    reg.register("framework_start_init", StateMask::STARTUP, move |r| {
        if let Some(reg) = weak.upgrade() {
            reg.set_state(RpcState::Runtime);
        }
        r.ok(true)
    });
    let stop = Rc::new(Cell::new(false));
    let s = stop.clone();
    reg.register("framework_wait_init", StateMask::BOTH, move |r| {
        s.set(true);
        r.ok(true)
    });
    reg.register("bdev_malloc_delete", StateMask::RUNTIME, |r| {
        r.err(RpcError::errno(libc::ENODEV))
    });
    let mut server = UnixServer::listen(&path, reg, ServerOpts::default())?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) && !(stop.get() && server.connections() == 0) {
        if !server.poll() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    server.close();
    Ok(())
}
