//! Per-transport defaults of `nvmf_create_transport` / `nvmf_get_transports`: TCP keeps
//! SPDK's TCP defaults, RDMA gets SPDK's RDMA ones (SPDK 25.09 `lib/nvmf/rdma.c`
//! `nvmf_rdma_opts_init`), and given values override either.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

#[test]
fn rdma_transport_gets_spdk_rdma_defaults() {
    let env = setup();
    env.tgt
        .register_transport_factory("RDMA", env.net.factory("RDMA"));
    let reg = rpc_registry(&env);
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_create_transport",
        json!({"trtype": "RDMA"}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    let v = rpc_call(&env, &reg, "nvmf_get_transports", json!({"trtype": "RDMA"})).unwrap();
    assert_eq!(
        v,
        json!([{
            "trtype": "RDMA",
            "max_queue_depth": 128,
            "max_io_qpairs_per_ctrlr": 127,
            "in_capsule_data_size": 4096,
            "max_io_size": 131072,
            "io_unit_size": 8192,
            "max_aq_depth": 128,
            "num_shared_buffers": 4095,
            "buf_cache_size": 4294967295u32,
            "dif_insert_or_strip": false,
            "zcopy": false,
            "abort_timeout_sec": 1,
            "ack_timeout": 0,
            "data_wr_pool_size": 4095
        }])
    );
    // TCP (created by setup() with TransportOpts::default()) keeps TCP's defaults.
    let v = rpc_call(&env, &reg, "nvmf_get_transports", json!({"trtype": "TCP"})).unwrap();
    assert_eq!(v[0]["io_unit_size"], json!(131072));
    assert_eq!(v[0]["num_shared_buffers"], json!(511));
    assert_eq!(v[0]["data_wr_pool_size"], json!(0));
}

#[test]
fn given_values_override_each_transports_defaults() {
    let env = setup();
    env.tgt
        .register_transport_factory("RDMA", env.net.factory("RDMA"));
    env.tgt
        .register_transport_factory("TCP2", env.net.factory("TCP2"));
    let reg = rpc_registry(&env);
    rpc_call(
        &env,
        &reg,
        "nvmf_create_transport",
        json!({"trtype": "RDMA", "io_unit_size": 16384, "max_queue_depth": 64}),
    )
    .unwrap();
    let v = rpc_call(&env, &reg, "nvmf_get_transports", json!({"trtype": "RDMA"})).unwrap();
    assert_eq!(v[0]["io_unit_size"], json!(16384));
    assert_eq!(v[0]["max_queue_depth"], json!(64));
    assert_eq!(v[0]["num_shared_buffers"], json!(4095), "default kept");
    // A transport that is not RDMA starts from TCP's defaults through the RPC too.
    rpc_call(
        &env,
        &reg,
        "nvmf_create_transport",
        json!({"trtype": "TCP2", "num_shared_buffers": 1023}),
    )
    .unwrap();
    let v = rpc_call(&env, &reg, "nvmf_get_transports", json!({"trtype": "TCP2"})).unwrap();
    assert_eq!(v[0]["io_unit_size"], json!(131072));
    assert_eq!(v[0]["num_shared_buffers"], json!(1023));
    // A value of the wrong type is refused with -32602.
    let e = rpc_call(
        &env,
        &reg,
        "nvmf_create_transport",
        json!({"trtype": "RDMA", "io_unit_size": "big"}),
    )
    .unwrap_err();
    assert_eq!(e.code, -32602);
}

/// SPDK `nvmf_transport_create` refuses these before creating anything; the RPC answers
/// -32603 "Transport type '%s' create failed" and the target keeps working.
#[test]
fn bad_common_options_are_refused_with_spdks_answer() {
    let env = setup();
    env.tgt
        .register_transport_factory("TCP2", env.net.factory("TCP2"));
    let reg = rpc_registry(&env);
    for bad in [
        json!({"trtype": "TCP2", "max_io_size": 4294967295u32, "in_capsule_data_size": 4294967295u32}),
        json!({"trtype": "TCP2", "max_io_size": 12288}),
        json!({"trtype": "TCP2", "max_io_size": 4096}),
        json!({"trtype": "TCP2", "io_unit_size": 4294967295u32}),
        json!({"trtype": "TCP2", "io_unit_size": 0}),
        json!({"trtype": "TCP2", "kas": 0}),
        json!({"trtype": "TCP2", "min_kato": 0}),
    ] {
        let e = rpc_call(&env, &reg, "nvmf_create_transport", bad.clone()).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (-32603, "Transport type 'TCP2' create failed"),
            "{bad}"
        );
    }
    let v = rpc_call(&env, &reg, "nvmf_get_transports", json!({"trtype": "TCP2"})).unwrap_err();
    assert_eq!(v.code, -19, "nothing was created");
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_create_transport",
        json!({"trtype": "TCP2", "max_io_size": 8192, "io_unit_size": 8192, "kas": 30}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    let v = rpc_call(&env, &reg, "nvmf_get_transports", json!({"trtype": "TCP2"})).unwrap();
    assert_eq!(v[0]["max_io_size"], json!(8192));
    assert_eq!(v[0]["in_capsule_data_size"], json!(4096));
}
