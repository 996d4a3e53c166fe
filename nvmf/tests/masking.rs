//! Namespace masking (SPDK `no_auto_visible`, `nvmf_ns_add_host`, `nvmf_ns_remove_host`):
//! a host never sees nor touches a namespace that is not visible to it; visibility changes
//! reach connected hosts with a Namespace Attribute Changed event; save_config replays it.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::identify::IdentifyNamespace;
use nvme::spec::{Cqe, GenericStatus, Status};
use nvmf::testing::TestHost;
use rpc::RpcState;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use zerocopy::FromBytes;

/// Host A: sees the masked namespace 2.
const HOST_A: &str = HOSTNQN;
/// Host B: sees only namespace 1.
const HOST_B: &str = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-2222-3333-4444-555555555555";
/// Blocks of the masked namespace's bdev.
const NS2_BLOCKS: u64 = 64;

struct Masked {
    env: Env,
    reg: Rc<rpc::RpcRegistry>,
    ns2_bdev: String,
}

/// `setup()` (namespace 1 visible to all) plus namespace 2 on its own 64 x 512 malloc bdev,
/// added with `no_auto_visible` and made visible to host A only, all through the RPCs.
fn masked() -> Masked {
    let env = setup();
    let reg = rpc_registry(&env);
    let ns2_bdev = unique("Masked");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&ns2_bdev, NS2_BLOCKS, 512)).unwrap();
    let nsid = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        json!({"nqn": SUBNQN, "namespace": {"bdev_name": ns2_bdev, "nsid": 2, "no_auto_visible": true}}),
    )
    .unwrap();
    assert_eq!(nsid, json!(2));
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_ns_add_host",
        json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_A}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    Masked { env, reg, ns2_bdev }
}

fn invalid_ns_dnr() -> Status {
    Status::from(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).with_dnr()
}

/// Identify Active Namespace ID list (CNS 02h) from NSID 0: the listed NSIDs.
fn active_ns(env: &Env, admin: &TestHost, cid: u16) -> Vec<u32> {
    let (c, d) = env.cmd(admin, sqe(0x06, cid, 0, 0x02, 0, 0), None, 4096);
    ok(&c);
    d.unwrap()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .take_while(|n| *n != 0)
        .collect()
}

/// Reads the Changed Namespace List log page (RAE=0, so it is cleared): its NSIDs.
fn changed_ns(env: &Env, admin: &TestHost, cid: u16) -> Vec<u32> {
    let numd = 1024 - 1;
    let (c, d) = env.cmd(
        admin,
        sqe(0x02, cid, 0, 0x04 | (numd << 16), 0, 0),
        None,
        4096,
    );
    ok(&c);
    d.unwrap()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .take_while(|n| *n != 0)
        .collect()
}

fn write(env: &Env, io: &TestHost, cid: u16, nsid: u32, lba: u32, data: &[u8]) -> Cqe {
    let nlb = (data.len() / 512) as u32 - 1;
    let (c, _) = env.cmd(
        io,
        sqe(0x01, cid, nsid, lba, 0, nlb),
        Some(data.to_vec()),
        data.len() as u32,
    );
    c
}

fn read(
    env: &Env,
    io: &TestHost,
    cid: u16,
    nsid: u32,
    lba: u32,
    len: u32,
) -> (Cqe, Option<Vec<u8>>) {
    env.cmd(io, sqe(0x02, cid, nsid, lba, 0, len / 512 - 1), None, len)
}

