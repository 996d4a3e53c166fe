//! The malloc and bdev RPCs: results and SPDK's exact errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use env::testing::TestThreads;
use rpc::RpcError;
use serde_json::{Value, json};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn err(code: i32, msg: &str) -> Result<Value, RpcError> {
    Err(RpcError::new(code, msg))
}

#[test]
fn malloc_create_and_delete_answer_like_spdk() {
    let tt = TestThreads::new(1);
    let reg = registry();
    // rpc.py's positional form: bdev_malloc_create -b R0 64 512.
    let r = call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_r0", "num_blocks": 131072, "block_size": 512}),
    );
    assert_eq!(r, Ok(json!("rpc_r0")));
    let b = bdev::get_by_name("rpc_r0").unwrap();
    assert_eq!(
        (b.block_size(), b.num_blocks(), b.product_name()),
        (512, 131072, "Malloc disk")
    );
    let r = call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_r0", "num_blocks": 8, "block_size": 512}),
    );
    assert_eq!(r, err(-17, "File exists"));
    // A UUID already in use is a duplicate too.
    let uuid = b.uuid().to_string();
    let r = call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_r0b", "num_blocks": 8, "block_size": 512, "uuid": uuid}),
    );
    assert_eq!(r, err(-17, "File exists"));
    for bad in [
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 500}),
        json!({"name": "rpc_bad", "num_blocks": 0, "block_size": 512}),
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 0}),
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 512, "physical_block_size": 100}),
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 512, "md_size": 7}),
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 512, "dif_type": 4, "md_size": 8}),
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 512, "dif_type": 1}),
    ] {
        assert_eq!(
            call(&tt, &reg, "bdev_malloc_create", bad.clone()),
            err(-22, "Invalid argument"),
            "{bad}"
        );
    }
    assert!(bdev::get_by_name("rpc_bad").is_none());
    for bad in [
        json!({"name": "rpc_bad", "block_size": 512}),
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 512, "bogus": 1}),
        json!({"name": "rpc_bad", "num_blocks": "8", "block_size": 512}),
        json!({"name": "rpc_bad", "num_blocks": 8, "block_size": 512, "uuid": "not-a-uuid"}),
    ] {
        assert_eq!(
            call(&tt, &reg, "bdev_malloc_create", bad.clone()),
            err(-32603, "spdk_json_decode_object failed"),
            "{bad}"
        );
    }
    // 4096-byte blocks with interleaved metadata: block size is data + md.
    let r = call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_md", "num_blocks": 16, "block_size": 4096, "md_size": 64, "md_interleave": true}),
    );
    assert_eq!(r, Ok(json!("rpc_md")));
    assert_eq!(bdev::get_by_name("rpc_md").unwrap().block_size(), 4160);

    assert_eq!(
        call(&tt, &reg, "bdev_malloc_delete", json!({"name": "rpc_r0"})),
        Ok(json!(true))
    );
    assert!(bdev::get_by_name("rpc_r0").is_none());
    assert_eq!(
        call(&tt, &reg, "bdev_malloc_delete", json!({"name": "rpc_r0"})),
        err(-19, "No such device")
    );
    assert_eq!(
        call(&tt, &reg, "bdev_malloc_delete", json!({})),
        err(-32603, "spdk_json_decode_object failed")
    );
}

/// `MemTotal` of /proc/meminfo in bytes.
fn mem_total() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024
}

#[test]
fn malloc_larger_than_available_memory_is_enomem_before_allocating() {
    let tt = TestThreads::new(1);
    let reg = registry();
    // The whole of RAM: no more than MemTotal (the only check before), but more than the
    // system can give, since the kernel and other processes use some. Guard: never send a size
    // that the check would let through (it would really be allocated).
    let num_blocks = mem_total() / 4096;
    let avail = env::mem_available().unwrap();
    assert!(
        num_blocks * 4096 > avail,
        "{num_blocks} blocks, {avail} available"
    );
    let r = call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_ram", "num_blocks": num_blocks, "block_size": 4096}),
    );
    assert_eq!(r, err(-12, "Cannot allocate memory"));
    assert!(bdev::get_by_name("rpc_ram").is_none());
    // Far beyond memory, also refused by the check.
    let r = call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_ram", "num_blocks": 1u64 << 40, "block_size": 4096}),
    );
    assert_eq!(r, err(-12, "Cannot allocate memory"));
    // The module goes on: a small bdev is created and deleted.
    let r = call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_ram", "num_blocks": 16, "block_size": 4096}),
    );
    assert_eq!(r, Ok(json!("rpc_ram")));
    assert_eq!(
        call(&tt, &reg, "bdev_malloc_delete", json!({"name": "rpc_ram"})),
        Ok(json!(true))
    );
}

