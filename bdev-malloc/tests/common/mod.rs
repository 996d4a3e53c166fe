//! Shared helpers: env::testing threads, a completion slot, and local RPC calls.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use bdev::{IoCompletion, IoVecs};
use env::testing::TestThreads;
use rpc::{RpcError, RpcRegistry, RpcState};
use serde_json::Value;

pub type Slot<T> = Rc<RefCell<Option<T>>>;

pub fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

/// A completion callback storing into `s`.
pub fn into_slot(s: &Slot<IoCompletion>) -> impl FnOnce(IoCompletion) + 'static {
    let s = Rc::clone(s);
    move |c| *s.borrow_mut() = Some(c)
}

pub fn take<T>(s: &Slot<T>) -> T {
    s.borrow_mut().take().expect("slot filled")
}

/// A registry in RUNTIME state with the bdev and malloc RPCs.
pub fn registry() -> Rc<RpcRegistry> {
    let reg = RpcRegistry::new();
    bdev::rpc::register_rpcs(&reg);
    bdev_malloc::register(&reg);
    reg.set_state(RpcState::Runtime);
    reg
}

/// Calls `method` on thread 0 and polls until answered.
pub fn call(
    tt: &TestThreads,
    reg: &RpcRegistry,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    tt.set_current(0);
    let s = slot();
    let s2 = Rc::clone(&s);
    let params = if params.is_null() { None } else { Some(params) };
    reg.call_local(method, params, move |r| *s2.borrow_mut() = Some(r));
    tt.poll_threads();
    take(&s)
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn bufs(v: Vec<u8>) -> IoVecs {
    IoVecs::from_vec(v)
}
