//! Asymmetric Namespace Access per listener (SPDK `nvmf_subsystem_listener_set_ana_state`):
//! two listeners of the in-memory transport, the ANA log page, ANA change notice, Identify
//! NUSE and the I/O path answer per the listener each controller connected through.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::identify::IdentifyNamespace;
use nvme::spec::{PathStatus, Status};
use nvmf::ListenAddr;
use nvmf::testing::TestHost;
use serde_json::json;
use zerocopy::FromBytes;

/// AER completion DW0 of the ANA change notice: type 2 (notice), info 03h, LID 0Ch.
const AEN_ANA_CHANGE: u32 = 0x000c_0302;

struct Path {
    admin: TestHost,
    io: TestHost,
}

/// setup() plus ana_reporting, a second namespace (NSID 2, ANA group 2) and a second
/// listener 127.0.0.1:4421.
fn ana_env() -> (Env, ListenAddr) {
    let env = setup();
    env.threads.set_current(0);
    env.tgt
        .with_subsystem(SUBNQN, |s| s.ana_reporting = true)
        .unwrap();
    let b = unique("AnaMalloc");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&b, 1024, 512)).unwrap();
    env.tgt
        .add_ns(SUBNQN, &b, 2, None, None, None, 0, false)
        .unwrap();
    let addr2 = ListenAddr::tcp("127.0.0.1", "4421");
    env.tgt.add_listener(SUBNQN, addr2.clone(), false).unwrap();
    env.update();
    (env, addr2)
}

/// Admin (enabled) and I/O queue of host `HOSTNQN` through listener `addr`.
fn connect_via(env: &Env, addr: &ListenAddr) -> Path {
    let admin = env.net.connect(addr).unwrap();
    env.accept();
    let (c, _) = env.cmd(
        &admin,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data(HOSTNQN, SUBNQN, 0xffff)),
        1024,
    );
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    let (c, _) = env.cmd(
        &admin,
        prop_set(
            2,
            nvme::spec::props::PropertyOffset::CC,
            u64::from(CC_ENABLE),
        ),
        None,
        0,
    );
    ok(&c);
    let io = env.net.connect(addr).unwrap();
    env.accept();
    let (c, _) = env.cmd(
        &io,
        connect_sqe(1, 1, 127, 0),
        Some(connect_data(HOSTNQN, SUBNQN, cntlid)),
        1024,
    );
    ok(&c);
    Path { admin, io }
}

fn set_state(
    env: &Env,
    reg: &rpc::RpcRegistry,
    port: &str,
    state: &str,
    grp: u32,
) -> Result<serde_json::Value, rpc::RpcError> {
    rpc_call(
        env,
        reg,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": SUBNQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv4",
            "traddr": "127.0.0.1", "trsvcid": port}, "ana_state": state, "anagrpid": grp}),
    )
}

/// The ANA log page (RAE as given) as (group, state, NSIDs).
fn ana_log(env: &Env, p: &Path, rae: bool) -> Vec<(u32, u8, Vec<u32>)> {
    let numd = 1023u32;
    let cdw10 = 0x0c | (u32::from(rae) << 15) | (numd << 16);
    let (c, d) = env.cmd(
        &p.admin,
        sqe(0x02, 0x30, 0xffff_ffff, cdw10, 0, 0),
        None,
        4096,
    );
    ok(&c);
    let d = d.unwrap();
    let n = u16::from_le_bytes([d[8], d[9]]) as usize;
    let mut off = 16;
    let mut out = Vec::new();
    for _ in 0..n {
        let g = u32::from_le_bytes(d[off..off + 4].try_into().unwrap());
        let nn = u32::from_le_bytes(d[off + 4..off + 8].try_into().unwrap()) as usize;
        let state = d[off + 16];
        off += 32;
        let nsids = (0..nn)
            .map(|i| u32::from_le_bytes(d[off + i * 4..off + i * 4 + 4].try_into().unwrap()))
            .collect();
        off += nn * 4;
        out.push((g, state, nsids));
    }
    out
}

