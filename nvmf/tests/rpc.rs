//! RPC methods: SPDK result shapes (key for key against SPDK 25.09 output), SPDK error
//! wording, and the save_config round trip.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use rpc::{RpcError, RpcRegistry, RpcState};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

fn registry(env: &Env) -> Rc<RpcRegistry> {
    let reg = RpcRegistry::new();
    nvmf::register_rpcs(&reg, &env.tgt);
    reg.set_state(RpcState::Runtime);
    reg
}

fn call(env: &Env, reg: &RpcRegistry, method: &str, params: Value) -> Result<Value, RpcError> {
    env.threads.set_current(0);
    let out = Rc::new(RefCell::new(None));
    let o = out.clone();
    reg.call_local(method, Some(params), move |r| *o.borrow_mut() = Some(r));
    env.poll();
    env.threads.set_current(0);
    let r = out.borrow_mut().take();
    r.expect("RPC not answered")
}

fn fixture(name: &str) -> Value {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Asserts that `ours` has exactly the keys of `theirs`, recursively (arrays: element 0).
fn same_shape(path: &str, ours: &Value, theirs: &Value) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: BTreeSet<_> = a.keys().collect();
            let kb: BTreeSet<_> = b.keys().collect();
            assert_eq!(ka, kb, "keys differ at {path}");
            for k in kb {
                same_shape(&format!("{path}.{k}"), &a[k], &b[k]);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                same_shape(&format!("{path}[0]"), x, y);
            }
        }
        (a, b) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "type differs at {path}: {a} vs {b}"
        ),
    }
}

#[test]
fn get_transports_matches_spdk_shape_and_defaults() {
    let env = setup();
    let reg = registry(&env);
    let v = call(&env, &reg, "nvmf_get_transports", json!({})).unwrap();
    let f = fixture("nvmf_get_transports.json");
    same_shape("$", &v, &f);
    assert_eq!(v, f, "defaults equal SPDK's");
}

#[test]
fn get_subsystems_matches_spdk_shape() {
    let env = setup();
    let reg = registry(&env);
    call(
        &env,
        &reg,
        "nvmf_subsystem_add_listener",
        json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery",
               "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420"}}),
    )
    .unwrap();
    let v = call(&env, &reg, "nvmf_get_subsystems", json!({})).unwrap();
    let f = fixture("nvmf_get_subsystems.json");
    same_shape("$", &v[0], &f[0]);
    same_shape("$", &v[1], &f[1]);
    assert_eq!(v[1]["nqn"], SUBNQN);
    assert_eq!(v[1]["namespaces"][0]["bdev_name"], env.bdev.as_str());
    assert_eq!(v[0]["subtype"], "Discovery");
}

