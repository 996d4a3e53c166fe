//! JSON-RPC methods of the nvmf subsystem (SPDK `lib/nvmf/nvmf_rpc.c`,
//! `module/event/subsystems/nvmf/nvmf_rpc.c`) and its config writer.
//!
//! Method names, parameter names, result shapes and error wording follow SPDK 25.09. STARTUP-only:
//! `nvmf_set_config`, `nvmf_set_max_subsystems`, `nvmf_set_crdt`; everything else RUNTIME.

use crate::NvmfError;
use crate::poll_group;
use crate::subsystem::{AnaState, SubType, Subsystem};
use crate::target::{AdminCmdPassthru, MAX_MAX_SUBSYSTEMS, Referral, Target};
use crate::transport::{ListenAddr, TransportOpts};
use rpc::{Request, RpcError, RpcRegistry, StateMask};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

fn invalid() -> RpcError {
    RpcError::invalid_params("Invalid parameters")
}

/// SPDK 25.09 answers an unknown subsystem NQN with -32602 "Invalid parameters" (and logs
/// "Unable to find subsystem with NQN ...").
fn no_subsystem(nqn: &str) -> RpcError {
    tracing::error!(nqn, "Unable to find subsystem with NQN {nqn}");
    invalid()
}

fn check_tgt(tgt: &Target, name: &Option<String>) -> Result<(), RpcError> {
    match name {
        Some(n) if n != tgt.name() => Err(RpcError::internal(format!("Unable to find target {n}"))),
        _ => Ok(()),
    }
}