/// The ANA log page header CHGCNT and the first group descriptor's CHGCNT (RAE=1).
fn ana_chgcnt(env: &Env, p: &Path) -> (u64, u64) {
    let cdw10 = 0x0c | (1 << 15) | (15 << 16);
    let (c, d) = env.cmd(
        &p.admin,
        sqe(0x02, 0x3f, 0xffff_ffff, cdw10, 0, 0),
        None,
        64,
    );
    ok(&c);
    let d = d.unwrap();
    (
        u64::from_le_bytes(d[0..8].try_into().unwrap()),
        u64::from_le_bytes(d[24..32].try_into().unwrap()),
    )
}

fn write(env: &Env, p: &Path, nsid: u32, byte: u8) -> Status {
    let (c, _) = env.cmd(
        &p.io,
        sqe(0x01, 0x20, nsid, 0, 0, 0),
        Some(vec![byte; 512]),
        512,
    );
    c.status()
}

fn read(env: &Env, p: &Path, nsid: u32) -> (Status, Option<Vec<u8>>) {
    let (c, d) = env.cmd(&p.io, sqe(0x02, 0x21, nsid, 0, 0, 0), None, 512);
    (c.status(), d)
}

fn nuse(env: &Env, p: &Path, nsid: u32) -> u64 {
    let (c, d) = env.cmd(&p.admin, sqe(0x06, 0x31, nsid, 0, 0, 0), None, 4096);
    ok(&c);
    IdentifyNamespace::read_from_bytes(&d.unwrap())
        .unwrap()
        .nuse
        .get()
}

fn inaccessible() -> Status {
    PathStatus::ASYMMETRIC_ACCESS_INACCESSIBLE.into()
}

