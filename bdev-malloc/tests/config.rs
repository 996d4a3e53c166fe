//! save_config round trip of the bdev subsystem (own process: it sees every bdev).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use env::testing::TestThreads;
use rpc::RpcState;
use serde_json::{Value, json};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn config_has_spdk_shape_and_replay_recreates_the_bdevs() {
    let tt = TestThreads::new(1);
    let reg = registry();
    reg.set_state(RpcState::Startup);
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_set_options",
            json!({"bdev_io_pool_size": 4096, "bdev_io_cache_size": 128})
        ),
        Ok(json!(true))
    );
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_set_options",
            json!({"bdev_io_pool_size": 10, "bdev_io_cache_size": 128})
        )
        .unwrap_err()
        .code,
        -32602
    );
    reg.set_state(RpcState::Runtime);
    call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "Malloc0", "num_blocks": 1024, "block_size": 512}),
    )
    .unwrap();
    call(&tt, &reg, "bdev_malloc_create", json!({"name": "Malloc1", "num_blocks": 32, "block_size": 4096,
        "physical_block_size": 4096, "optimal_io_boundary": 8, "uuid": "7c477eee-fe44-43e4-8fcc-ae5bf4c56355"})).unwrap();
    call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "Malloc2", "num_blocks": 16, "block_size": 512,
        "md_size": 16, "md_interleave": true}),
    )
    .unwrap();
    call(
        &tt,
        &reg,
        "bdev_set_qos_limit",
        json!({"name": "Malloc0", "rw_ios_per_sec": 3000}),
    )
    .unwrap();

    let cfg = bdev::subsystem_config_json();
    let entries = cfg.as_array().unwrap();
    let reference: Value =
        serde_json::from_str(include_str!("fixtures/save_config_bdev.json")).unwrap();
    let ref_entries = reference["config"].as_array().unwrap();
    assert_eq!(entries[0]["method"], "bdev_set_options");
    assert_eq!(keys(&entries[0]["params"]), keys(&ref_entries[0]["params"]));
    assert_eq!(entries[0]["params"]["bdev_io_pool_size"], 4096);
    assert_eq!(
        entries.last().unwrap(),
        &json!({"method": "bdev_wait_for_examine"})
    );
    let ref_create = ref_entries
        .iter()
        .find(|e| e["method"] == "bdev_malloc_create")
        .unwrap();
    let creates: Vec<&Value> = entries
        .iter()
        .filter(|e| e["method"] == "bdev_malloc_create")
        .collect();
    assert_eq!(creates.len(), 3);
    assert_eq!(keys(&creates[0]["params"]), keys(&ref_create["params"]));
    assert_eq!(
        creates[1]["params"]["uuid"],
        "7c477eee-fe44-43e4-8fcc-ae5bf4c56355"
    );
    assert_eq!(creates[1]["params"]["physical_block_size"], 4096);
    assert_eq!(creates[2]["params"]["block_size"], 512);
    assert_eq!(creates[2]["params"]["md_interleave"], true);
    let qos_pos = entries
        .iter()
        .position(|e| e["method"] == "bdev_set_qos_limit")
        .unwrap();
    let m0_pos = entries
        .iter()
        .position(|e| e["params"]["name"] == "Malloc0" && e["method"] == "bdev_malloc_create")
        .unwrap();
    assert_eq!(entries[qos_pos]["params"]["rw_ios_per_sec"], 3000);
    assert_eq!(qos_pos, m0_pos + 1);

    for n in ["Malloc0", "Malloc1", "Malloc2"] {
        assert_eq!(
            call(&tt, &reg, "bdev_malloc_delete", json!({"name": n})),
            Ok(json!(true))
        );
    }
    assert!(bdev::bdevs().is_empty());

    // Replay: startup methods first, then the rest, as SPDK's load_config does.
    let replay = |reg: &rpc::RpcRegistry, state: RpcState| {
        reg.set_state(state);
        for e in entries {
            let m = e["method"].as_str().unwrap();
            let startup = m == "bdev_set_options";
            if startup != (state == RpcState::Startup) {
                continue;
            }
            let r = call(&tt, reg, m, e.get("params").cloned().unwrap_or(Value::Null));
            assert!(r.is_ok(), "{m} {e}: {r:?}");
        }
    };
    replay(&reg, RpcState::Startup);
    replay(&reg, RpcState::Runtime);
    assert_eq!(bdev::subsystem_config_json(), cfg);
}
