//! The bdev layer's RPCs: `bdev_get_bdevs`, `bdev_get_iostat`, `bdev_reset_iostat`,
//! `bdev_set_qd_sampling_period`, `bdev_set_options`, `bdev_set_qos_limit`,
//! `bdev_wait_for_examine` (SPDK `lib/bdev/bdev_rpc.c`), with SPDK's
//! parameter names, result shapes and errors.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use rpc::{Request, RpcError, RpcRegistry, StateMask};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Bdev, BdevError, BdevOpts, IoStat, QosLimits, ResetStatMode};

/// SPDK's answer when parameters do not decode (`SPDK_JSONRPC_ERROR_INTERNAL_ERROR`).
pub const DECODE_FAILED: &str = "spdk_json_decode_object failed";

/// Parses parameters as SPDK does: a decode failure answers `-32603 "spdk_json_decode_object
/// failed"` (logged with serde's reason) and gives `None`.
pub fn parse_params<P: DeserializeOwned>(req: &Request) -> Result<P, RpcError> {
    req.parse::<P>().map_err(|e| {
        tracing::error!(method = req.method(), reason = %e.message, "RPC parameters do not decode");
        RpcError::new(RpcError::INTERNAL_ERROR, DECODE_FAILED)
    })
}

/// An error in SPDK's errno form (`{"code": -errno, "message": strerror}`).
pub fn errno_error(e: &BdevError) -> RpcError {
    RpcError::new(-e.errno(), e.strerror())
}