#[test]
fn each_listener_reports_its_own_ana_state_to_its_controllers() {
    let (env, addr2) = ana_env();
    let reg = rpc_registry(&env);
    let a = connect_via(&env, &env.addr);
    let b = connect_via(&env, &addr2);
    for p in [&a, &b] {
        assert_eq!(
            ana_log(&env, p, false),
            vec![(1, 1, vec![1]), (2, 1, vec![2])]
        );
        p.admin.submit(sqe(0x0c, 0x50, 0, 0, 0, 0), None, 0);
    }
    env.poll();
    assert_eq!(ana_chgcnt(&env, &b), (0, 0));
    assert_eq!(
        set_state(&env, &reg, "4421", "inaccessible", 1).unwrap(),
        json!(true)
    );
    // Only the controller on 4421 gets the ANA change notice.
    assert!(a.admin.take_response().is_none(), "no event on 4420");
    let (c, _) = b.admin.take_response().expect("ANA change AEN on 4421");
    ok(&c);
    assert_eq!(c.dw0.get(), AEN_ANA_CHANGE);
    // Every ANA change counts once (ANA log CHGCNT, header and group descriptor).
    assert_eq!(ana_chgcnt(&env, &b), (1, 1));
    assert_eq!(
        ana_log(&env, &a, true),
        vec![(1, 1, vec![1]), (2, 1, vec![2])]
    );
    assert_eq!(
        ana_log(&env, &b, true),
        vec![(1, 3, vec![1]), (2, 1, vec![2])]
    );
    // I/O on the inaccessible path: SCT 3 / SC 02h, the bdev is not written.
    assert_eq!(write(&env, &b, 1, 0xbb), inaccessible());
    let (s, _) = read(&env, &b, 1);
    assert_eq!(s, inaccessible());
    assert_eq!(inaccessible().sct.0, 3);
    let (s, d) = read(&env, &a, 1);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(
        d.unwrap(),
        vec![0u8; 512],
        "refused write never reached the bdev"
    );
    assert_eq!(
        write(&env, &b, 2, 0x22),
        Status::SUCCESS,
        "group 2 stays optimized"
    );
    assert_eq!(nuse(&env, &b, 1), 0);
    assert_eq!(nuse(&env, &a, 1), 1024);
    // Namespace-scoped features of the inaccessible namespace: path status too (SPDK);
    // Reservation Persistence of NSID 1 on the optimized path is answered.
    let (c, _) = env.cmd(&b.admin, sqe(0x0a, 0x32, 1, 0x83, 0, 0), None, 0);
    assert_eq!(c.status(), inaccessible());
    let (c, _) = env.cmd(&b.admin, sqe(0x09, 0x33, 1, 0x82, 0, 0), None, 0);
    assert_eq!(c.status(), inaccessible());
    let (c, _) = env.cmd(&b.admin, sqe(0x0a, 0x34, 2, 0x83, 0, 0), None, 0);
    ok(&c);
    let (c, _) = env.cmd(&a.admin, sqe(0x0a, 0x35, 1, 0x83, 0, 0), None, 0);
    ok(&c);
    // The notice stays masked until the log is read with RAE=0: another change with RAE
    // set reads gives no event; after an RAE=0 read the next change raises one.
    b.admin.submit(sqe(0x0c, 0x51, 0, 0, 0, 0), None, 0);
    env.poll();
    assert_eq!(
        set_state(&env, &reg, "4421", "non_optimized", 1).unwrap(),
        json!(true)
    );
    assert!(b.admin.take_response().is_none(), "masked until RAE=0 read");
    assert_eq!(
        ana_log(&env, &b, false),
        vec![(1, 2, vec![1]), (2, 1, vec![2])]
    );
    // Non-Optimized serves I/O.
    assert_eq!(write(&env, &b, 1, 0xb1), Status::SUCCESS);
    let (s, d) = read(&env, &a, 1);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(d.unwrap(), vec![0xb1; 512]);
    // anagrpid 0: every group of the listener.
    assert_eq!(
        set_state(&env, &reg, "4421", "Inaccessible", 0).unwrap(),
        json!(true)
    );
    let (c, _) = b.admin.take_response().expect("unmasked notice");
    assert_eq!(c.dw0.get(), AEN_ANA_CHANGE);
    assert_eq!(write(&env, &b, 2, 0x23), inaccessible());
    // Setting the same state again changes nothing and raises nothing.
    b.admin.submit(sqe(0x0c, 0x52, 0, 0, 0, 0), None, 0);
    ana_log(&env, &b, false);
    assert_eq!(
        set_state(&env, &reg, "4421", "inaccessible", 2).unwrap(),
        json!(true)
    );
    assert!(b.admin.take_response().is_none());
    // nvmf_subsystem_get_listeners shows each listener's states.
    let l = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_get_listeners",
        json!({"nqn": SUBNQN}),
    )
    .unwrap();
    let states = |i: usize| -> Vec<(u64, String)> {
        l[i]["ana_states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["ana_group"].as_u64().unwrap(),
                    s["ana_state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(states(0).len(), 32);
    assert!(states(0).iter().all(|(_, s)| s == "optimized"));
    assert_eq!(states(1)[0], (1, "inaccessible".to_string()));
    assert!(states(1).iter().all(|(_, s)| s == "inaccessible"));
    assert_eq!(l[1]["address"]["trsvcid"], json!("4421"));
    // save_config replays them after the listeners: one call per group not optimized.
    let cfg = nvmf::config_json(&env.tgt);
    let cfg = cfg.as_array().unwrap();
    let calls: Vec<&serde_json::Value> = cfg
        .iter()
        .filter(|c| c["method"] == "nvmf_subsystem_listener_set_ana_state")
        .collect();
    assert_eq!(calls.len(), 32);
    assert_eq!(
        *calls[0],
        json!({"method": "nvmf_subsystem_listener_set_ana_state", "params": {"nqn": SUBNQN,
            "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1",
                "trsvcid": "4421"}, "ana_state": "inaccessible", "anagrpid": 1}})
    );
    let first_call = cfg
        .iter()
        .position(|c| c["method"] == "nvmf_subsystem_listener_set_ana_state")
        .unwrap();
    let last_listener = cfg
        .iter()
        .rposition(|c| c["method"] == "nvmf_subsystem_add_listener")
        .unwrap();
    assert!(first_call > last_listener);
}

#[test]
fn set_ana_state_errors_as_spdk() {
    let env = setup();
    let reg = rpc_registry(&env);
    let err = |r: Result<serde_json::Value, rpc::RpcError>| {
        let e = r.unwrap_err();
        (e.code, e.message)
    };
    let ana_err = (-32603, "error setting ANA state: -22".to_string());
    // ANA reporting off.
    assert_eq!(err(set_state(&env, &reg, "4420", "optimized", 1)), ana_err);
    env.threads.set_current(0);
    env.tgt
        .with_subsystem(SUBNQN, |s| s.ana_reporting = true)
        .unwrap();
    assert_eq!(
        set_state(&env, &reg, "4420", "non_optimized", 32).unwrap(),
        json!(true)
    );
    assert_eq!(err(set_state(&env, &reg, "4420", "optimized", 33)), ana_err);
    assert_eq!(err(set_state(&env, &reg, "4499", "optimized", 1)), ana_err);
    assert_eq!(
        err(set_state(&env, &reg, "4420", "change", 1)),
        (-32602, "Invalid parameters".to_string())
    );
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": "nqn.2016-06.io.spdk:none", "listen_address": {"trtype": "TCP",
            "traddr": "127.0.0.1", "trsvcid": "4420"}, "ana_state": "optimized"}),
    );
    assert_eq!(
        err(r),
        (
            -32602,
            "Unable to find subsystem with NQN nqn.2016-06.io.spdk:none".to_string()
        )
    );
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": SUBNQN, "tgt_name": "other", "listen_address": {"trtype": "TCP",
            "traddr": "127.0.0.1", "trsvcid": "4420"}, "ana_state": "optimized"}),
    );
    assert_eq!(err(r), (-32603, "Unable to find a target.".to_string()));
    // nvmf_subsystem_add_listener ana_state: the listener starts in that state.
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_listener",
        json!({"nqn": SUBNQN, "ana_state": "inaccessible", "listen_address": {"trtype": "TCP",
            "traddr": "127.0.0.1", "trsvcid": "4430"}}),
    );
    assert_eq!(r.unwrap(), json!(true));
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_listener",
        json!({"nqn": SUBNQN, "ana_state": "bogus", "listen_address": {"trtype": "TCP",
            "traddr": "127.0.0.1", "trsvcid": "4431"}}),
    );
    assert_eq!(err(r), (-32602, "Invalid parameters".to_string()));
    let l = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_get_listeners",
        json!({"nqn": SUBNQN}),
    )
    .unwrap();
    assert_eq!(l[0]["ana_states"][31]["ana_state"], json!("non_optimized"));
    assert_eq!(l[0]["ana_states"][0]["ana_state"], json!("optimized"));
    assert_eq!(l[1]["ana_states"][0]["ana_state"], json!("inaccessible"));
    assert_eq!(l[1]["ana_states"][31]["ana_state"], json!("inaccessible"));
}

