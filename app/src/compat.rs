//! The SPDK framework subsystems that hold options only: `scheduler`, `sock` and `accel`.
//!
//! They exist so that a config saved by SPDK (`spdk-rpc save_config`) loads unchanged and our own
//! `save_config` lists the same subsystems with the same calls.
//! - `scheduler`: rspdk places Threads statically (one poll group per core), which is SPDK's
//!   `static` scheduler; `dynamic` and `gscheduler` are refused.
//! - `sock`: the socket-implementation options live in [`env::sock`], where transports read them.
//! - `accel`: SPDK's acceleration framework options. rspdk computes CRC32C with the CPU's
//!   instruction through the `crc32c` crate and copies with the CPU, so there is nothing to
//!   offload; the options are kept and reported.

use std::cell::RefCell;
use std::rc::Rc;

use rpc::{Request, RpcError, RpcRegistry, StateMask};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::subsystem::Subsystem;

fn parse_or_invalid<P: for<'de> Deserialize<'de>>(req: &Request) -> Result<P, RpcError> {
    req.parse::<P>()
        .map_err(|_| RpcError::invalid_params("Invalid parameters"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSchedulerParams {
    name: String,
    period: Option<u64>,
    #[serde(default)]
    mappings: Option<String>,
}

/// SPDK's `scheduler` subsystem with the `static` scheduler.
pub struct SchedulerSubsystem {
    period_us: Rc<RefCell<u64>>,
}

/// SPDK's default scheduler period, 1 s.
const DEFAULT_SCHEDULER_PERIOD_US: u64 = 1_000_000;

impl SchedulerSubsystem {
    /// Registers `framework_set_scheduler` and `framework_get_scheduler`.
    pub fn new(reg: &RpcRegistry) -> Rc<SchedulerSubsystem> {
        let s = Rc::new(SchedulerSubsystem {
            period_us: Rc::new(RefCell::new(DEFAULT_SCHEDULER_PERIOD_US)),
        });
        let period = s.period_us.clone();
        reg.register("framework_set_scheduler", StateMask::BOTH, move |req| {
            let p: SetSchedulerParams = match parse_or_invalid(&req) {
                Ok(p) => p,
                Err(e) => return req.err(e),
            };
            if p.name != "static" {
                tracing::error!(scheduler = %p.name, "only the static scheduler exists in rspdk");
                // SPDK: spdk_scheduler_set() fails with -ENOENT for an unknown scheduler.
                return req.err(RpcError::new(
                    RpcError::INTERNAL_ERROR,
                    "No such file or directory",
                ));
            }
            if p.mappings.is_some() {
                return req.err(RpcError::new(
                    RpcError::INTERNAL_ERROR,
                    "Operation not supported",
                ));
            }
            if let Some(us) = p.period {
                if us == 0 {
                    return req.err(RpcError::new(RpcError::INTERNAL_ERROR, "Invalid argument"));
                }
                *period.borrow_mut() = us;
            }
            req.ok(true);
        });
        let period = s.period_us.clone();
        reg.register("framework_get_scheduler", StateMask::RUNTIME, move |req| {
            req.ok(json!({
                "scheduler_name": "static",
                "scheduler_period": *period.borrow(),
            }));
        });
        s
    }
}

impl Subsystem for SchedulerSubsystem {
    fn name(&self) -> &'static str {
        "scheduler"
    }
    fn config_json(&self, _with_batches: bool) -> Vec<Value> {
        let mut params = json!({"name": "static"});
        let period = *self.period_us.borrow();
        if period != DEFAULT_SCHEDULER_PERIOD_US {
            params["period"] = json!(period);
        }
        vec![json!({"method": "framework_set_scheduler", "params": params})]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImplName {
    impl_name: String,
}

/// SPDK's `sock` subsystem: options of the socket implementations ([`env::sock`]).
pub struct SockSubsystem;

impl SockSubsystem {
    /// Registers the `sock_*` methods.
    pub fn new(reg: &RpcRegistry) -> Rc<SockSubsystem> {
        reg.register("sock_impl_set_options", StateMask::STARTUP, |req| {
            let Some(Value::Object(p)) = req.params().cloned() else {
                return req.err(RpcError::invalid_params("Invalid parameters"));
            };
            let Some(Value::String(name)) = p.get("impl_name").cloned() else {
                return req.err(RpcError::invalid_params("Invalid parameters"));
            };
            let Ok(cur) = env::sock::sock_impl_get_opts(&name) else {
                return req.err(RpcError::invalid_params("Invalid parameters"));
            };
            // SPDK decodes the given fields over the current options.
            let mut merged = match serde_json::to_value(cur) {
                Ok(Value::Object(m)) => m,
                _ => return req.err(RpcError::internal("cannot read sock options")),
            };
            for (k, v) in p.into_iter().filter(|(k, _)| k != "impl_name") {
                merged.insert(k, v);
            }
            let opts: env::sock::SockImplOpts = match serde_json::from_value(Value::Object(merged))
            {
                Ok(o) => o,
                Err(_) => return req.err(RpcError::invalid_params("Invalid parameters")),
            };
            match env::sock::sock_impl_set_opts(&name, opts) {
                Ok(()) => req.ok(true),
                Err(_) => req.err(RpcError::invalid_params("Invalid parameters")),
            }
        });
        reg.register("sock_impl_get_options", StateMask::BOTH, |req| {
            let p: ImplName = match parse_or_invalid(&req) {
                Ok(p) => p,
                Err(e) => return req.err(e),
            };
            match env::sock::sock_impl_get_opts(&p.impl_name) {
                Ok(o) => req.ok(o),
                Err(_) => req.err(RpcError::invalid_params("Invalid parameters")),
            }
        });
        reg.register("sock_set_default_impl", StateMask::STARTUP, |req| {
            let p: ImplName = match parse_or_invalid(&req) {
                Ok(p) => p,
                Err(e) => return req.err(e),
            };
            match env::sock::sock_set_default_impl(&p.impl_name) {
                Ok(()) => req.ok(true),
                Err(e) => {
                    tracing::error!(error = %e, "sock_set_default_impl refused");
                    req.err(RpcError::invalid_params("Invalid parameters"))
                }
            }
        });
        reg.register("sock_get_default_impl", StateMask::BOTH, |req| {
            req.ok(json!({"impl_name": env::sock::sock_get_default_impl()}));
        });
        Rc::new(SockSubsystem)
    }
}

impl Subsystem for SockSubsystem {
    fn name(&self) -> &'static str {
        "sock"
    }
    fn config_json(&self, _with_batches: bool) -> Vec<Value> {
        let mut out = vec![json!({
            "method": "sock_set_default_impl",
            "params": {"impl_name": env::sock::sock_get_default_impl()}
        })];
        for name in env::sock::sock_impl_names() {
            if let Ok(o) = env::sock::sock_impl_get_opts(name) {
                let mut params = json!({"impl_name": name});
                if let (Value::Object(p), Ok(Value::Object(fields))) =
                    (&mut params, serde_json::to_value(o))
                {
                    p.extend(fields);
                }
                out.push(json!({"method": "sock_impl_set_options", "params": params}));
            }
        }
        out
    }
}

/// SPDK's `accel_set_options` parameters and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccelOpts {
    /// Per-channel cache of small iobuf buffers.
    pub small_cache_size: u32,
    /// Per-channel cache of large iobuf buffers.
    pub large_cache_size: u32,
    /// Task pool size.
    pub task_count: u32,
    /// Sequence pool size.
    pub sequence_count: u32,
    /// Buffer pool size.
    pub buf_count: u32,
}

impl Default for AccelOpts {
    fn default() -> Self {
        AccelOpts {
            small_cache_size: 128,
            large_cache_size: 16,
            task_count: 2048,
            sequence_count: 2048,
            buf_count: 2048,
        }
    }
}

/// SPDK's `accel` subsystem: its options (see the module doc).
pub struct AccelSubsystem {
    opts: Rc<RefCell<AccelOpts>>,
}

impl AccelSubsystem {
    /// Registers `accel_set_options` and `accel_get_options`.
    pub fn new(reg: &RpcRegistry) -> Rc<AccelSubsystem> {
        let s = Rc::new(AccelSubsystem {
            opts: Rc::new(RefCell::new(AccelOpts::default())),
        });
        let o = s.opts.clone();
        reg.register("accel_set_options", StateMask::STARTUP, move |req| {
            let mut cur = match serde_json::to_value(*o.borrow()) {
                Ok(Value::Object(m)) => m,
                _ => return req.err(RpcError::internal("cannot read accel options")),
            };
            match req.params() {
                None | Some(Value::Null) => {}
                Some(Value::Object(p)) => cur.extend(p.clone()),
                Some(_) => return req.err(RpcError::invalid_params("Invalid parameters")),
            }
            match serde_json::from_value::<AccelOpts>(Value::Object(cur)) {
                Ok(n) => {
                    *o.borrow_mut() = n;
                    req.ok(true)
                }
                Err(_) => req.err(RpcError::invalid_params("Invalid parameters")),
            }
        });
        let o = s.opts.clone();
        reg.register("accel_get_options", StateMask::BOTH, move |req| {
            req.ok(*o.borrow());
        });
        s
    }
}

impl Subsystem for AccelSubsystem {
    fn name(&self) -> &'static str {
        "accel"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["iobuf"]
    }
    fn config_json(&self, _with_batches: bool) -> Vec<Value> {
        vec![json!({"method": "accel_set_options", "params": *self.opts.borrow()})]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(reg: &RpcRegistry, m: &str, p: Value) -> Result<Value, RpcError> {
        let out = Rc::new(RefCell::new(None));
        let o2 = out.clone();
        reg.call_local(m, Some(p), move |r| *o2.borrow_mut() = Some(r));
        out.borrow_mut().take().expect("answered at once")
    }

    #[test]
    fn static_scheduler_is_accepted_and_others_refused() {
        let reg = RpcRegistry::new();
        let s = SchedulerSubsystem::new(&reg);
        assert_eq!(
            call(&reg, "framework_set_scheduler", json!({"name": "static"})).unwrap(),
            json!(true)
        );
        let e = call(&reg, "framework_set_scheduler", json!({"name": "dynamic"})).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (-32603, "No such file or directory")
        );
        assert_eq!(
            s.config_json(false),
            vec![json!({"method": "framework_set_scheduler", "params": {"name": "static"}})]
        );
    }

    #[test]
    fn accel_options_merge_and_round_trip() {
        let reg = RpcRegistry::new();
        let a = AccelSubsystem::new(&reg);
        assert_eq!(
            call(&reg, "accel_set_options", json!({"task_count": 4096})).unwrap(),
            json!(true)
        );
        let cfg = a.config_json(false);
        assert_eq!(cfg[0]["params"]["task_count"], json!(4096));
        assert_eq!(cfg[0]["params"]["buf_count"], json!(2048));
        let e = call(&reg, "accel_set_options", json!({"bogus": 1})).unwrap_err();
        assert_eq!(e.code, -32602);
    }

    #[test]
    fn sock_config_has_spdk_shape() {
        let reg = RpcRegistry::new();
        let s = SockSubsystem::new(&reg);
        let cfg = s.config_json(false);
        assert_eq!(
            cfg[0],
            json!({"method": "sock_set_default_impl", "params": {"impl_name": "posix"}})
        );
        assert_eq!(cfg[1]["params"]["impl_name"], json!("ssl"));
        assert_eq!(cfg[2]["params"]["impl_name"], json!("posix"));
        assert_eq!(cfg[2]["params"]["recv_buf_size"], json!(2097152));
        let e = call(&reg, "sock_impl_set_options", json!({"impl_name": "uring"})).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    }
}