#[test]
fn get_bdevs_entry_has_spdk_keys() {
    let tt = TestThreads::new(1);
    let reg = registry();
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/bdev_get_bdevs.json")).unwrap();
    let want = &fixture[0];
    call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_shape", "num_blocks": 64, "block_size": 512}),
    )
    .unwrap();
    let d = bdev::open_ext("rpc_shape", true, |_| {}).unwrap();
    d.claim(bdev::ClaimType::ExclusiveWrite, "nvmf").unwrap();
    let got = call(&tt, &reg, "bdev_get_bdevs", json!({"name": "rpc_shape"})).unwrap();
    let got = &got[0];
    assert_eq!(keys(got), keys(want));
    for k in ["assigned_rate_limits", "supported_io_types"] {
        assert_eq!(keys(&got[k]), keys(&want[k]), "{k}");
    }
    assert_eq!(
        keys(&got["memory_domains"][0]),
        keys(&want["memory_domains"][0])
    );
    let uuid = got["uuid"].as_str().unwrap();
    assert_eq!(got["aliases"], json!([uuid]));
    assert_eq!(got["product_name"], "Malloc disk");
    assert_eq!(got["num_blocks"], 64);
    assert_eq!(got["claimed"], true);
    assert_eq!(got["claim_type"], "exclusive_write");
    assert_eq!(got["supported_io_types"]["read"], true);
    assert_eq!(got["supported_io_types"]["nvme_admin"], false);
    // The UUID finds it too; an unknown name is ENODEV.
    let by_uuid = call(&tt, &reg, "bdev_get_bdevs", json!({"name": uuid})).unwrap();
    assert_eq!(by_uuid[0]["name"], "rpc_shape");
    assert_eq!(
        call(&tt, &reg, "bdev_get_bdevs", json!({"name": "rpc_nope"})),
        err(-19, "No such device")
    );
}

#[test]
fn get_bdevs_timeout_waits_for_the_bdev() {
    let tt = TestThreads::new(1);
    let reg = registry();
    tt.set_current(0);
    let s = slot();
    let s2 = std::rc::Rc::clone(&s);
    reg.call_local(
        "bdev_get_bdevs",
        Some(json!({"name": "rpc_late", "timeout": 50})),
        move |r| *s2.borrow_mut() = Some(r),
    );
    tt.poll_threads();
    assert!(s.borrow().is_none());
    tt.advance_time(std::time::Duration::from_millis(20));
    tt.poll_threads();
    assert!(s.borrow().is_none());
    bdev_malloc::create(&bdev_malloc::MallocOpts::new("rpc_late", 8, 512)).unwrap();
    tt.advance_time(std::time::Duration::from_millis(10));
    tt.poll_threads();
    assert_eq!(take(&s).unwrap()[0]["name"], "rpc_late");
    // Timing out answers ENODEV.
    reg.call_local(
        "bdev_get_bdevs",
        Some(json!({"name": "rpc_never", "timeout": 30})),
        {
            let s = std::rc::Rc::clone(&s);
            move |r| *s.borrow_mut() = Some(r)
        },
    );
    tt.advance_time(std::time::Duration::from_millis(40));
    tt.poll_threads();
    tt.advance_time(std::time::Duration::from_millis(10));
    tt.poll_threads();
    assert_eq!(take(&s), err(-19, "No such device"));
}

#[test]
fn qos_and_iostat_rpcs() {
    let tt = TestThreads::new(1);
    let reg = registry();
    call(
        &tt,
        &reg,
        "bdev_malloc_create",
        json!({"name": "rpc_qos", "num_blocks": 64, "block_size": 512}),
    )
    .unwrap();
    assert_eq!(
        call(&tt, &reg, "bdev_set_qos_limit", json!({"name": "rpc_qos"})),
        err(-22, "No rate limits specified")
    );
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_set_qos_limit",
            json!({"name": "rpc_qos", "rw_ios_per_sec": 1500})
        ),
        err(-32603, "Failed to configure rate limit: Invalid argument")
    );
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_set_qos_limit",
            json!({"name": "rpc_nope", "rw_ios_per_sec": 1000})
        ),
        err(-19, "No such device")
    );
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_set_qos_limit",
            json!({"name": "rpc_qos", "rw_ios_per_sec": 20000, "w_mbytes_per_sec": 5})
        ),
        Ok(json!(true))
    );
    let info = call(&tt, &reg, "bdev_get_bdevs", json!({"name": "rpc_qos"})).unwrap();
    assert_eq!(
        info[0]["assigned_rate_limits"],
        json!({"rw_ios_per_sec": 20000, "rw_mbytes_per_sec": 0, "r_mbytes_per_sec": 0, "w_mbytes_per_sec": 5})
    );

    let desc = bdev::open_ext("rpc_qos", true, |_| {}).unwrap();
    tt.set_current(0);
    let ch = desc.get_io_channel().unwrap();
    let s = slot();
    ch.write(bufs(vec![1; 1024]), 0, 2, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, bdev::IoStatus::Success);
    let st = call(&tt, &reg, "bdev_get_iostat", json!({"name": "rpc_qos"})).unwrap();
    assert_eq!(st["tick_rate"], 1_000_000_000u64);
    assert!(st["ticks"].is_u64());
    let b = &st["bdevs"][0];
    assert_eq!(b["name"], "rpc_qos");
    assert_eq!(b["num_write_ops"], 1);
    assert_eq!(b["bytes_written"], 1024);
    assert_eq!(b["num_read_ops"], 0);
    assert_eq!(
        call(&tt, &reg, "bdev_get_iostat", json!({"name": "rpc_nope"})),
        err(-19, "No such device")
    );
    assert_eq!(
        call(&tt, &reg, "bdev_wait_for_examine", Value::Null),
        Ok(json!(true))
    );
    // bdev_set_options is a STARTUP method.
    assert_eq!(
        call(
            &tt,
            &reg,
            "bdev_set_options",
            json!({"bdev_io_pool_size": 1024})
        )
        .unwrap_err()
        .code,
        -1
    );
}