fn fused(mut s: nvme::spec::Sqe, f: u8) -> nvme::spec::Sqe {
    s.flags = (s.flags & !0x3) | f;
    s
}

#[test]
fn a_fused_pair_split_by_an_ana_change_fails_both_halves_without_writing() {
    let (env, addr2) = ana_env();
    let reg = rpc_registry(&env);
    let a = connect_via(&env, &env.addr);
    let b = connect_via(&env, &addr2);
    // Compare (fused first) on the optimized path waits for its second half.
    b.io.submit(fused(sqe(0x05, 40, 1, 0, 0, 0), 1), Some(vec![0; 512]), 512);
    env.poll();
    assert!(b.io.take_response().is_none());
    assert_eq!(
        set_state(&env, &reg, "4421", "inaccessible", 1).unwrap(),
        json!(true)
    );
    // The write (fused second) now finds the group inaccessible: path error, and the
    // waiting compare ends as Failed Fused; nothing is written.
    b.io.submit(
        fused(sqe(0x01, 41, 1, 0, 0, 0), 2),
        Some(vec![0x77; 512]),
        512,
    );
    env.poll();
    let mut got = [
        b.io.take_response().unwrap().0,
        b.io.take_response().unwrap().0,
    ];
    got.sort_by_key(|c| c.cid.get());
    assert_eq!(
        (got[0].cid.get(), got[0].status()),
        (
            40,
            Status::from(nvme::spec::GenericStatus::ABORTED_FAILED_FUSED).with_dnr()
        )
    );
    assert_eq!((got[1].cid.get(), got[1].status()), (41, inaccessible()));
    let (s, d) = read(&env, &a, 1);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(d.unwrap(), vec![0u8; 512]);
}