#[test]
fn rpc_errors_are_worded_as_spdk() {
    let env = setup();
    let reg = registry(&env);
    let e = call(&env, &reg, "nvmf_create_subsystem", json!({"nqn": SUBNQN})).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            -32603,
            "Unable to create subsystem nqn.2016-06.io.spdk:cnode1"
        )
    );
    let e = call(
        &env,
        &reg,
        "nvmf_create_subsystem",
        json!({"nqn": "bad-nqn"}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32603, "Unable to create subsystem bad-nqn")
    );
    let e = call(
        &env,
        &reg,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode9", "serial_number": "012345678901234567890"}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    let e = call(
        &env,
        &reg,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode9", "min_cntlid": 10, "max_cntlid": 5}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32602, "Invalid cntlid range [10-5]")
    );
    // A huge max_namespaces would size per-listener and per-controller tables: refused, and
    // nothing is created.
    let e = call(
        &env,
        &reg,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode9", "max_namespaces": u32::MAX}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32602, "max_namespaces 4294967295 above the limit 65536")
    );
    let e = call(
        &env,
        &reg,
        "nvmf_subsystem_add_listener",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode9",
               "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "4420"}}),
    )
    .unwrap_err();
    assert_eq!(e.code, -32602, "{e:?}");
    call(
        &env,
        &reg,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode9", "max_namespaces": 65536}),
    )
    .unwrap();
    call(
        &env,
        &reg,
        "nvmf_delete_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode9"}),
    )
    .unwrap();
    let e = call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        json!({"nqn": "nqn.2016-06.io.spdk:nope", "namespace": {"bdev_name": env.bdev}}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    // The bdev is already claimed by namespace 1: a second namespace on it is refused.
    let e = call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        json!({"nqn": SUBNQN, "namespace": {"bdev_name": env.bdev}}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    let e = call(
        &env,
        &reg,
        "nvmf_create_transport",
        json!({"trtype": "FOO"}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32602, "Invalid transport type 'FOO'")
    );
    let e = call(
        &env,
        &reg,
        "nvmf_create_transport",
        json!({"trtype": "TCP"}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32603, "Transport type 'TCP' already exists")
    );
    let e = call(
        &env,
        &reg,
        "nvmf_create_subsystem",
        json!({"nqn": SUBNQN, "bogus": 1}),
    )
    .unwrap_err();
    assert_eq!(e.code, -32602);
    let e = call(&env, &reg, "nvmf_set_crdt", json!({"crdt1": 1})).unwrap_err();
    assert_eq!(e.code, -1, "STARTUP-only method refused at RUNTIME");
}

#[test]
fn add_ns_returns_nsid_and_get_controllers_lists_connected_host() {
    let env = setup();
    let reg = registry(&env);
    let b = unique("Malloc");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&b, 64, 512)).unwrap();
    let v = call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        json!({"nqn": SUBNQN, "namespace": {"bdev_name": b, "nsid": 5}}),
    )
    .unwrap();
    assert_eq!(v, json!(5));
    let (_h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let v = call(
        &env,
        &reg,
        "nvmf_subsystem_get_controllers",
        json!({"nqn": SUBNQN}),
    )
    .unwrap();
    assert_eq!(
        v,
        json!([{"cntlid": cntlid, "cntrltype": "io", "hostnqn": HOSTNQN,
                "hostid": "07070707-0707-0707-0707-070707070707", "num_io_qpairs": 0}])
    );
    let v = call(
        &env,
        &reg,
        "nvmf_subsystem_get_qpairs",
        json!({"nqn": SUBNQN}),
    )
    .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["qid"], 0);
    assert_eq!(v[0]["state"], "enabled");
    let v = call(&env, &reg, "nvmf_get_stats", json!({})).unwrap();
    assert_eq!(v["poll_groups"].as_array().unwrap().len(), 2);
    let admin: u64 = v["poll_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["current_admin_qpairs"].as_u64().unwrap())
        .sum();
    assert_eq!(admin, 1);
    let v = call(
        &env,
        &reg,
        "nvmf_subsystem_remove_ns",
        json!({"nqn": SUBNQN, "nsid": 5}),
    )
    .unwrap();
    assert_eq!(v, json!(true));
    let e = call(
        &env,
        &reg,
        "nvmf_subsystem_remove_ns",
        json!({"nqn": SUBNQN, "nsid": 5}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
}

#[test]
fn referrals_add_get_remove() {
    let env = setup();
    let reg = registry(&env);
    let addr = json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.2", "trsvcid": "4420"});
    assert_eq!(
        call(
            &env,
            &reg,
            "nvmf_discovery_add_referral",
            json!({"address": addr})
        )
        .unwrap(),
        json!(true)
    );
    let v = call(&env, &reg, "nvmf_discovery_get_referrals", json!({})).unwrap();
    assert_eq!(
        v,
        json!([{"address": addr, "secure_channel": false, "subnqn": "nqn.2014-08.org.nvmexpress.discovery"}])
    );
    assert_eq!(
        call(
            &env,
            &reg,
            "nvmf_discovery_remove_referral",
            json!({"address": addr})
        )
        .unwrap(),
        json!(true)
    );
    let e = call(
        &env,
        &reg,
        "nvmf_discovery_remove_referral",
        json!({"address": addr}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32603, "Unable to remove a referral.")
    );
}

#[test]
fn save_config_matches_spdk_shape_and_replays() {
    let env = setup();
    let reg = registry(&env);
    call(
        &env,
        &reg,
        "nvmf_subsystem_add_listener",
        json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery",
               "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420"}}),
    )
    .unwrap();
    let cfg = nvmf::config_json(&env.tgt);
    let f = fixture("save_config_nvmf.json");
    let ours: Vec<&str> = cfg
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["method"].as_str().unwrap())
        .collect();
    let theirs: Vec<&str> = f["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["method"].as_str().unwrap())
        .collect();
    // SPDK writes namespaces before listeners per subsystem; same method sequence.
    assert_eq!(ours, theirs);
    for (a, b) in cfg
        .as_array()
        .unwrap()
        .iter()
        .zip(f["config"].as_array().unwrap())
    {
        same_shape(a["method"].as_str().unwrap(), a, b);
    }
    // Release the bdev (delete the subsystem), then replay into a fresh target.
    call(&env, &reg, "nvmf_delete_subsystem", json!({"nqn": SUBNQN})).unwrap();
    env.threads.set_current(0);
    let net2 = nvmf::testing::TestNetwork::new();
    let tgt2 = nvmf::Target::new("nvmf_tgt").unwrap();
    tgt2.register_transport_factory("TCP", net2.factory("TCP"));
    let reg2 = RpcRegistry::new();
    nvmf::register_rpcs(&reg2, &tgt2);
    tgt2.start(vec![env.threads.thread(1).handle()], || {})
        .unwrap();
    env.poll();
    for pass in [RpcState::Startup, RpcState::Runtime] {
        reg2.set_state(pass);
        for e in cfg.as_array().unwrap() {
            let m = e["method"].as_str().unwrap();
            let startup = matches!(
                m,
                "nvmf_set_config" | "nvmf_set_max_subsystems" | "nvmf_set_crdt"
            );
            if startup != (pass == RpcState::Startup) {
                continue;
            }
            call(&env, &reg2, m, e["params"].clone()).unwrap_or_else(|e| panic!("{m}: {e:?}"));
        }
    }
    let cfg2 = nvmf::config_json(&tgt2);
    assert_eq!(cfg2, cfg);
}

