//! `bdev_nvme_attach_controller`, `bdev_nvme_detach_controller`, `bdev_nvme_get_controllers`
//! and `bdev_nvme_set_options` (SPDK `bdev_nvme_rpc.c`).

use std::cell::RefCell;
use std::rc::Rc;

use ::rpc::{Request, RpcError, RpcRegistry, StateMask};
use bdev::rpc::parse_params;
use serde::Deserialize;
use serde_json::json;

use crate::{AttachParams, BdevNvmeError, NvmeOpts};

/// Registers the four methods.
pub fn register_rpcs(reg: &RpcRegistry) {
    reg.register(
        "bdev_nvme_attach_controller",
        StateMask::RUNTIME,
        bdev_nvme_attach_controller,
    );
    reg.register(
        "bdev_nvme_detach_controller",
        StateMask::RUNTIME,
        bdev_nvme_detach_controller,
    );
    reg.register(
        "bdev_nvme_get_controllers",
        StateMask::RUNTIME,
        bdev_nvme_get_controllers,
    );
    reg.register(
        "bdev_nvme_set_options",
        StateMask::BOTH,
        bdev_nvme_set_options,
    );
    reg.register(
        "bdev_nvme_set_hotplug",
        StateMask::BOTH,
        bdev_nvme_set_hotplug,
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetHotplugParams {
    enable: bool,
    period_us: Option<u64>,
}

/// EOPNOTSUPP, SPDK's errno form.
const EOPNOTSUPP: i32 = 95;

/// PCIe hotplug monitoring (SPDK `bdev_nvme_set_hotplug`). This build has no PCIe driver, so
/// only `enable: false` is accepted (it is what SPDK saves by default); `enable: true` answers
/// `-95 "Operation not supported"`.
fn bdev_nvme_set_hotplug(req: Request) {
    let p: SetHotplugParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    if p.enable {
        tracing::error!(
            "bdev_nvme_set_hotplug: PCIe hotplug needs the PCIe driver, not in this build"
        );
        return req.err(RpcError::errno(EOPNOTSUPP));
    }
    if let Some(us) = p.period_us {
        crate::ctrlr::set_hotplug_period_us(us);
    }
    req.ok(true);
}

/// SPDK's `{"code": -errno, "message": ...}` for a module error.
pub fn error_of(e: &BdevNvmeError) -> RpcError {
    RpcError::new(-e.errno(), e.to_string())
}

/// Result: the names of the bdevs created (`["Nvme0n1"]`), sent when the connect finishes
/// (the app Thread keeps running meanwhile). Errors: undecodable parameters
/// `-32603 "spdk_json_decode_object failed"`; an attach of the same name in progress
/// `-16 "controller <name> is still being attached"`; otherwise `-errno` with the reason.
fn bdev_nvme_attach_controller(req: Request) {
    let p: AttachParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    let name = p.name.clone();
    crate::attach_async(&p, move |r| match r {
        Ok(names) => req.ok(names),
        Err(e) => {
            tracing::error!(ctrlr = %name, error = %e, "bdev_nvme_attach_controller failed");
            req.err(error_of(&e))
        }
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetachParams {
    name: String,
    #[serde(default)]
    trtype: Option<String>,
    #[serde(default)]
    traddr: Option<String>,
    #[serde(default)]
    adrfam: Option<String>,
    #[serde(default)]
    trsvcid: Option<String>,
    #[serde(default)]
    subnqn: Option<String>,
    #[serde(default)]
    hostaddr: Option<String>,
    #[serde(default)]
    hostsvcid: Option<String>,
}

/// Result `true` once the controller's bdevs are gone. A path filter that does not match the
/// controller's only path is ENODEV, as SPDK answers.
fn bdev_nvme_detach_controller(req: Request) {
    let p: DetachParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    if let Some(c) = crate::controller(&p.name) {
        let t = c.trid();
        let eq = |given: &Option<String>, have: &str| {
            given.as_ref().is_none_or(|g| g.eq_ignore_ascii_case(have))
        };
        let matches = eq(&p.trtype, t.trtype.as_str())
            && eq(&p.traddr, &t.traddr)
            && eq(&p.adrfam, t.adrfam.as_str())
            && eq(&p.trsvcid, &t.trsvcid)
            && eq(&p.subnqn, &t.subnqn)
            && p.hostaddr.is_none()
            && p.hostsvcid.is_none();
        if !matches {
            return req.err(RpcError::errno(19));
        }
    }
    let slot = Rc::new(RefCell::new(Some(req)));
    let s2 = Rc::clone(&slot);
    let r = crate::detach(&p.name, move |res| {
        if let Some(req) = s2.borrow_mut().take() {
            match res {
                Ok(()) => req.ok(true),
                Err(e) => req.err(error_of(&e)),
            }
        }
    });
    if let Err(e) = r
        && let Some(req) = slot.borrow_mut().take()
    {
        tracing::error!(ctrlr = %p.name, error = %e, "bdev_nvme_detach_controller failed");
        req.err(error_of(&e));
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetParams {
    #[serde(default)]
    name: Option<String>,
}

/// Result: `[{"name": .., "ctrlrs": [{"state", "trid", "cntlid", "host"}]}]`; an unknown
/// `name` is `{"code": -19, "message": "No such device"}`.
fn bdev_nvme_get_controllers(req: Request) {
    let p: GetParams = if req.params().is_none() {
        GetParams::default()
    } else {
        match parse_params(&req) {
            Ok(p) => p,
            Err(e) => return req.err(e),
        }
    };
    let list = match &p.name {
        Some(n) => match crate::controller(n) {
            Some(c) => vec![c],
            None => return req.err(RpcError::errno(19)),
        },
        None => crate::controllers(),
    };
    let out: Vec<_> = list
        .iter()
        .map(|c| json!({"name": c.name(), "ctrlrs": [c.info_json()]}))
        .collect();
    req.ok(out)
}

/// Result `true`; EPERM once a controller is attached; EINVAL for inconsistent values.
fn bdev_nvme_set_options(req: Request) {
    let mut merged = serde_json::to_value(crate::options()).unwrap_or_default();
    if let (Some(obj), Some(serde_json::Value::Object(given))) =
        (merged.as_object_mut(), req.params())
    {
        for (k, v) in given {
            obj.insert(k.clone(), v.clone());
        }
    }
    let opts: NvmeOpts = match serde_json::from_value(merged) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(reason = %e, "bdev_nvme_set_options parameters do not decode");
            return req.err(RpcError::new(
                RpcError::INTERNAL_ERROR,
                bdev::rpc::DECODE_FAILED,
            ));
        }
    };
    match crate::set_options(opts) {
        Ok(()) => req.ok(true),
        Err(e) => {
            tracing::error!(error = %e, "bdev_nvme_set_options failed");
            req.err(error_of(&e))
        }
    }
}