/// The bdev's (successful reads, successful writes) so far, summed over all channels.
fn bdev_ops(env: &Env, name: &str) -> (u64, u64) {
    env.threads.set_current(0);
    let out = Rc::new(RefCell::new(None));
    let o = out.clone();
    bdev::get_by_name(name)
        .unwrap()
        .iostat(move |s| *o.borrow_mut() = Some((s.num_read_ops, s.num_write_ops)))
        .unwrap();
    env.poll();
    env.threads.set_current(0);
    out.borrow_mut().take().expect("iostat not answered")
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn masked_namespace_is_invisible_and_untouchable_for_other_hosts() {
    let m = masked();
    let env = &m.env;
    let (a_admin, a_cntlid) = admin_connect(env, HOST_A, 0);
    let a_io = io_connect(env, HOST_A, a_cntlid, 1);
    let (b_admin, b_cntlid) = admin_connect(env, HOST_B, 0);
    let b_io = io_connect(env, HOST_B, b_cntlid, 1);

    // Active namespace lists.
    assert_eq!(active_ns(env, &a_admin, 10), vec![1, 2]);
    assert_eq!(active_ns(env, &b_admin, 10), vec![1]);
    // Starting after NSID 1, B's list is empty; A's has 2.
    let (c, d) = env.cmd(&b_admin, sqe(0x06, 11, 1, 0x02, 0, 0), None, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), vec![0u8; 4096]);

    // Identify Namespace 2: A gets the bdev's geometry, B zeroed data as for an inactive NSID.
    let (c, d) = env.cmd(&a_admin, sqe(0x06, 12, 2, 0x00, 0, 0), None, 4096);
    ok(&c);
    let id = IdentifyNamespace::read_from_bytes(&d.unwrap()).unwrap();
    assert_eq!(id.nsze.get(), NS2_BLOCKS);
    let (c, d) = env.cmd(&b_admin, sqe(0x06, 12, 2, 0x00, 0, 0), None, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), vec![0u8; 4096]);
    // I/O command set independent Identify Namespace (CNS 08h): NSTAT ready only for A.
    let (c, d) = env.cmd(&a_admin, sqe(0x06, 13, 2, 0x08, 0, 0), None, 4096);
    ok(&c);
    assert_eq!(d.unwrap()[4], 1);
    let (c, d) = env.cmd(&b_admin, sqe(0x06, 13, 2, 0x08, 0, 0), None, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), vec![0u8; 4096]);
    // Namespace identification descriptors: A gets them, B Invalid Field (inactive NSID).
    let (c, d) = env.cmd(&a_admin, sqe(0x06, 14, 2, 0x03, 0, 0), None, 4096);
    ok(&c);
    assert_ne!(d.unwrap()[0], 0, "first descriptor type");
    let (c, _) = env.cmd(&b_admin, sqe(0x06, 14, 2, 0x03, 0, 0), None, 4096);
    assert_eq!(c.status(), Status::from(GenericStatus::INVALID_FIELD));

    // A writes namespace 2.
    let a_data = pattern(0xa5);
    ok(&write(env, &a_io, 20, 2, 0, &a_data));
    let before = bdev_ops(env, &m.ns2_bdev);
    assert_eq!(before, (0, 1));

    // B can neither read A's data nor overwrite it, and its commands never reach the bdev.
    let (c, d) = read(env, &b_io, 21, 2, 0, 4096);
    assert_eq!(c.status(), invalid_ns_dnr());
    assert_eq!(d, None);
    let c = write(env, &b_io, 22, 2, 0, &pattern(0x5a));
    assert_eq!(c.status(), invalid_ns_dnr());
    let (c, _) = env.cmd(&b_io, sqe(0x08, 23, 2, 0, 0, 7), None, 0);
    assert_eq!(c.status(), invalid_ns_dnr(), "write zeroes");
    let (c, _) = env.cmd(&b_io, sqe(0x00, 24, 2, 0, 0, 0), None, 0);
    assert_eq!(c.status(), invalid_ns_dnr(), "flush");
    assert_eq!(bdev_ops(env, &m.ns2_bdev), before);
    // B still has full access to namespace 1.
    let b_data = pattern(0x3c);
    ok(&write(env, &b_io, 25, 1, 0, &b_data));
    let (c, d) = read(env, &b_io, 26, 1, 0, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), b_data);

    // A's data on namespace 2 is intact.
    let (c, d) = read(env, &a_io, 27, 2, 0, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), a_data);
    assert_eq!(bdev_ops(env, &m.ns2_bdev), (1, 1));
}