/// `nvmf_create_transport` parameters.
#[derive(Debug, Deserialize)]
struct CreateTransport {
    trtype: String,
    #[serde(default)]
    tgt_name: Option<String>,
    /// Deprecated form that counts the admin queue.
    #[serde(default)]
    max_qpairs_per_ctrlr: Option<u16>,
    /// Everything else: common options over the transport's own defaults
    /// ([`TransportOpts::from_json`]) and its specific options.
    #[serde(flatten)]
    opts: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TgtOnly {
    #[serde(default)]
    tgt_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetTransports {
    #[serde(default)]
    tgt_name: Option<String>,
    #[serde(default)]
    trtype: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSubsystem {
    nqn: String,
    #[serde(default)]
    tgt_name: Option<String>,
    #[serde(default)]
    serial_number: Option<String>,
    #[serde(default)]
    model_number: Option<String>,
    #[serde(default)]
    admin_label: Option<String>,
    #[serde(default)]
    max_namespaces: u32,
    #[serde(default)]
    allow_any_host: bool,
    #[serde(default)]
    ana_reporting: bool,
    #[serde(default = "min_cntlid")]
    min_cntlid: u16,
    #[serde(default = "max_cntlid")]
    max_cntlid: u16,
    #[serde(default)]
    dmrsl: u32,
    #[serde(default)]
    wzsl: u8,
    #[serde(default)]
    passthrough: bool,
    #[serde(default)]
    enable_nssr: bool,
}

fn min_cntlid() -> u16 {
    crate::subsystem::MIN_CNTLID
}
fn max_cntlid() -> u16 {
    crate::subsystem::MAX_CNTLID
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NqnParams {
    nqn: String,
    #[serde(default)]
    tgt_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NsParams {
    #[serde(default)]
    nsid: u32,
    bdev_name: String,
    #[serde(default)]
    ptpl_file: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    nguid: Option<String>,
    #[serde(default)]
    eui64: Option<String>,
    #[serde(default)]
    anagrpid: u32,
    #[serde(default)]
    no_auto_visible: bool,
    #[serde(default)]
    hide_metadata: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNs {
    nqn: String,
    namespace: NsParams,
    #[serde(default)]
    tgt_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveNs {
    nqn: String,
    nsid: u32,
    #[serde(default)]
    tgt_name: Option<String>,
}

/// `nvmf_ns_add_host` / `nvmf_ns_remove_host` parameters (SPDK `nvmf_rpc_ns_visible_decoder`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NsVisibleParams {
    nqn: String,
    nsid: u32,
    host: String,
    #[serde(default)]
    tgt_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerParams {
    nqn: String,
    listen_address: ListenAddr,
    #[serde(default)]
    tgt_name: Option<String>,
    #[serde(default)]
    secure_channel: bool,
    #[serde(default)]
    ana_state: Option<String>,
    #[serde(default)]
    sock_impl: Option<String>,
    #[serde(default)]
    numa_id: Option<i32>,
}

/// `nvmf_subsystem_listener_set_ana_state` parameters (SPDK
/// `nvmf_rpc_set_ana_state_decoder`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAnaStateParams {
    nqn: String,
    listen_address: ListenAddr,
    ana_state: String,
    #[serde(default)]
    tgt_name: Option<String>,
    #[serde(default)]
    anagrpid: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostParams {
    nqn: String,
    host: String,
    #[serde(default)]
    tgt_name: Option<String>,
    #[serde(default)]
    psk: Option<String>,
    #[serde(default)]
    dhchap_key: Option<String>,
    #[serde(default)]
    dhchap_ctrlr_key: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The keyring keys named by `dhchap_key` / `dhchap_ctrlr_key` (SPDK 25.09 answers an
/// unknown key name with "Invalid parameters"); a key whose file does not hold a valid
/// `DHHC-1` secret is refused with the reason.
fn host_keys(p: &HostParams) -> Result<crate::subsystem::HostKeys, RpcError> {
    let get = |name: &Option<String>| -> Result<Option<Arc<crate::keyring::Key>>, RpcError> {
        let Some(name) = name else {
            return Ok(None);
        };
        let Some(k) = crate::keyring::get_key(name) else {
            tracing::error!(name, "Unable to find DH-HMAC-CHAP key");
            return Err(invalid());
        };
        if let Err(e) = k.dhchap() {
            tracing::error!(name, error = %e, "Invalid DH-HMAC-CHAP key");
            return Err(RpcError::invalid_params(format!("Invalid parameters: {e}")));
        }
        Ok(Some(k))
    };
    Ok(crate::subsystem::HostKeys {
        dhchap_key: get(&p.dhchap_key)?,
        dhchap_ctrlr_key: get(&p.dhchap_ctrlr_key)?,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowAnyHost {
    nqn: String,
    allow_any_host: bool,
    #[serde(default)]
    tgt_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetConfig {
    #[serde(default)]
    admin_cmd_passthru: Option<AdminCmdPassthru>,
    #[serde(default)]
    poll_groups_mask: Option<String>,
    #[serde(default)]
    discovery_filter: Option<String>,
    #[serde(default)]
    dhchap_digests: Option<Vec<String>>,
    #[serde(default)]
    dhchap_dhgroups: Option<Vec<String>>,
    #[serde(default)]
    dup_host_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxSubsystems {
    max_subsystems: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Crdt {
    #[serde(default)]
    crdt1: u16,
    #[serde(default)]
    crdt2: u16,
    #[serde(default)]
    crdt3: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferralParams {
    #[serde(default)]
    tgt_name: Option<String>,
    address: ListenAddr,
    #[serde(default)]
    secure_channel: bool,
    #[serde(default)]
    subnqn: Option<String>,
}

/// Registers every nvmf RPC on `reg`, operating on `tgt`.
pub fn register_rpcs(reg: &RpcRegistry, tgt: &Target) {
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_create_transport",
        StateMask::RUNTIME,
        move |p: CreateTransport, r| create_transport(&t, p, r),
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_get_transports",
        StateMask::RUNTIME,
        move |p: GetTransports, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            let v = t.transports_json(p.trtype.as_deref());
            if p.trtype.is_some() && v.is_empty() {
                return r.err(RpcError::errno(-19));
            }
            r.ok(v)
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_create_subsystem",
        StateMask::RUNTIME,
        move |p: CreateSubsystem, r| create_subsystem(&t, p, r),
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_delete_subsystem",
        StateMask::RUNTIME,
        move |p: NqnParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            match t.delete_subsystem(&p.nqn) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(e) => {
                    tracing::error!(nqn = %p.nqn, error = %e, "nvmf_delete_subsystem failed");
                    r.err(invalid())
                }
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_get_subsystems",
        StateMask::RUNTIME,
        move |p: GetSubsystems, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            let all = subsystems_json(&t);
            match p.nqn {
                Some(n) => {
                    let one: Vec<Value> =
                        all.into_iter().filter(|s| s["nqn"] == n.as_str()).collect();
                    if one.is_empty() {
                        r.err(RpcError::errno(-19))
                    } else {
                        r.ok(one)
                    }
                }
                None => r.ok(all),
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_add_ns",
        StateMask::RUNTIME,
        move |p: AddNs, r| add_ns(&t, p, r),
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_remove_ns",
        StateMask::RUNTIME,
        move |p: RemoveNs, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            match t.remove_ns(&p.nqn, p.nsid) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(NvmfError::NotFound(m)) if m.starts_with("Unable to find subsystem") => {
                    r.err(no_subsystem(&p.nqn))
                }
                Err(e) => {
                    tracing::error!(nsid = p.nsid, error = %e, "Unable to remove namespace");
                    r.err(invalid())
                }
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_ns_add_host",
        StateMask::RUNTIME,
        move |p: NsVisibleParams, r| ns_visible(&t, p, true, r),
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_ns_remove_host",
        StateMask::RUNTIME,
        move |p: NsVisibleParams, r| ns_visible(&t, p, false, r),
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_add_listener",
        StateMask::RUNTIME,
        move |p: ListenerParams, r| add_listener(&t, p, r),
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_remove_listener",
        StateMask::RUNTIME,
        move |p: ListenerParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            match t.remove_listener(&p.nqn, &p.listen_address) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(NvmfError::NotFound(m)) if m.starts_with("Unable to find subsystem") => {
                    r.err(no_subsystem(&p.nqn))
                }
                Err(e) => {
                    tracing::error!(error = %e, "Unable to remove listener");
                    r.err(invalid())
                }
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_listener_set_ana_state",
        StateMask::RUNTIME,
        move |p: SetAnaStateParams, r| set_ana_state(&t, p, r),
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_get_listeners",
        StateMask::RUNTIME,
        move |p: NqnParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            let v = t.with_subsystem(&p.nqn, |s| {
                s.listeners
                    .iter()
                    .map(|l| {
                        let mut o = json!({"address": listen_json(&l.addr)});
                        if s.ana_reporting {
                            let states: Vec<Value> = (1..=s.max_nsid())
                                .map(
                                    |g| json!({"ana_group": g, "ana_state": l.ana_state(g).name()}),
                                )
                                .collect();
                            o["ana_states"] = Value::Array(states);
                        }
                        o
                    })
                    .collect::<Vec<_>>()
            });
            match v {
                Ok(v) => r.ok(v),
                Err(_) => r.err(no_subsystem(&p.nqn)),
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_add_host",
        StateMask::RUNTIME,
        move |p: HostParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            if p.psk.is_some() {
                tracing::error!("TLS PSK is not supported");
                return r.err(invalid());
            }
            if p.dhchap_ctrlr_key.is_some() && p.dhchap_key.is_none() {
                tracing::error!("DH-HMAC-CHAP controller key requires host key");
                return r.err(invalid());
            }
            let keys = match host_keys(&p) {
                Ok(k) => k,
                Err(e) => return r.err(e),
            };
            match t.add_host_with_keys(&p.nqn, &p.host, keys) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(NvmfError::NotFound(_)) => r.err(no_subsystem(&p.nqn)),
                Err(e) => {
                    tracing::error!(host = %p.host, error = %e, "Unable to add host");
                    r.err(RpcError::internal("Internal error"))
                }
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_set_keys",
        StateMask::RUNTIME,
        move |p: HostParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            if t.with_subsystem(&p.nqn, |_| ()).is_err() {
                return r.err(no_subsystem(&p.nqn));
            }
            let keys = match host_keys(&p) {
                Ok(k) => k,
                Err(e) => return r.err(e),
            };
            match t.set_host_keys(&p.nqn, &p.host, keys) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(e) => {
                    tracing::error!(host = %p.host, error = %e, "Unable to set keys");
                    r.err(RpcError::errno(22))
                }
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_remove_host",
        StateMask::RUNTIME,
        move |p: HostParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            let _ = p.timeout_ms;
            match t.remove_host(&p.nqn, &p.host) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(NvmfError::NotFound(m)) if m.starts_with("Unable to find subsystem") => {
                    r.err(no_subsystem(&p.nqn))
                }
                Err(e) => {
                    tracing::error!(host = %p.host, error = %e, "Unable to remove host");
                    r.err(RpcError::internal("Internal error"))
                }
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_allow_any_host",
        StateMask::RUNTIME,
        move |p: AllowAnyHost, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            match t.allow_any_host(&p.nqn, p.allow_any_host) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(_) => r.err(no_subsystem(&p.nqn)),
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_get_controllers",
        StateMask::RUNTIME,
        move |p: NqnParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            let v = t.with_subsystem(&p.nqn, |s| {
                let disc = s.subtype == SubType::Discovery;
                let table = match s.ctrlrs.lock() {
                    Ok(t) => t,
                    Err(e) => e.into_inner(),
                };
                table
                    .map
                    .values()
                    .map(|c| {
                        let n = c.io_qids.lock().map(|q| q.len()).unwrap_or(0);
                        json!({
                            "cntlid": c.cntlid,
                            "cntrltype": if disc { "discovery" } else { "io" },
                            "hostnqn": c.hostnqn,
                            "hostid": uuid::Uuid::from_bytes(c.hostid).to_string(),
                            "num_io_qpairs": n,
                        })
                    })
                    .collect::<Vec<_>>()
            });
            match v {
                Ok(v) => r.ok(v),
                Err(_) => r.err(no_subsystem(&p.nqn)),
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_subsystem_get_qpairs",
        StateMask::RUNTIME,
        move |p: NqnParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            if t.with_subsystem(&p.nqn, |_| ()).is_err() {
                return r.err(no_subsystem(&p.nqn));
            }
            let nqn = p.nqn.clone();
            gather(&t, move |pg| pg.qpairs_json(&nqn), move |v| r.ok(v));
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_get_stats",
        StateMask::RUNTIME,
        move |p: TgtOnly, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            gather(
                &t,
                |pg| vec![pg.stats_json()],
                move |v| r.ok(json!({"tick_rate": 1_000_000_000u64, "poll_groups": v})),
            );
        },
    );
    let t = tgt.clone();
    reg.register_typed("nvmf_set_config", StateMask::STARTUP, move |p: SetConfig, r| {
        let mut o = t.opts();
        if let Some(a) = p.admin_cmd_passthru {
            if a.identify_ctrlr || a.vendor_specific {
                tracing::error!("admin command passthru is not supported by this target");
                return r.err(invalid());
            }
            o.admin_cmd_passthru = a;
        }
        if let Some(f) = p.discovery_filter {
            if f != "match_any" {
                tracing::error!(filter = %f, "only the match_any discovery filter is supported");
                return r.err(invalid());
            }
            o.discovery_filter = f;
        }
        if let Some(d) = p.dhchap_digests {
            o.dhchap_digests = d;
        }
        if let Some(d) = p.dhchap_dhgroups {
            o.dhchap_dhgroups = d;
        }
        let _ = (p.poll_groups_mask, p.dup_host_policy);
        t.set_opts(o);
        r.ok(true)
    });
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_set_max_subsystems",
        StateMask::STARTUP,
        move |p: MaxSubsystems, r| {
            if p.max_subsystems == 0 || p.max_subsystems > MAX_MAX_SUBSYSTEMS {
                tracing::error!(
                    max_subsystems = p.max_subsystems,
                    limit = MAX_MAX_SUBSYSTEMS,
                    "nvmf_set_max_subsystems: max_subsystems must be in 1..={MAX_MAX_SUBSYSTEMS}"
                );
                return r.err(invalid());
            }
            let mut o = t.opts();
            o.max_subsystems = p.max_subsystems;
            t.set_opts(o);
            r.ok(true)
        },
    );
    let t = tgt.clone();
    reg.register_typed("nvmf_set_crdt", StateMask::STARTUP, move |p: Crdt, r| {
        let mut o = t.opts();
        o.crdt = [p.crdt1, p.crdt2, p.crdt3];
        t.set_opts(o);
        r.ok(true)
    });
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_discovery_add_referral",
        StateMask::RUNTIME,
        move |p: ReferralParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            if p.address.trsvcid.is_empty() {
                return r.err(RpcError::invalid_params("Service ID is required."));
            }
            let subnqn = p
                .subnqn
                .unwrap_or_else(|| nvme::spec::nqn::DISCOVERY_NQN.to_string());
            if nvme::spec::nqn::validate_nqn(&subnqn).is_err() {
                return r.err(RpcError::invalid_params("Invalid subsystem NQN"));
            }
            match t.add_referral(Referral {
                addr: p.address,
                subnqn,
                secure_channel: p.secure_channel,
            }) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(e) => {
                    tracing::error!(error = %e, "Failed to add referral");
                    r.err(RpcError::internal("Internal error"))
                }
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_discovery_remove_referral",
        StateMask::RUNTIME,
        move |p: ReferralParams, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            match t.remove_referral(&p.address, p.subnqn.as_deref()) {
                Ok(()) => t.update(move || r.ok(true)),
                Err(_) => r.err(RpcError::internal("Unable to remove a referral.")),
            }
        },
    );
    let t = tgt.clone();
    reg.register_typed(
        "nvmf_discovery_get_referrals",
        StateMask::RUNTIME,
        move |p: TgtOnly, r| {
            if let Err(e) = check_tgt(&t, &p.tgt_name) {
                return r.err(e);
            }
            let v: Vec<Value> =
                t.0.referrals
                    .borrow()
                    .iter()
                    .map(|rf| {
                        json!({
                            "address": listen_json(&rf.addr),
                            "secure_channel": rf.secure_channel,
                            "subnqn": rf.subnqn,
                        })
                    })
                    .collect();
            r.ok(v)
        },
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetSubsystems {
    #[serde(default)]
    nqn: Option<String>,
    #[serde(default)]
    tgt_name: Option<String>,
}

/// Runs `f` on every poll group, concatenates the results, then `done` on the app thread.
fn gather(
    tgt: &Target,
    f: impl Fn(&poll_group::PgInner) -> Vec<Value> + Send + Sync + 'static,
    done: impl FnOnce(Vec<Value>) + 'static,
) {
    let out = Arc::new(Mutex::new(Vec::<(usize, Vec<Value>)>::new()));
    let f = Arc::new(f);
    let tgt_id = tgt.0.id;
    let msgs = tgt
        .poll_group_threads()
        .into_iter()
        .enumerate()
        .map(|(i, th)| {
            let (f, out) = (f.clone(), out.clone());
            let m: Box<dyn FnOnce() + Send> = Box::new(move || {
                let v = poll_group::with_pg(tgt_id, |pg| f(pg)).unwrap_or_default();
                if let Ok(mut o) = out.lock() {
                    o.push((i, v));
                }
            });
            (th, m)
        })
        .collect();
    tgt.fan_out(msgs, move || {
        let mut parts = match out.lock() {
            Ok(mut o) => std::mem::take(&mut *o),
            Err(_) => Vec::new(),
        };
        parts.sort_by_key(|(i, _)| *i);
        done(parts.into_iter().flat_map(|(_, v)| v).collect())
    });
}

fn create_transport(t: &Target, p: CreateTransport, r: Request) {
    if let Err(e) = check_tgt(t, &p.tgt_name) {
        return r.err(e);
    }
    let mut opts = match TransportOpts::from_json(&p.trtype, p.opts) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "nvmf_create_transport: bad option");
            return r.err(RpcError::from(e));
        }
    };
    if let Some(q) = p.max_qpairs_per_ctrlr {
        tracing::warn!("max_qpairs_per_ctrlr is deprecated, use max_io_qpairs_per_ctrlr");
        opts.max_io_qpairs_per_ctrlr = q.saturating_sub(1);
    }
    if !t.has_transport_factory(&p.trtype) {
        return r.err(RpcError::invalid_params(format!(
            "Invalid transport type '{}'",
            p.trtype
        )));
    }
    if !t.transport_exists(&p.trtype.to_ascii_uppercase())
        && let Err(e) = opts.validate()
    {
        // SPDK `nvmf_transport_create` logs the reason and the RPC answers this.
        tracing::error!(error = %e, trtype = %p.trtype, "nvmf_create_transport refused");
        return r.err(RpcError::internal(format!(
            "Transport type '{}' create failed",
            p.trtype
        )));
    }
    let trtype = p.trtype.clone();
    t.create_transport(&p.trtype, opts, move |res| match res {
        Ok(()) => r.ok(true),
        Err(NvmfError::Exists(_)) => r.err(RpcError::internal(format!(
            "Transport type '{trtype}' already exists"
        ))),
        Err(NvmfError::InvalidParam(m)) => {
            tracing::error!(%m, "nvmf_create_transport refused");
            r.err(invalid())
        }
        Err(e) => {
            tracing::error!(error = %e, "transport creation failed");
            r.err(RpcError::internal(format!(
                "Transport type '{trtype}' create failed"
            )))
        }
    });
}

fn create_subsystem(t: &Target, p: CreateSubsystem, r: Request) {
    if let Err(e) = check_tgt(t, &p.tgt_name) {
        return r.err(e);
    }
    let mut s = Subsystem::new(&p.nqn, SubType::Nvme);
    if let Some(sn) = &p.serial_number
        && s.set_sn(sn).is_err()
    {
        tracing::error!(sn, "Invalid SN");
        return r.err(invalid());
    }
    if let Some(mn) = &p.model_number
        && s.set_mn(mn).is_err()
    {
        tracing::error!(mn, "Invalid MN");
        return r.err(invalid());
    }
    if p.passthrough || p.enable_nssr || p.admin_label.is_some() || p.dmrsl != 0 || p.wzsl != 0 {
        tracing::warn!(nqn = %p.nqn, "passthrough/enable_nssr/admin_label/dmrsl/wzsl ignored");
    }
    if p.max_namespaces > crate::subsystem::MAX_NAMESPACES_LIMIT {
        tracing::error!(
            nqn = %p.nqn,
            max_namespaces = p.max_namespaces,
            limit = crate::subsystem::MAX_NAMESPACES_LIMIT,
            "max_namespaces above the limit"
        );
        return r.err(RpcError::invalid_params(format!(
            "max_namespaces {} above the limit {}",
            p.max_namespaces,
            crate::subsystem::MAX_NAMESPACES_LIMIT
        )));
    }
    s.max_namespaces = p.max_namespaces;
    s.allow_any_host = p.allow_any_host;
    s.ana_reporting = p.ana_reporting;
    s.min_cntlid = p.min_cntlid;
    s.max_cntlid = p.max_cntlid;
    if p.min_cntlid == 0 || p.min_cntlid > p.max_cntlid || p.max_cntlid > max_cntlid() {
        return r.err(RpcError::invalid_params(format!(
            "Invalid cntlid range [{}-{}]",
            p.min_cntlid, p.max_cntlid
        )));
    }
    match t.create_subsystem(s) {
        Ok(()) => t.update(move || r.ok(true)),
        Err(e) => {
            tracing::error!(nqn = %p.nqn, error = %e, "Unable to create subsystem");
            r.err(RpcError::internal(format!(
                "Unable to create subsystem {}",
                p.nqn
            )))
        }
    }
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    if h.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn add_ns(t: &Target, p: AddNs, r: Request) {
    if let Err(e) = check_tgt(t, &p.tgt_name) {
        return r.err(e);
    }
    if t.with_subsystem(&p.nqn, |_| ()).is_err() {
        return r.err(no_subsystem(&p.nqn));
    }
    let ns = p.namespace;
    let uuid = match ns.uuid.as_deref().map(uuid::Uuid::parse_str) {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(_)) => return r.err(RpcError::invalid_params("Invalid uuid")),
    };
    let nguid = match ns.nguid.as_deref().map(parse_hex::<16>) {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return r.err(RpcError::invalid_params("Invalid nguid")),
    };
    let eui64 = match ns.eui64.as_deref().map(parse_hex::<8>) {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return r.err(RpcError::invalid_params("Invalid eui64")),
    };
    if ns.hide_metadata {
        tracing::warn!(bdev = %ns.bdev_name, "hide_metadata ignored: bdevs without metadata only");
    }
    let opts = crate::target::NsOpts {
        bdev_name: ns.bdev_name.clone(),
        nsid: ns.nsid,
        uuid,
        nguid,
        eui64,
        anagrpid: ns.anagrpid,
        no_auto_visible: ns.no_auto_visible,
        ptpl_file: ns.ptpl_file.map(std::path::PathBuf::from),
    };
    match t.add_ns_ext(&p.nqn, opts) {
        Ok(nsid) => t.update(move || r.ok(nsid)),
        Err(e) => {
            tracing::error!(bdev = %ns.bdev_name, error = %e, "Unable to add namespace");
            r.err(invalid())
        }
    }
}

/// `nvmf_ns_add_host` (`visible`) and `nvmf_ns_remove_host`, with SPDK 25.09's answers
/// (`nvmf_rpc_ns_visible`): an unknown target is -32603 "Unable to find a target.", every
/// other failure (unknown subsystem, invalid host NQN, NSID out of range or unused, a
/// namespace without `no_auto_visible`) -32602 "Invalid parameters". SPDK pauses the
/// subsystem around the change; here the poll groups switch to the new snapshot at once,
/// and the answer comes when all of them have it.
fn ns_visible(t: &Target, p: NsVisibleParams, visible: bool, r: Request) {
    if let Some(n) = &p.tgt_name
        && n != t.name()
    {
        tracing::error!(tgt_name = %n, "Unable to find a target object.");
        return r.err(RpcError::internal("Unable to find a target."));
    }
    let res = if visible {
        t.ns_add_host(&p.nqn, p.nsid, &p.host)
    } else {
        t.ns_remove_host(&p.nqn, p.nsid, &p.host)
    };
    match res {
        Ok(()) => t.update(move || r.ok(true)),
        Err(NvmfError::NotFound(m)) if m.starts_with("Unable to find subsystem") => {
            r.err(no_subsystem(&p.nqn))
        }
        Err(e) => {
            tracing::error!(
                host = %p.host,
                nsid = p.nsid,
                error = %e,
                "Unable to add/remove host to namespace"
            );
            r.err(invalid())
        }
    }
}

/// `nvmf_subsystem_listener_set_ana_state` with SPDK 25.09's answers: an unknown target
/// -32603 "Unable to find a target.", an unknown subsystem -32602 "Unable to find
/// subsystem with NQN ...", a bad address or state name -32602 "Invalid parameters"; the
/// checks of `spdk_nvmf_subsystem_set_ana_state` (ANA reporting off, ANAGRPID above
/// `max_nsid`, no such listener) -32603 "error setting ANA state: -22". Answers true once
/// every poll group has the new state (controllers on that listener got their ANA change
/// notice).
fn set_ana_state(t: &Target, p: SetAnaStateParams, r: Request) {
    if let Some(n) = &p.tgt_name
        && n != t.name()
    {
        tracing::error!(tgt_name = %n, "Unable to find a target object.");
        return r.err(RpcError::internal("Unable to find a target."));
    }
    if t.with_subsystem(&p.nqn, |_| ()).is_err() {
        tracing::error!(nqn = %p.nqn, "Unable to find subsystem");
        return r.err(RpcError::invalid_params(format!(
            "Unable to find subsystem with NQN {}",
            p.nqn
        )));
    }
    if p.listen_address.trsvcid.len() > 32 || p.listen_address.traddr.len() > 256 {
        return r.err(invalid());
    }
    let Some(state) = AnaState::parse(&p.ana_state) else {
        tracing::error!(ana_state = %p.ana_state, "invalid ANA state");
        return r.err(invalid());
    };
    match t.set_ana_state(&p.nqn, &p.listen_address, state, p.anagrpid) {
        Ok(_) => t.update(move || r.ok(true)),
        Err(e) => {
            tracing::error!(error = %e, "Unable to set ANA state.");
            r.err(RpcError::internal(format!(
                "error setting ANA state: {}",
                e.errno()
            )))
        }
    }
}

fn add_listener(t: &Target, p: ListenerParams, r: Request) {
    if let Err(e) = check_tgt(t, &p.tgt_name) {
        return r.err(e);
    }
    if p.listen_address.trsvcid.len() > 32 || p.listen_address.traddr.len() > 256 {
        return r.err(invalid());
    }
    let allow_any = match t.with_subsystem(&p.nqn, |s| s.allow_any_host) {
        Ok(a) => a,
        Err(_) => return r.err(no_subsystem(&p.nqn)),
    };
    if p.secure_channel && allow_any {
        return r.err(RpcError::internal(
            "Cannot establish secure channel, when 'allow_any_host' is set",
        ));
    }
    let ana = match p.ana_state.as_deref().map(AnaState::parse) {
        None => AnaState::Optimized,
        Some(Some(a)) => a,
        Some(None) => {
            tracing::error!(ana_state = ?p.ana_state, "invalid ANA state");
            return r.err(invalid());
        }
    };
    let _ = (p.sock_impl, p.numa_id);
    match t.add_listener_ext(&p.nqn, p.listen_address, p.secure_channel, ana) {
        Ok(()) => t.update(move || r.ok(true)),
        Err(e) => {
            tracing::error!(error = %e, "Unable to add listener");
            r.err(invalid())
        }
    }
}

fn listen_json(a: &ListenAddr) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

fn nguid_hex(n: &[u8; 16]) -> String {
    n.iter().map(|b| format!("{b:02X}")).collect()
}

/// `nvmf_get_subsystems` result (SPDK `dump_nvmf_subsystem`).
pub fn subsystems_json(t: &Target) -> Vec<Value> {
    t.0.subsystems
        .borrow()
        .iter()
        .map(|s| {
            let mut o = serde_json::Map::new();
            o.insert("nqn".into(), json!(s.nqn));
            o.insert("subtype".into(), json!(s.subtype));
            o.insert(
                "listen_addresses".into(),
                Value::Array(s.listeners.iter().map(|l| listen_json(&l.addr)).collect()),
            );
            o.insert("allow_any_host".into(), json!(s.allow_any_host));
            o.insert(
                "hosts".into(),
                Value::Array(
                    s.hosts
                        .iter()
                        .map(|h| {
                            let mut o = json!({"nqn": h});
                            if let Some(k) = s.host_keys.get(h) {
                                if let Some(key) = &k.dhchap_key {
                                    o["dhchap_key"] = json!(key.name());
                                }
                                if let Some(key) = &k.dhchap_ctrlr_key {
                                    o["dhchap_ctrlr_key"] = json!(key.name());
                                }
                            }
                            o
                        })
                        .collect(),
                ),
            );
            if s.subtype == SubType::Nvme {
                o.insert("serial_number".into(), json!(s.serial_number));
                o.insert("model_number".into(), json!(s.model_number));
                o.insert("max_namespaces".into(), json!(s.max_namespaces));
                o.insert("min_cntlid".into(), json!(s.min_cntlid));
                o.insert("max_cntlid".into(), json!(s.max_cntlid));
                let nss: Vec<Value> = s
                    .namespaces
                    .values()
                    .map(|n| {
                        let mut m = serde_json::Map::new();
                        m.insert("nsid".into(), json!(n.nsid));
                        m.insert("bdev_name".into(), json!(n.bdev_name));
                        m.insert("name".into(), json!(n.bdev_name));
                        m.insert("nguid".into(), json!(nguid_hex(&n.nguid)));
                        if n.eui64 != [0; 8] {
                            m.insert(
                                "eui64".into(),
                                json!(
                                    n.eui64
                                        .iter()
                                        .map(|b| format!("{b:02X}"))
                                        .collect::<String>()
                                ),
                            );
                        }
                        m.insert("uuid".into(), json!(n.uuid.to_string()));
                        if s.ana_reporting {
                            m.insert("anagrpid".into(), json!(n.anagrpid));
                        }
                        Value::Object(m)
                    })
                    .collect();
                o.insert("namespaces".into(), Value::Array(nss));
            }
            Value::Object(o)
        })
        .collect()
}

fn entry(method: &str, params: Value) -> Value {
    json!({"method": method, "params": params})
}

/// The nvmf subsystem's part of `save_config`, in SPDK's order: `nvmf_set_config`,
/// `nvmf_set_max_subsystems`, `nvmf_set_crdt`, transports, referrals, then per subsystem
/// (discovery listeners first) `nvmf_create_subsystem`, hosts, namespaces, listeners.
pub fn config_json(t: &Target) -> Value {
    let o = t.opts();
    let mut out = vec![
        entry(
            "nvmf_set_config",
            json!({
                "discovery_filter": o.discovery_filter,
                "admin_cmd_passthru": o.admin_cmd_passthru,
                "dhchap_digests": o.dhchap_digests,
                "dhchap_dhgroups": o.dhchap_dhgroups,
            }),
        ),
        entry(
            "nvmf_set_max_subsystems",
            json!({"max_subsystems": o.max_subsystems}),
        ),
        entry(
            "nvmf_set_crdt",
            json!({"crdt1": o.crdt[0], "crdt2": o.crdt[1], "crdt3": o.crdt[2]}),
        ),
    ];
    for tr in t.transports_json(None) {
        out.push(entry("nvmf_create_transport", tr));
    }
    for rf in t.0.referrals.borrow().iter() {
        out.push(entry(
            "nvmf_discovery_add_referral",
            json!({"address": listen_json(&rf.addr), "secure_channel": rf.secure_channel, "subnqn": rf.subnqn}),
        ));
    }
    for s in t.0.subsystems.borrow().iter() {
        if s.subtype == SubType::Discovery {
            for l in &s.listeners {
                out.push(entry(
                    "nvmf_subsystem_add_listener",
                    json!({"nqn": s.nqn, "listen_address": listen_json(&l.addr), "secure_channel": l.secure_channel}),
                ));
            }
            continue;
        }
        out.push(entry(
            "nvmf_create_subsystem",
            json!({
                "nqn": s.nqn,
                "allow_any_host": s.allow_any_host,
                "serial_number": s.serial_number,
                "model_number": s.model_number,
                "max_namespaces": s.max_namespaces,
                "min_cntlid": s.min_cntlid,
                "max_cntlid": s.max_cntlid,
                "ana_reporting": s.ana_reporting,
            }),
        ));
        for h in &s.hosts {
            let mut params = json!({"nqn": s.nqn, "host": h});
            if let Some(k) = s.host_keys.get(h) {
                if let Some(key) = &k.dhchap_key {
                    params["dhchap_key"] = json!(key.name());
                }
                if let Some(key) = &k.dhchap_ctrlr_key {
                    params["dhchap_ctrlr_key"] = json!(key.name());
                }
            }
            out.push(entry("nvmf_subsystem_add_host", params));
        }
        for n in s.namespaces.values() {
            let mut ns = serde_json::Map::new();
            ns.insert("nsid".into(), json!(n.nsid));
            ns.insert("bdev_name".into(), json!(n.bdev_name));
            if let Some(f) = &n.ptpl_file {
                ns.insert("ptpl_file".into(), json!(f.to_string_lossy()));
            }
            ns.insert("nguid".into(), json!(nguid_hex(&n.nguid)));
            ns.insert("uuid".into(), json!(n.uuid.to_string()));
            if n.eui64 != [0; 8] {
                ns.insert(
                    "eui64".into(),
                    json!(
                        n.eui64
                            .iter()
                            .map(|b| format!("{b:02X}"))
                            .collect::<String>()
                    ),
                );
            }
            if s.ana_reporting {
                ns.insert("anagrpid".into(), json!(n.anagrpid));
            }
            ns.insert("no_auto_visible".into(), json!(n.no_auto_visible));
            out.push(entry(
                "nvmf_subsystem_add_ns",
                json!({"nqn": s.nqn, "namespace": ns}),
            ));
            // SPDK writes the namespace's hosts right after it (nvmf.c
            // `nvmf_write_nvme_subsystem_config`), so a replay rebuilds the same masking.
            for h in &n.hosts {
                out.push(entry(
                    "nvmf_ns_add_host",
                    json!({"nqn": s.nqn, "nsid": n.nsid, "host": h}),
                ));
            }
        }
        for l in &s.listeners {
            out.push(entry(
                "nvmf_subsystem_add_listener",
                json!({"nqn": s.nqn, "listen_address": listen_json(&l.addr), "secure_channel": l.secure_channel}),
            ));
        }
        // ANA states other than Optimized, one call per group, after the listeners exist.
        if s.ana_reporting {
            for l in &s.listeners {
                // Every group of the subsystem, also those past the listener's table
                // (they have the listener's default state).
                for g in 1..=s.max_nsid() {
                    let st = l.ana_state(g);
                    if st != AnaState::Optimized {
                        out.push(entry(
                            "nvmf_subsystem_listener_set_ana_state",
                            json!({"nqn": s.nqn, "listen_address": listen_json(&l.addr),
                                "ana_state": st.name(), "anagrpid": g}),
                        ));
                    }
                }
            }
        }
    }
    Value::Array(out)
}

/// The app's handle on the nvmf subsystem: target creation, init on the reactor Threads,
/// fini, config writer (SPDK `module/event/subsystems/nvmf`).
#[derive(Clone, Debug)]
pub struct NvmfSubsystem {
    tgt: Target,
}

impl NvmfSubsystem {
    /// Creates the default target "nvmf_tgt" on the current (app) Thread and registers the
    /// RPCs. Register transports with [`NvmfSubsystem::target`] then
    /// [`Target::register_transport_factory`].
    pub fn new(reg: &RpcRegistry) -> Result<NvmfSubsystem, NvmfError> {
        let tgt = Target::new("nvmf_tgt")?;
        register_rpcs(reg, &tgt);
        Ok(NvmfSubsystem { tgt })
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.tgt
    }

    /// Creates one poll group per Thread (SPDK CREATE_POLL_GROUPS) and starts the acceptor;
    /// `done` runs on the app thread when every poll group exists.
    pub fn init(
        &self,
        threads: Vec<env::ThreadHandle>,
        done: impl FnOnce(Result<(), NvmfError>) + 'static,
    ) {
        let done = std::rc::Rc::new(std::cell::Cell::new(Some(done)));
        let d2 = done.clone();
        if let Err(e) = self.tgt.start(threads, move || {
            if let Some(d) = d2.take() {
                d(Ok(()))
            }
        }) && let Some(d) = done.take()
        {
            d(Err(e));
        }
    }

    /// Stops listening, disconnects hosts, destroys subsystems, poll groups and transports;
    /// `done` runs on the app thread at the end.
    pub fn fini(&self, done: impl FnOnce() + 'static) {
        self.tgt.fini(done);
    }

    /// The `config` array of the nvmf entry of `save_config`.
    pub fn config_json(&self) -> Value {
        config_json(&self.tgt)
    }
}