#[test]
fn subsystem_defaults_and_max_subsystems_limit() {
    let env = setup();
    let reg = registry(&env);
    let nqn = "nqn.2016-06.io.spdk:cnode2";
    assert_eq!(
        call(&env, &reg, "nvmf_create_subsystem", json!({"nqn": nqn})).unwrap(),
        json!(true)
    );
    let v = call(&env, &reg, "nvmf_get_subsystems", json!({"nqn": nqn})).unwrap();
    assert_eq!(v[0]["max_namespaces"], 32);
    assert_eq!(v[0]["serial_number"], "00000000000000000000");
    assert_eq!(v[0]["allow_any_host"], false);
    assert_eq!(v[0]["min_cntlid"], 1);
    assert_eq!(v[0]["max_cntlid"], 65519);
    let mut o = env.tgt.opts();
    o.max_subsystems = 3;
    env.tgt.set_opts(o);
    let e = call(
        &env,
        &reg,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode3"}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            -32603,
            "Unable to create subsystem nqn.2016-06.io.spdk:cnode3"
        )
    );
    assert_eq!(
        call(
            &env,
            &reg,
            "nvmf_subsystem_add_host",
            json!({"nqn": nqn, "host": HOSTNQN})
        )
        .unwrap(),
        json!(true)
    );
    let v = call(&env, &reg, "nvmf_get_subsystems", json!({"nqn": nqn})).unwrap();
    assert_eq!(v[0]["hosts"], json!([{"nqn": HOSTNQN}]));
    let e = call(
        &env,
        &reg,
        "nvmf_subsystem_add_host",
        json!({"nqn": nqn, "host": "not-an-nqn"}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32603, "Internal error"));
    let v = call(
        &env,
        &reg,
        "nvmf_subsystem_get_listeners",
        json!({"nqn": SUBNQN}),
    )
    .unwrap();
    assert_eq!(
        v,
        json!([{"address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420"}}])
    );
    let e = call(
        &env,
        &reg,
        "nvmf_get_subsystems",
        json!({"nqn": "nqn.2016-06.io.spdk:zzz"}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-19, "No such device"));
}

#[test]
fn set_max_subsystems_above_the_cap_is_refused_and_the_setting_kept() {
    let env = setup();
    let reg = RpcRegistry::new();
    nvmf::register_rpcs(&reg, &env.tgt);
    reg.set_state(RpcState::Startup);
    for bad in [0, nvmf::MAX_MAX_SUBSYSTEMS + 1, u32::MAX] {
        let e = call(
            &env,
            &reg,
            "nvmf_set_max_subsystems",
            json!({"max_subsystems": bad}),
        )
        .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
        assert_eq!(env.tgt.opts().max_subsystems, 1024, "unchanged after {bad}");
    }
    let r = call(
        &env,
        &reg,
        "nvmf_set_max_subsystems",
        json!({"max_subsystems": 16_384}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    assert_eq!(env.tgt.opts().max_subsystems, 16_384);
}
