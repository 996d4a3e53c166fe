//! `bdev_malloc_create` and `bdev_malloc_delete` (SPDK `bdev_malloc_rpc.c`), both RUNTIME.

use std::cell::RefCell;
use std::rc::Rc;

use ::rpc::{Request, RpcError, RpcRegistry, StateMask};
use bdev::rpc::{errno_error, parse_params};
use serde::Deserialize;

use crate::MallocOpts;

/// Registers both methods.
pub fn register_rpcs(reg: &RpcRegistry) {
    reg.register("bdev_malloc_create", StateMask::RUNTIME, bdev_malloc_create);
    reg.register("bdev_malloc_delete", StateMask::RUNTIME, bdev_malloc_delete);
}

/// Result: the bdev name. Errors: undecodable parameters `-32603 "spdk_json_decode_object
/// failed"`; refused values `{"code": -errno, "message": strerror}` (EINVAL, EEXIST, ENOMEM).
fn bdev_malloc_create(req: Request) {
    let opts: MallocOpts = match parse_params(&req) {
        Ok(o) => o,
        Err(e) => return req.err(e),
    };
    match crate::create(&opts) {
        Ok(b) => req.ok(b.name()),
        Err(e) => req.err(errno_error(&e)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    name: String,
}

/// Result `true` once the bdev is gone (after its last descriptor closed); unknown name
/// `{"code": -19, "message": "No such device"}`.
fn bdev_malloc_delete(req: Request) {
    let p: DeleteParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    let slot = Rc::new(RefCell::new(Some(req)));
    let s2 = Rc::clone(&slot);
    let r = crate::delete(&p.name, move |res| {
        if let Some(req) = s2.borrow_mut().take() {
            match res {
                Ok(()) => req.ok(true),
                Err(e) => req.err(errno_error(&e)),
            }
        }
    });
    if let Err(e) = r
        && let Some(req) = slot.borrow_mut().take()
    {
        tracing::error!(bdev = %p.name, error = %e, "bdev_malloc_delete failed");
        req.err(match e {
            bdev::BdevError::NoThread => RpcError::internal(e.to_string()),
            e => errno_error(&e),
        });
    }
}
