//! The four RPCs through a local registry: result shapes and SPDK's error codes.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use common::{Disk, RamTransport, params};
use env::testing::TestThreads;
use rpc::{RpcError, RpcRegistry, RpcState};
use serde_json::{Value, json};

fn call(tt: &TestThreads, reg: &RpcRegistry, method: &str, p: Value) -> Result<Value, RpcError> {
    tt.set_current(0);
    let s: Rc<RefCell<Option<Result<Value, RpcError>>>> = Rc::default();
    let s2 = Rc::clone(&s);
    reg.call_local(method, Some(p), move |r| *s2.borrow_mut() = Some(r));
    // Attach answers from a poller once its connect thread is done: bounded in time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.borrow().is_none() && std::time::Instant::now() < deadline {
        tt.advance_time(std::time::Duration::from_millis(1));
        tt.poll_threads();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    s.borrow_mut().take().expect("answered")
}

fn err(r: Result<Value, RpcError>) -> (i32, String) {
    let e = r.unwrap_err();
    (e.code, e.message)
}

/// One test: the module's controller list is process-wide.
#[test]
fn rpcs_answer_with_spdk_shapes_and_errors() {
    let tt = TestThreads::new(1);
    tt.set_current(0);
    let reg = RpcRegistry::new();
    bdev::rpc::register_rpcs(&reg);
    bdev_nvme::register(&reg);
    reg.set_state(RpcState::Runtime);
    let methods = reg.methods(false);
    for m in [
        "bdev_nvme_attach_controller",
        "bdev_nvme_detach_controller",
        "bdev_nvme_get_controllers",
        "bdev_nvme_set_options",
    ] {
        assert!(methods.iter().any(|x| x == m), "{m} not registered");
    }
    assert_eq!(
        call(&tt, &reg, "bdev_nvme_get_controllers", json!({})).unwrap(),
        json!([])
    );
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_nvme_set_options",
            json!({"keep_alive_timeout_ms": 5000})
        )
        .unwrap(),
        json!(true)
    );
    assert_eq!(bdev_nvme::options().keep_alive_timeout_ms, 5000);
    assert_eq!(
        bdev_nvme::options().transport_retry_count,
        4,
        "others keep defaults"
    );
    assert_eq!(
        err(call(
            &tt,
            &reg,
            "bdev_nvme_set_options",
            json!({"action_on_timeout": "bogus"})
        )),
        (-22, "invalid action_on_timeout \"bogus\"".into())
    );
    assert_eq!(
        err(call(
            &tt,
            &reg,
            "bdev_nvme_set_options",
            json!({"no_such_option": 1})
        ))
        .0,
        -32603
    );
    let base = json!({"name": "RpcX", "trtype": "TCP", "traddr": "127.0.0.1",
                      "trsvcid": "9", "subnqn": "nqn.2016-06.io.spdk:x"});
    let mut unknown = base.clone();
    unknown["bogus"] = json!(1);
    assert_eq!(
        err(call(&tt, &reg, "bdev_nvme_attach_controller", unknown)),
        (-32603, "spdk_json_decode_object failed".into())
    );
    let mut psk = base.clone();
    psk["psk"] = json!("key0");
    assert_eq!(
        err(call(&tt, &reg, "bdev_nvme_attach_controller", psk)),
        (
            -22,
            "psk (TLS) is not supported by this nvme bdev module".into()
        )
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut unreachable = base.clone();
    unreachable["trsvcid"] = json!(port.to_string());
    assert_eq!(
        err(call(&tt, &reg, "bdev_nvme_attach_controller", unreachable)).0,
        -19
    );
    assert_eq!(
        err(call(
            &tt,
            &reg,
            "bdev_nvme_detach_controller",
            json!({"name": "Nope"})
        )),
        (-19, "controller Nope not found".into())
    );
    assert_eq!(
        err(call(
            &tt,
            &reg,
            "bdev_nvme_get_controllers",
            json!({"name": "Nope"})
        )),
        (-19, "No such device".into())
    );
    // With a controller attached: listed with SPDK's shape; set_options refused.
    let names = bdev_nvme::attach_with_transport(
        &params("RpcRam"),
        Arc::new(RamTransport(Arc::new(Disk::default()))),
    )
    .unwrap();
    assert_eq!(names, vec!["RpcRamn1".to_string()]);
    let list = call(
        &tt,
        &reg,
        "bdev_nvme_get_controllers",
        json!({"name": "RpcRam"}),
    )
    .unwrap();
    assert_eq!(list[0]["name"], "RpcRam");
    let c = &list[0]["ctrlrs"][0];
    assert_eq!(c["state"], "enabled");
    assert_eq!(
        c["trid"],
        json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420",
               "subnqn": "nqn.2016-06.io.spdk:ram"})
    );
    assert_eq!(c["cntlid"], 1);
    assert!(
        c["host"]["nqn"]
            .as_str()
            .unwrap()
            .starts_with("nqn.2014-08.org.nvmexpress:uuid:")
    );
    assert_eq!(
        err(call(&tt, &reg, "bdev_nvme_set_options", json!({}))),
        (
            -1,
            "RPC not permitted with nvme controllers already attached".into()
        )
    );
    let cfg = bdev::subsystem_config_json();
    let methods: Vec<&str> = cfg
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["method"].as_str())
        .collect();
    assert!(methods.contains(&"bdev_nvme_set_options"), "{methods:?}");
    assert!(
        methods.contains(&"bdev_nvme_attach_controller"),
        "{methods:?}"
    );
    assert_eq!(
        err(call(
            &tt,
            &reg,
            "bdev_nvme_detach_controller",
            json!({"name": "RpcRam", "traddr": "10.0.0.1"})
        ))
        .0,
        -19
    );
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_nvme_detach_controller",
            json!({"name": "RpcRam"})
        )
        .unwrap(),
        json!(true)
    );
    assert_eq!(
        call(&tt, &reg, "bdev_nvme_get_controllers", json!({})).unwrap(),
        json!([])
    );
}
