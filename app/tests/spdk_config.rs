//! A config saved by SPDK 25.09's own `nvmf_tgt` (`spdk-rpc save_config`) loads here, and our
//! `save_config` gives back the same subsystems and calls with the same parameter names.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::Target;
use serde_json::Value;

/// Calls of SPDK modules rspdk does not have (RAID): removed from the SPDK file before loading.
const NOT_IN_RSPDK: &[&str] = &["bdev_raid_set_options"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spdk_config(port: u16) -> Value {
    let text = include_str!("fixtures/spdk-25.09-save_config.json")
        .replace("\"4420\"", &format!("\"{port}\""));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    for s in v["subsystems"].as_array_mut().unwrap() {
        if let Some(cfg) = s["config"].as_array_mut() {
            cfg.retain(|c| !NOT_IN_RSPDK.contains(&c["method"].as_str().unwrap_or("")));
        }
    }
    v
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn spdk_saved_config_loads_and_saves_back_with_the_same_shape() {
    let port = free_port();
    let spdk = spdk_config(port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("spdk.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&spdk).unwrap()).unwrap();
    let t = Target::start(&["-c", cfg.to_str().unwrap()]);
    t.wait_init();
    // The namespace is served where SPDK served it.
    let subs = t.call("nvmf_get_subsystems", None).unwrap();
    let cnode1 = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["nqn"] == "nqn.2016-06.io.spdk:cnode1")
        .unwrap();
    assert_eq!(cnode1["namespaces"][0]["bdev_name"], "Malloc0");
    assert_eq!(cnode1["serial_number"], "SPDK001");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let ours = t.call("save_config", None).unwrap();
    // Every subsystem SPDK saved with calls is in ours, in the same relative order.
    let names = |v: &Value, skip_empty: bool| -> Vec<String> {
        v["subsystems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !skip_empty || !s["config"].as_array().unwrap().is_empty())
            .map(|s| s["subsystem"].as_str().unwrap().to_owned())
            .collect()
    };
    let ours_names = names(&ours, false);
    let spdk_names = names(&spdk, true);
    let ours_filtered: Vec<&String> = ours_names
        .iter()
        .filter(|n| spdk_names.contains(n))
        .collect();
    assert_eq!(ours_filtered, spdk_names.iter().collect::<Vec<_>>());
    // Each SPDK call appears in ours with the same parameter names.
    for s in spdk["subsystems"].as_array().unwrap() {
        let name = s["subsystem"].as_str().unwrap();
        let ours_calls = ours["subsystems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["subsystem"] == name)
            .map(|o| o["config"].as_array().unwrap().clone())
            .unwrap_or_default();
        for c in s["config"].as_array().unwrap() {
            let m = c["method"].as_str().unwrap();
            let found = ours_calls.iter().any(|o| {
                o["method"] == m
                    && keys(&o["params"]).is_superset(&keys(&c["params"]))
                    && (m != "sock_impl_set_options"
                        || o["params"]["impl_name"] == c["params"]["impl_name"])
            });
            assert!(
                found,
                "{name}: {m} {} missing in ours: {ours_calls:#?}",
                c["params"]
            );
        }
    }
}