#[test]
fn visibility_added_while_connected_raises_aen_then_io_works() {
    let m = masked();
    let env = &m.env;
    let (a_admin, a_cntlid) = admin_connect(env, HOST_A, 0);
    let a_io = io_connect(env, HOST_A, a_cntlid, 1);
    let a_data = pattern(0x11);
    ok(&write(env, &a_io, 5, 2, 8, &a_data));
    let (b_admin, b_cntlid) = admin_connect(env, HOST_B, 0);
    let b_io = io_connect(env, HOST_B, b_cntlid, 1);
    // AERs outstanding on both controllers.
    a_admin.submit(sqe(0x0c, 9, 0, 0, 0, 0), None, 0);
    b_admin.submit(sqe(0x0c, 9, 0, 0, 0, 0), None, 0);
    env.poll();
    assert!(a_admin.take_response().is_none());
    assert!(b_admin.take_response().is_none());

    let r = rpc_call(
        env,
        &m.reg,
        "nvmf_ns_add_host",
        json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_B}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    env.poll();
    // B: Notice / Namespace Attribute Changed / Changed NS List log.
    let (c, _) = b_admin.take_response().expect("AEN for B");
    assert_eq!(c.cid.get(), 9);
    ok(&c);
    assert_eq!(c.dw0.get(), 0x0004_0002);
    // A's view did not change: no event.
    assert!(a_admin.take_response().is_none());
    assert_eq!(changed_ns(env, &b_admin, 10), vec![2]);
    assert_eq!(changed_ns(env, &b_admin, 11), Vec::<u32>::new(), "cleared");
    assert_eq!(active_ns(env, &b_admin, 12), vec![1, 2]);
    // B's existing I/O queue now reaches namespace 2 and reads A's data.
    let (c, d) = read(env, &b_io, 13, 2, 8, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), a_data);
    // Adding the same host again changes nothing (SPDK answers true) and raises no event.
    b_admin.submit(sqe(0x0c, 14, 0, 0, 0, 0), None, 0);
    let r = rpc_call(
        env,
        &m.reg,
        "nvmf_ns_add_host",
        json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_B}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    env.poll();
    assert!(b_admin.take_response().is_none());
}

#[test]
fn visibility_removed_while_connected_fails_io_and_raises_aen() {
    let m = masked();
    let env = &m.env;
    let (a_admin, a_cntlid) = admin_connect(env, HOST_A, 0);
    let a_io = io_connect(env, HOST_A, a_cntlid, 1);
    let a_data = pattern(0x77);
    ok(&write(env, &a_io, 5, 2, 0, &a_data));
    a_admin.submit(sqe(0x0c, 9, 0, 0, 0, 0), None, 0);
    env.poll();
    assert!(a_admin.take_response().is_none());

    let r = rpc_call(
        env,
        &m.reg,
        "nvmf_ns_remove_host",
        json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_A}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    env.poll();
    let (c, _) = a_admin.take_response().expect("AEN for A");
    assert_eq!(c.dw0.get(), 0x0004_0002);
    assert_eq!(changed_ns(env, &a_admin, 10), vec![2]);
    assert_eq!(active_ns(env, &a_admin, 11), vec![1]);
    let before = bdev_ops(env, &m.ns2_bdev);
    let (c, d) = read(env, &a_io, 12, 2, 0, 4096);
    assert_eq!(c.status(), invalid_ns_dnr());
    assert_eq!(d, None);
    let c = write(env, &a_io, 13, 2, 0, &pattern(0));
    assert_eq!(c.status(), invalid_ns_dnr());
    assert_eq!(bdev_ops(env, &m.ns2_bdev), before);
    // A new association of A does not see it either; namespace 1 still works.
    let (a2, _) = admin_connect(env, HOST_A, 0);
    assert_eq!(active_ns(env, &a2, 14), vec![1]);
    ok(&read(env, &a_io, 15, 1, 0, 512).0);
    // Removing a host that is not there succeeds without change (SPDK).
    let r = rpc_call(
        env,
        &m.reg,
        "nvmf_ns_remove_host",
        json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_A}),
    )
    .unwrap();
    assert_eq!(r, json!(true));
    // Visible again: the data written before is still there.
    rpc_call(
        env,
        &m.reg,
        "nvmf_ns_add_host",
        json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_A}),
    )
    .unwrap();
    let (c, d) = read(env, &a_io, 16, 2, 0, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), a_data);
}

#[test]
fn no_auto_visible_namespace_added_while_connected_raises_no_event() {
    let env = setup();
    let reg = rpc_registry(&env);
    let (h, cntlid) = admin_connect(&env, HOST_B, 0);
    let io = io_connect(&env, HOST_B, cntlid, 1);
    h.submit(sqe(0x0c, 9, 0, 0, 0, 0), None, 0);
    env.poll();
    let b = unique("Masked");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&b, NS2_BLOCKS, 512)).unwrap();
    let nsid = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        json!({"nqn": SUBNQN, "namespace": {"bdev_name": b, "no_auto_visible": true}}),
    )
    .unwrap();
    assert_eq!(nsid, json!(2));
    env.poll();
    assert!(h.take_response().is_none(), "no AEN for a hidden namespace");
    assert_eq!(active_ns(&env, &h, 10), vec![1]);
    assert_eq!(read(&env, &io, 11, 2, 0, 512).0.status(), invalid_ns_dnr());
    // Removing it again is not an event for B either.
    rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_remove_ns",
        json!({"nqn": SUBNQN, "nsid": 2}),
    )
    .unwrap();
    env.poll();
    assert!(h.take_response().is_none());
}