#[test]
fn namespace_with_anagrpid_above_max_nsid_is_refused_and_the_bdev_released() {
    let env = setup();
    env.threads.set_current(0);
    let reg = rpc_registry(&env);
    let b = unique("AnaGrp");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&b, 1024, 512)).unwrap();
    // The subsystem holds 32 namespaces: group 33 does not exist.
    let e = env
        .tgt
        .add_ns(SUBNQN, &b, 2, None, None, None, 33, false)
        .unwrap_err();
    assert!(matches!(e, nvmf::NvmfError::InvalidParam(_)), "{e}");
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        json!({"nqn": SUBNQN, "namespace": {"bdev_name": b, "nsid": 2, "anagrpid": 33}}),
    );
    let e = r.unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    // Nothing was added and the bdev is not claimed: group 32 is accepted.
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        json!({"nqn": SUBNQN, "namespace": {"bdev_name": b, "nsid": 2, "anagrpid": 32}}),
    );
    assert_eq!(r.unwrap(), json!(2));
    let ns = env
        .tgt
        .with_subsystem(SUBNQN, |s| s.namespaces[&2].anagrpid)
        .unwrap();
    assert_eq!(ns, 32);
}

#[test]
fn groups_past_a_listener_table_keep_its_state_in_queries_and_save_config() {
    let env = setup();
    env.threads.set_current(0);
    env.tgt
        .with_subsystem(SUBNQN, |s| {
            s.ana_reporting = true;
            s.max_namespaces = 2;
        })
        .unwrap();
    let addr2 = ListenAddr::tcp("127.0.0.1", "4422");
    env.tgt
        .add_listener_ext(SUBNQN, addr2.clone(), false, nvmf::AnaState::Inaccessible)
        .unwrap();
    // The subsystem grows past the table the listener was created with.
    let l = env
        .tgt
        .with_subsystem(SUBNQN, |s| {
            s.max_namespaces = 4;
            s.listeners
                .iter()
                .find(|l| l.addr.same_as(&addr2))
                .unwrap()
                .clone()
        })
        .unwrap();
    assert_eq!(l.ana_states.len(), 2);
    assert_eq!(l.ana_state(4), nvmf::AnaState::Inaccessible);
    let cfg = nvmf::config_json(&env.tgt);
    let groups: Vec<u64> = cfg
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["method"] == "nvmf_subsystem_listener_set_ana_state")
        .map(|c| {
            assert_eq!(c["params"]["ana_state"], json!("inaccessible"));
            assert_eq!(c["params"]["listen_address"]["trsvcid"], json!("4422"));
            c["params"]["anagrpid"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(groups, vec![1, 2, 3, 4]);
}
