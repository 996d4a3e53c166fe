//! RPC methods of the env layer that SPDK serves from `lib/event` and the iobuf subsystem:
//! `iobuf_set_options`, `iobuf_get_stats`, `framework_get_reactors`, `thread_get_stats`.

use env::{IobufOpts, Reactors};
use rpc::{Request, RpcError, RpcRegistry, StateMask};
use serde_json::{Value, json};

/// EINVAL, for SPDK's errno-style errors.
const EINVAL: i32 = 22;
/// ENOMEM: the pools would need more memory than the system has.
const ENOMEM: i32 = 12;

/// Registers the env methods.
pub fn register(reg: &RpcRegistry, reactors: &Reactors) {
    reg.register("iobuf_set_options", StateMask::STARTUP, iobuf_set_options);
    reg.register("iobuf_get_stats", StateMask::RUNTIME, |req| {
        req.ok(env::iobuf_get_stats());
    });
    let r = reactors.clone();
    reg.register("framework_get_reactors", StateMask::RUNTIME, move |req| {
        if !matches!(req.params(), None | Some(Value::Null)) && req.params() != Some(&json!({})) {
            return req.err(RpcError::invalid_params(
                "`framework_get_reactors` requires no arguments",
            ));
        }
        req.ok(reactors_json(&r));
    });
    let r = reactors.clone();
    reg.register("thread_get_stats", StateMask::RUNTIME, move |req| {
        req.ok(thread_stats_json(&r));
    });
}

/// SPDK merges the given fields into the current options.
fn iobuf_set_options(req: Request) {
    let mut cur = match serde_json::to_value(env::iobuf_get_options()) {
        Ok(Value::Object(m)) => m,
        _ => return req.err(RpcError::internal("cannot read the iobuf options")),
    };
    match req.params() {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) => {
            for (k, v) in p {
                cur.insert(k.clone(), v.clone());
            }
        }
        Some(_) => return req.err(RpcError::invalid_params("Invalid parameters")),
    }
    let opts: IobufOpts = match serde_json::from_value(Value::Object(cur)) {
        Ok(o) => o,
        Err(e) => return req.err(RpcError::invalid_params(format!("Invalid parameters: {e}"))),
    };
    match env::iobuf_set_options(opts) {
        Ok(()) => req.ok(true),
        Err(e) => {
            tracing::error!(error = %e, "iobuf_set_options refused");
            req.err(RpcError::errno(match e {
                env::EnvError::NoMemory { .. } => ENOMEM,
                _ => EINVAL,
            }))
        }
    }
}

/// The `iobuf_set_options` call that recreates the current options (the iobuf subsystem's config).
pub fn iobuf_config_json() -> Value {
    let o = env::iobuf_get_options();
    json!({
        "method": "iobuf_set_options",
        "params": {
            "small_pool_count": o.small_pool_count,
            "large_pool_count": o.large_pool_count,
            "small_bufsize": o.small_bufsize,
            "large_bufsize": o.large_bufsize,
            "enable_numa": o.enable_numa,
        }
    })
}

/// Per-core counters from `/proc/stat` (user, system, irq jiffies), 0 where unreadable.
fn proc_stat(core: u32) -> (u64, u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0, 0);
    };
    let tag = format!("cpu{core} ");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&tag) {
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // user nice system idle iowait irq softirq ...
            let g = |i: usize| f.get(i).copied().unwrap_or(0);
            return (g(0), g(2), g(5));
        }
    }
    (0, 0, 0)
}

/// NUMA node of a core from sysfs, 0 when the system does not say.
fn numa_id(core: u32) -> i32 {
    let dir = format!("/sys/devices/system/cpu/cpu{core}");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("node"))
                && let Ok(id) = n.parse()
            {
                return id;
            }
        }
    }
    0
}

/// `framework_get_reactors` result, SPDK's shape.
pub fn reactors_json(r: &Reactors) -> Value {
    let reactors: Vec<Value> = r
        .stats()
        .into_iter()
        .map(|s| {
            let (usr, sys, irq) = proc_stat(s.lcore);
            json!({
                "lcore": s.lcore,
                "numa_id": numa_id(s.lcore),
                "tid": s.tid,
                "busy": s.busy,
                "idle": s.idle,
                "in_interrupt": s.in_interrupt,
                "irq_mode": s.irq_mode,
                "irq": irq,
                "sys": sys,
                "usr": usr,
                "lw_threads": s.lw_threads,
            })
        })
        .collect();
    json!({"tick_rate": r.tick_rate(), "pid": std::process::id(), "reactors": reactors})
}

/// `thread_get_stats` result, SPDK's shape.
pub fn thread_stats_json(r: &Reactors) -> Value {
    let threads: Vec<Value> = r
        .threads()
        .into_iter()
        .map(|(core, t)| {
            let s = t.stats();
            let mask = env::CpuMask::single(core)
                .map(|m| m.to_spdk_string())
                .unwrap_or_default();
            json!({
                "name": t.name(),
                "id": t.id().0,
                "cpumask": mask,
                "busy": s.busy_ticks,
                "idle": s.idle_ticks,
                "active_pollers_count": s.active_pollers_count,
                "timed_pollers_count": s.timed_pollers_count,
                "paused_pollers_count": s.paused_pollers_count,
            })
        })
        .collect();
    json!({"tick_rate": r.tick_rate(), "threads": threads})
}