#[test]
fn ns_add_host_errors_are_worded_as_spdk() {
    let m = masked();
    let (env, reg) = (&m.env, &m.reg);
    let invalid = (-32602, "Invalid parameters".to_string());
    let err = |method: &str, params: Value| {
        let e = rpc_call(env, reg, method, params).unwrap_err();
        (e.code, e.message)
    };
    for method in ["nvmf_ns_add_host", "nvmf_ns_remove_host"] {
        // Unknown subsystem.
        assert_eq!(
            err(
                method,
                json!({"nqn": "nqn.2016-06.io.spdk:nope", "nsid": 2, "host": HOST_B})
            ),
            invalid,
            "{method} unknown subsystem"
        );
        // NSID 0, beyond max_namespaces (32), and in range but unused.
        for nsid in [0u32, 33, 7] {
            assert_eq!(
                err(method, json!({"nqn": SUBNQN, "nsid": nsid, "host": HOST_B})),
                invalid,
                "{method} nsid {nsid}"
            );
        }
        // Namespace 1 is visible to every host: no per-host control (SPDK -EPERM).
        assert_eq!(
            err(method, json!({"nqn": SUBNQN, "nsid": 1, "host": HOST_B})),
            invalid,
            "{method} auto-visible namespace"
        );
        // Not an NQN.
        assert_eq!(
            err(
                method,
                json!({"nqn": SUBNQN, "nsid": 2, "host": "not-an-nqn"})
            ),
            invalid,
            "{method} bad host NQN"
        );
        // The discovery subsystem has no namespaces.
        assert_eq!(
            err(
                method,
                json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery", "nsid": 1, "host": HOST_B})
            ),
            invalid,
            "{method} discovery subsystem"
        );
        // Missing and unknown parameters fail decoding: -32602 "Invalid parameters" (the
        // rpc crate appends serde's reason).
        for p in [
            json!({"nqn": SUBNQN, "nsid": 2}),
            json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_B, "extra": 1}),
            json!({"nqn": SUBNQN, "nsid": -1, "host": HOST_B}),
        ] {
            let (code, msg) = err(method, p.clone());
            assert_eq!(code, -32602, "{method} {p}");
            assert!(msg.starts_with("Invalid parameters"), "{method} {p}: {msg}");
        }
        // Unknown target.
        assert_eq!(
            err(
                method,
                json!({"nqn": SUBNQN, "nsid": 2, "host": HOST_B, "tgt_name": "other"})
            ),
            (-32603, "Unable to find a target.".to_string()),
            "{method} unknown target"
        );
    }
    // Nothing of that changed the masking: only A is recorded on namespace 2.
    let ns = m
        .env
        .tgt
        .with_subsystem(SUBNQN, |s| s.namespaces[&2].hosts.clone())
        .unwrap();
    assert_eq!(ns, vec![HOST_A.to_string()]);
}

#[test]
fn get_subsystems_shows_masked_namespace_as_spdk_does() {
    let m = masked();
    let v = rpc_call(
        &m.env,
        &m.reg,
        "nvmf_get_subsystems",
        json!({"nqn": SUBNQN}),
    )
    .unwrap();
    let nss = v[0]["namespaces"].as_array().unwrap();
    assert_eq!(nss.len(), 2);
    assert_eq!(nss[1]["nsid"], json!(2));
    assert_eq!(nss[1]["bdev_name"], json!(m.ns2_bdev));
    // SPDK 25.09 `dump_nvmf_subsystem` prints neither the flag nor the namespace's hosts.
    let keys: std::collections::BTreeSet<&str> = nss[1]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["nsid", "bdev_name", "name", "nguid", "uuid"]
            .into_iter()
            .collect()
    );
}