/// Registers the bdev layer's RPC methods.
pub fn register_rpcs(reg: &RpcRegistry) {
    reg.register("bdev_get_bdevs", StateMask::RUNTIME, bdev_get_bdevs);
    reg.register("bdev_get_iostat", StateMask::RUNTIME, bdev_get_iostat);
    reg.register("bdev_reset_iostat", StateMask::RUNTIME, bdev_reset_iostat);
    reg.register(
        "bdev_set_qd_sampling_period",
        StateMask::RUNTIME,
        bdev_set_qd_sampling_period,
    );
    reg.register("bdev_set_options", StateMask::STARTUP, bdev_set_options);
    reg.register("bdev_set_qos_limit", StateMask::RUNTIME, bdev_set_qos_limit);
    // Modules examine a new bdev synchronously inside its registration, so by the time this
    // call runs every examine has finished.
    reg.register("bdev_wait_for_examine", StateMask::RUNTIME, |req| {
        req.ok(true)
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetBdevsParams {
    name: Option<String>,
    #[serde(default)]
    timeout: u64,
}

/// Poll period while `bdev_get_bdevs` waits for a bdev to appear.
const GET_BDEVS_POLL: Duration = Duration::from_millis(10);

fn bdev_get_bdevs(req: Request) {
    let p: GetBdevsParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    let Some(name) = p.name else {
        let all: Vec<Value> = crate::bdevs().iter().map(Bdev::dump_info_json).collect();
        return req.ok(all);
    };
    if let Some(b) = crate::get_by_name(&name) {
        return req.ok(vec![b.dump_info_json()]);
    }
    if p.timeout == 0 {
        tracing::error!(bdev = %name, "bdev_get_bdevs: bdev not found");
        return req.err(errno_error(&BdevError::NotFound(name)));
    }
    // Wait up to `timeout` ms for the bdev to appear, as SPDK does.
    let deadline = env::now() + Duration::from_millis(p.timeout);
    let slot: Rc<RefCell<Option<(Request, env::Poller)>>> = Rc::new(RefCell::new(None));
    let s2 = Rc::clone(&slot);
    let poller = env::poller_register_periodic(
        move || {
            let found = crate::get_by_name(&name);
            if found.is_none() && env::now() < deadline {
                return env::PollStatus::Idle;
            }
            if let Some((req, _poller)) = s2.borrow_mut().take() {
                match found {
                    Some(b) => req.ok(vec![b.dump_info_json()]),
                    None => req.err(errno_error(&BdevError::NotFound(name.clone()))),
                }
            }
            env::PollStatus::Busy
        },
        GET_BDEVS_POLL,
    );
    match poller {
        Ok(pl) => *slot.borrow_mut() = Some((req, pl)),
        Err(e) => req.err(RpcError::internal(e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetIostatParams {
    /// SPDK v25.09's one bdev.
    name: Option<String>,
    /// Newer SPDK's list (what the pinned `spdk-rpc` client sends for `--names`).
    names: Option<Vec<String>>,
    #[serde(default)]
    per_channel: bool,
    #[serde(default = "reset_mode_none")]
    reset_mode: ResetStatMode,
}

fn reset_mode_none() -> ResetStatMode {
    ResetStatMode::None
}

fn bdev_get_iostat(req: Request) {
    let p: GetIostatParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    let named: Option<Vec<String>> = match (p.name, p.names) {
        (None, None) => None,
        (a, b) => Some(a.into_iter().chain(b.unwrap_or_default()).collect()),
    };
    if p.per_channel && named.as_ref().is_none_or(|n| n.len() != 1) {
        tracing::error!("per channel IO statistics need exactly one bdev name");
        return req.err(errno_error(&BdevError::InvalidArgument(
            "per_channel needs one bdev name".into(),
        )));
    }
    let bdevs = match named {
        Some(names) => {
            let mut v = Vec::with_capacity(names.len());
            for n in names {
                match crate::get_by_name(&n) {
                    Some(b) => v.push(b),
                    None => {
                        tracing::error!(bdev = %n, "bdev_get_iostat: bdev not found");
                        return req.err(errno_error(&BdevError::NotFound(n)));
                    }
                }
            }
            v
        }
        None => crate::bdevs(),
    };
    if p.per_channel
        && let Some(b) = bdevs.first()
    {
        return per_channel_iostat(b, p.reset_mode, req);
    }
    collect_iostat(bdevs, Vec::new(), p.reset_mode, req);
}

/// `bdev_get_iostat -c`: `{"tick_rate", "ticks", "name", "channels": [...]}` as SPDK.
fn per_channel_iostat(b: &Bdev, mode: ResetStatMode, req: Request) {
    let name = b.name().to_owned();
    let ticks = env::now().as_nanos();
    let slot = Rc::new(RefCell::new(Some(req)));
    let s2 = Rc::clone(&slot);
    let r = b.iostat_per_channel(mode, move |chans| {
        if let Some(req) = s2.borrow_mut().take() {
            let channels: Vec<Value> = chans
                .iter()
                .map(|(tid, s)| s.to_channel_json(*tid))
                .collect();
            req.ok(json!({
                "tick_rate": env::time::TICK_RATE,
                "ticks": ticks,
                "name": name,
                "channels": channels,
            }));
        }
    });
    if let Err(e) = r
        && let Some(req) = slot.borrow_mut().take()
    {
        req.err(RpcError::internal(e.to_string()));
    }
}

/// Gathers one bdev's stats after the other, then answers.
fn collect_iostat(mut rest: Vec<Bdev>, acc: Vec<Value>, mode: ResetStatMode, req: Request) {
    if rest.is_empty() {
        return req.ok(json!({
            "tick_rate": env::time::TICK_RATE,
            "ticks": env::now().as_nanos(),
            "bdevs": acc,
        }));
    }
    let b = rest.remove(0);
    let name = b.name().to_owned();
    let qd = b.queue_depth_stat();
    let slot = Rc::new(RefCell::new(Some((req, rest, acc))));
    let s2 = Rc::clone(&slot);
    let r = b.iostat_and_reset(mode, move |s: IoStat| {
        if let Some((req, rest, mut acc)) = s2.borrow_mut().take() {
            acc.push(s.to_json(&name, qd));
            collect_iostat(rest, acc, mode, req);
        }
    });
    if let Err(e) = r
        && let Some((req, _, _)) = slot.borrow_mut().take()
    {
        req.err(RpcError::internal(e.to_string()));
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetIostatParams {
    name: Option<String>,
    #[serde(default)]
    mode: ResetStatMode,
}

/// `bdev_reset_iostat`: clears the statistics of one bdev or all (`mode` `all` by default,
/// `maxmin` the latency extrema, `none` nothing); answers `true`.
fn bdev_reset_iostat(req: Request) {
    let p: ResetIostatParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    if p.mode == ResetStatMode::None {
        tracing::info!("bdev_reset_iostat called with mode none, aborting operation");
        return req.ok(true);
    }
    let bdevs = match p.name {
        Some(n) => match crate::get_by_name(&n) {
            Some(b) => vec![b],
            None => {
                tracing::error!(bdev = %n, "bdev_reset_iostat: bdev not found");
                return req.err(errno_error(&BdevError::NotFound(n)));
            }
        },
        None => crate::bdevs(),
    };
    reset_each(bdevs, p.mode, req);
}

fn reset_each(mut rest: Vec<Bdev>, mode: ResetStatMode, req: Request) {
    if rest.is_empty() {
        return req.ok(true);
    }
    let b = rest.remove(0);
    let slot = Rc::new(RefCell::new(Some((req, rest))));
    let s2 = Rc::clone(&slot);
    let r = b.reset_iostat(mode, move || {
        if let Some((req, rest)) = s2.borrow_mut().take() {
            reset_each(rest, mode, req);
        }
    });
    if let Err(e) = r
        && let Some((req, _)) = slot.borrow_mut().take()
    {
        req.err(RpcError::internal(e.to_string()));
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QdSamplingParams {
    name: String,
    period: u64,
}

/// `bdev_set_qd_sampling_period`: `period` in microseconds, 0 stops sampling.
fn bdev_set_qd_sampling_period(req: Request) {
    let p: QdSamplingParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    let Some(b) = crate::get_by_name(&p.name) else {
        tracing::error!(bdev = %p.name, "bdev_set_qd_sampling_period: bdev not found");
        return req.err(errno_error(&BdevError::NotFound(p.name)));
    };
    match b.set_qd_sampling_period(p.period) {
        Ok(()) => req.ok(true),
        Err(e) => {
            tracing::error!(bdev = %p.name, error = %e, "bdev_set_qd_sampling_period failed");
            req.err(errno_error(&e))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetOptionsParams {
    bdev_io_pool_size: Option<u32>,
    bdev_io_cache_size: Option<u32>,
    bdev_auto_examine: Option<bool>,
    iobuf_small_cache_size: Option<u32>,
    iobuf_large_cache_size: Option<u32>,
}

fn bdev_set_options(req: Request) {
    let p: SetOptionsParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    let cur = crate::options();
    let o = BdevOpts {
        bdev_io_pool_size: p.bdev_io_pool_size.unwrap_or(cur.bdev_io_pool_size),
        bdev_io_cache_size: p.bdev_io_cache_size.unwrap_or(cur.bdev_io_cache_size),
        bdev_auto_examine: p.bdev_auto_examine.unwrap_or(cur.bdev_auto_examine),
        iobuf_small_cache_size: p
            .iobuf_small_cache_size
            .unwrap_or(cur.iobuf_small_cache_size),
        iobuf_large_cache_size: p
            .iobuf_large_cache_size
            .unwrap_or(cur.iobuf_large_cache_size),
    };
    match crate::set_options(o) {
        Ok(()) => req.ok(true),
        Err(e) => {
            tracing::error!(error = %e, "bdev_set_options failed");
            req.err(RpcError::new(
                RpcError::INVALID_PARAMS,
                format!("spdk_bdev_set_opts failed with {}", -e.errno()),
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QosParams {
    name: String,
    rw_ios_per_sec: Option<u64>,
    rw_mbytes_per_sec: Option<u64>,
    r_mbytes_per_sec: Option<u64>,
    w_mbytes_per_sec: Option<u64>,
}

fn bdev_set_qos_limit(req: Request) {
    let p: QosParams = match parse_params(&req) {
        Ok(p) => p,
        Err(e) => return req.err(e),
    };
    let Some(b) = crate::get_by_name(&p.name) else {
        tracing::error!(bdev = %p.name, "bdev_set_qos_limit: bdev not found");
        return req.err(errno_error(&BdevError::NotFound(p.name)));
    };
    if p.rw_ios_per_sec.is_none()
        && p.rw_mbytes_per_sec.is_none()
        && p.r_mbytes_per_sec.is_none()
        && p.w_mbytes_per_sec.is_none()
    {
        tracing::error!(bdev = %p.name, "no rate limits specified");
        return req.err(RpcError::new(
            -crate::libc_errno::EINVAL,
            "No rate limits specified",
        ));
    }
    let cur = b.qos_limits();
    let l = QosLimits {
        rw_ios_per_sec: p.rw_ios_per_sec.unwrap_or(cur.rw_ios_per_sec),
        rw_mbytes_per_sec: p.rw_mbytes_per_sec.unwrap_or(cur.rw_mbytes_per_sec),
        r_mbytes_per_sec: p.r_mbytes_per_sec.unwrap_or(cur.r_mbytes_per_sec),
        w_mbytes_per_sec: p.w_mbytes_per_sec.unwrap_or(cur.w_mbytes_per_sec),
    };
    match b.set_qos_limits(l) {
        Ok(()) => req.ok(true),
        Err(e) => {
            tracing::error!(bdev = %p.name, error = %e, "bdev_set_qos_limit failed");
            req.err(RpcError::new(
                RpcError::INTERNAL_ERROR,
                format!("Failed to configure rate limit: {}", e.strerror()),
            ))
        }
    }
}