#[test]
fn save_config_writes_masking_and_replay_rebuilds_it() {
    let m = masked();
    let env = &m.env;
    let cfg = nvmf::config_json(&env.tgt);
    let entries = cfg.as_array().unwrap();
    let i = entries
        .iter()
        .position(|e| {
            e["method"] == "nvmf_subsystem_add_ns" && e["params"]["namespace"]["nsid"] == 2
        })
        .unwrap();
    assert_eq!(
        entries[i]["params"]["namespace"]["no_auto_visible"],
        json!(true)
    );
    assert_eq!(
        entries[i + 1],
        json!({"method": "nvmf_ns_add_host", "params": {"nqn": SUBNQN, "nsid": 2, "host": HOST_A}})
    );
    let ns1 = entries
        .iter()
        .find(|e| e["method"] == "nvmf_subsystem_add_ns" && e["params"]["namespace"]["nsid"] == 1)
        .unwrap();
    assert_eq!(ns1["params"]["namespace"]["no_auto_visible"], json!(false));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["method"] == "nvmf_ns_add_host")
            .count(),
        1
    );

    // Release the bdevs, then replay into a fresh target on the same Threads.
    rpc_call(env, &m.reg, "nvmf_delete_subsystem", json!({"nqn": SUBNQN})).unwrap();
    env.threads.set_current(0);
    let net2 = nvmf::testing::TestNetwork::new();
    let tgt2 = nvmf::Target::new("nvmf_tgt").unwrap();
    tgt2.register_transport_factory("TCP", net2.factory("TCP"));
    let reg2 = rpc::RpcRegistry::new();
    nvmf::register_rpcs(&reg2, &tgt2);
    tgt2.start(vec![env.threads.thread(1).handle()], || {})
        .unwrap();
    env.poll();
    for pass in [RpcState::Startup, RpcState::Runtime] {
        reg2.set_state(pass);
        for e in entries {
            let method = e["method"].as_str().unwrap();
            let startup = matches!(
                method,
                "nvmf_set_config" | "nvmf_set_max_subsystems" | "nvmf_set_crdt"
            );
            if startup != (pass == RpcState::Startup) {
                continue;
            }
            rpc_call(env, &reg2, method, e["params"].clone())
                .unwrap_or_else(|e| panic!("{method}: {e:?}"));
        }
    }
    assert_eq!(nvmf::config_json(&tgt2), cfg);
    let (hidden, hosts) = tgt2
        .with_subsystem(SUBNQN, |s| {
            (
                s.namespaces[&2].no_auto_visible,
                s.namespaces[&2].hosts.clone(),
            )
        })
        .unwrap();
    assert!(hidden);
    assert_eq!(hosts, vec![HOST_A.to_string()]);
}

/// ANA log page (LID 0Ch, RGO=0): (group ID, NSIDs) per group descriptor.
fn ana_groups(env: &Env, admin: &TestHost, cid: u16) -> Vec<(u32, Vec<u32>)> {
    let numd = 1024 - 1;
    let (c, d) = env.cmd(
        admin,
        sqe(0x02, cid, 0, 0x0c | (numd << 16), 0, 0),
        None,
        4096,
    );
    ok(&c);
    let d = d.unwrap();
    let u32_at = |o: usize| u32::from_le_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
    let ngrps = u16::from_le_bytes([d[8], d[9]]);
    let mut off = 16;
    let mut out = Vec::new();
    for _ in 0..ngrps {
        let (grp, n) = (u32_at(off), u32_at(off + 4) as usize);
        off += 32;
        out.push((grp, (0..n).map(|i| u32_at(off + 4 * i)).collect()));
        off += 4 * n;
    }
    out
}

#[test]
fn ana_log_page_lists_only_visible_namespaces() {
    let m = masked();
    let env = &m.env;
    env.tgt
        .with_subsystem(SUBNQN, |s| s.ana_reporting = true)
        .unwrap();
    env.update();
    let (a, _) = admin_connect(env, HOST_A, 0);
    let (b, _) = admin_connect(env, HOST_B, 0);
    assert_eq!(ana_groups(env, &a, 10), vec![(1, vec![1]), (2, vec![2])]);
    assert_eq!(ana_groups(env, &b, 10), vec![(1, vec![1])]);
    // With ana_reporting, SPDK prints each namespace's anagrpid in nvmf_get_subsystems and
    // save_config.
    let v = rpc_call(env, &m.reg, "nvmf_get_subsystems", json!({"nqn": SUBNQN})).unwrap();
    assert_eq!(v[0]["namespaces"][1]["anagrpid"], json!(2));
    let cfg = nvmf::config_json(&env.tgt);
    let ns2 = cfg
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "nvmf_subsystem_add_ns" && e["params"]["namespace"]["nsid"] == 2)
        .unwrap();
    assert_eq!(ns2["params"]["namespace"]["anagrpid"], json!(2));
}
