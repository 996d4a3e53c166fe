//! Reservation persistence through power loss (SPDK `ptpl_file`): CPTPL=3 writes SPDK's
//! JSON record, a new Target adding the namespace with the same file restores the
//! registrants, holder and type, CPTPL=2 and Set Features 83h turn it off, bad files fail
//! the add with a clear error.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::identify::IdentifyNamespace;
use nvme::spec::{CommandSpecificStatus, GenericStatus, Status};
use nvmf::testing::TestHost;
use nvmf::{NsOpts, NvmfError};
use std::path::{Path, PathBuf};
use zerocopy::FromBytes;

/// The PTPL capable namespace (NSID 1 is setup()'s namespace without ptpl_file).
const NSID: u32 = 2;

struct Host {
    admin: TestHost,
    io: TestHost,
    cntlid: u16,
}

fn hostid(n: u8) -> [u8; 16] {
    std::array::from_fn(|i| n.wrapping_mul(0x10).wrapping_add(i as u8))
}

fn hostid_uuid(n: u8) -> String {
    uuid::Uuid::from_bytes(hostid(n)).to_string()
}

fn host(env: &Env, n: u8) -> Host {
    let nqn = format!("nqn.2014-08.org.nvmexpress:uuid:{n:02x}000000-1111-2222-3333-444444444444");
    let mut d = connect_data(&nqn, SUBNQN, 0xffff);
    d[..16].copy_from_slice(&hostid(n));
    let admin = env.connect_host();
    let (c, _) = env.cmd(&admin, connect_sqe(1, 0, 31, 0), Some(d.clone()), 1024);
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
    d[16..18].copy_from_slice(&cntlid.to_le_bytes());
    let io = env.connect_host();
    let (c, _) = env.cmd(&io, connect_sqe(1, 1, 127, 0), Some(d), 1024);
    ok(&c);
    Host { admin, io, cntlid }
}

fn keys(a: u64, b: u64) -> Vec<u8> {
    [a.to_le_bytes(), b.to_le_bytes()].concat()
}

fn register(env: &Env, h: &Host, action: u32, cptpl: u32, crkey: u64, nrkey: u64) -> Status {
    let cdw10 = action | (cptpl << 30);
    let (c, _) = env.cmd(
        &h.io,
        sqe(0x0d, 0x10, NSID, cdw10, 0, 0),
        Some(keys(crkey, nrkey)),
        16,
    );
    c.status()
}

fn acquire(env: &Env, h: &Host, rtype: u32, crkey: u64) -> Status {
    let (c, _) = env.cmd(
        &h.io,
        sqe(0x11, 0x11, NSID, rtype << 8, 0, 0),
        Some(keys(crkey, 0)),
        16,
    );
    c.status()
}

/// Extended Reservation Report: header (64) + up to 3 entries.
fn report(env: &Env, h: &Host) -> Vec<u8> {
    let (c, d) = env.cmd(&h.io, sqe(0x0e, 0x0e, NSID, 63, 1, 0), None, 256);
    ok(&c);
    d.unwrap()
}

fn header(gen_: u32, rtype: u8, regctl: u16, ptpls: bool) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[0..4].copy_from_slice(&gen_.to_le_bytes());
    h[4] = rtype;
    h[5..7].copy_from_slice(&regctl.to_le_bytes());
    h[9] = u8::from(ptpls);
    h
}

fn entry(cntlid: u16, holder: bool, rkey: u64, n: u8) -> Vec<u8> {
    let mut e = vec![0u8; 64];
    e[0..2].copy_from_slice(&cntlid.to_le_bytes());
    e[2] = u8::from(holder);
    e[8..16].copy_from_slice(&rkey.to_le_bytes());
    e[16..32].copy_from_slice(&hostid(n));
    e
}

fn padded(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(256, 0);
    v
}

fn new_bdev(env: &Env) -> (String, String) {
    env.threads.set_current(0);
    let name = unique("PtplMalloc");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&name, 256, 512)).unwrap();
    let uuid = bdev::get_by_name(&name).unwrap().uuid().to_string();
    (name, uuid)
}

fn add_ptpl_ns(env: &Env, bdev: &str, file: &Path) -> Result<u32, NvmfError> {
    env.threads.set_current(0);
    let r = env.tgt.add_ns_ext(
        SUBNQN,
        NsOpts {
            bdev_name: bdev.to_string(),
            nsid: NSID,
            ptpl_file: Some(file.to_path_buf()),
            ..NsOpts::default()
        },
    );
    env.update();
    r
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn get_ptpl(env: &Env, h: &Host, nsid: u32) -> (Status, u32) {
    let (c, _) = env.cmd(&h.admin, sqe(0x0a, 0x40, nsid, 0x83, 0, 0), None, 0);
    (c.status(), c.dw0.get())
}

fn set_ptpl(env: &Env, h: &Host, nsid: u32, on: bool) -> Status {
    let (c, _) = env.cmd(
        &h.admin,
        sqe(0x09, 0x41, nsid, 0x83, u32::from(on), 0),
        None,
        0,
    );
    c.status()
}

fn not_saveable() -> Status {
    CommandSpecificStatus::FEATURE_ID_NOT_SAVEABLE.into()
}

#[test]
fn cptpl3_writes_spdk_json_and_a_new_target_restores_the_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ns2.json");
    let env = setup();
    let (bdev, bdev_uuid) = new_bdev(&env);
    assert_eq!(add_ptpl_ns(&env, &bdev, &file).unwrap(), NSID);
    assert!(!file.exists(), "nothing written before persistence is on");
    let (a, b) = (host(&env, 1), host(&env, 2));
    // Register with CPTPL=3 (what Linux blkpr sends): persistence on, file written.
    assert_eq!(register(&env, &a, 0, 3, 0, 0xa1), Status::SUCCESS);
    assert_eq!(
        read(&file),
        format!(
            r#"{{"ptpl":true,"rtype":0,"crkey":0,"bdev_uuid":"{bdev_uuid}","holder_uuid":"","registrants":[{{"rkey":161,"host_uuid":"{}"}}]}}"#,
            hostid_uuid(1)
        )
    );
    assert_eq!(register(&env, &b, 0, 0, 0, 0xb2), Status::SUCCESS);
    assert_eq!(acquire(&env, &a, 3, 0xa1), Status::SUCCESS);
    let want = format!(
        r#"{{"ptpl":true,"rtype":3,"crkey":161,"bdev_uuid":"{bdev_uuid}","holder_uuid":"{}","registrants":[{{"rkey":161,"host_uuid":"{}"}},{{"rkey":178,"host_uuid":"{}"}}]}}"#,
        hostid_uuid(1),
        hostid_uuid(1),
        hostid_uuid(2)
    );
    assert_eq!(read(&file), want);
    // No temporary file left next to it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(
        report(&env, &b),
        padded(
            [
                header(2, 3, 2, true),
                entry(a.cntlid, true, 0xa1, 1),
                entry(b.cntlid, false, 0xb2, 2)
            ]
            .concat()
        )
    );
    // "Power loss": the namespace goes away, a new target adds it with the same file.
    env.threads.set_current(0);
    env.tgt.remove_ns(SUBNQN, NSID).unwrap();
    env.update();
    let env2 = setup();
    assert_eq!(add_ptpl_ns(&env2, &bdev, &file).unwrap(), NSID);
    let (a2, b2) = (host(&env2, 1), host(&env2, 2));
    // Same registrants (CNTLID FFFFh as SPDK: nobody registered through this target yet),
    // holder, type.
    assert_eq!(
        report(&env2, &b2),
        padded(
            [
                header(0, 3, 2, true),
                entry(0xffff, true, 0xa1, 1),
                entry(0xffff, false, 0xb2, 2)
            ]
            .concat()
        )
    );
    // The restored Write Exclusive - Registrants Only is enforced: a non-registrant may not
    // write, registrant B may.
    let c = host(&env2, 3);
    let (cq, _) = env2.cmd(
        &c.io,
        sqe(0x01, 0x20, NSID, 0, 0, 0),
        Some(vec![1; 512]),
        512,
    );
    assert_eq!(cq.status(), GenericStatus::RESERVATION_CONFLICT.into());
    let (cq, _) = env2.cmd(
        &b2.io,
        sqe(0x01, 0x21, NSID, 0, 0, 0),
        Some(vec![2; 512]),
        512,
    );
    ok(&cq);
    // The restored holder keeps its key; the file is unchanged by reads of the state.
    assert_eq!(read(&file), want);
    // CPTPL=2 (clear) by A: persistence off, the file is emptied as SPDK does.
    assert_eq!(register(&env2, &a2, 0, 2, 0, 0xa1), Status::SUCCESS);
    assert_eq!(read(&file), "");
    assert_eq!(&report(&env2, &b2)[..10], &header(1, 3, 2, false)[..10]);
    // Another restart: an empty file restores nothing.
    env2.threads.set_current(0);
    env2.tgt.remove_ns(SUBNQN, NSID).unwrap();
    env2.update();
    let env3 = setup();
    add_ptpl_ns(&env3, &bdev, &file).unwrap();
    let c3 = host(&env3, 3);
    assert_eq!(report(&env3, &c3), padded(header(0, 0, 0, false)));
}

#[test]
fn rescap_and_feature_83h_follow_the_ptpl_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.json");
    let env = setup();
    let (bdev, bdev_uuid) = new_bdev(&env);
    add_ptpl_ns(&env, &bdev, &file).unwrap();
    let a = host(&env, 1);
    let rescap = |nsid: u32| {
        let (c, d) = env.cmd(&a.admin, sqe(0x06, 5, nsid, 0, 0, 0), None, 4096);
        ok(&c);
        IdentifyNamespace::read_from_bytes(&d.unwrap())
            .unwrap()
            .rescap
    };
    assert_eq!(rescap(1), 0xfe, "no ptpl_file: PTPL bit clear");
    assert_eq!(rescap(NSID), 0xff, "ptpl_file: PTPL bit set");
    // CPTPL=3 on the namespace without a ptpl_file is still Invalid Field.
    let (c, _) = env.cmd(
        &a.io,
        sqe(0x0d, 0x10, 1, 3 << 30, 0, 0),
        Some(keys(0, 5)),
        16,
    );
    assert_eq!(c.status(), GenericStatus::INVALID_FIELD.into());
    assert_eq!(get_ptpl(&env, &a, NSID), (Status::SUCCESS, 0));
    assert_eq!(set_ptpl(&env, &a, NSID, true), not_saveable());
    assert_eq!(get_ptpl(&env, &a, NSID), (Status::SUCCESS, 1));
    assert_eq!(
        read(&file),
        format!(
            r#"{{"ptpl":true,"rtype":0,"crkey":0,"bdev_uuid":"{bdev_uuid}","holder_uuid":"","registrants":[]}}"#
        )
    );
    // A later Register (no CPTPL) is persisted because PTPL is on.
    assert_eq!(register(&env, &a, 0, 0, 0, 0x77), Status::SUCCESS);
    assert!(read(&file).contains(r#""registrants":[{"rkey":119,"#));
    // Namespace without ptpl_file: Invalid Field; all namespaces: only the capable one.
    assert_eq!(
        set_ptpl(&env, &a, 1, true),
        GenericStatus::INVALID_FIELD.into()
    );
    assert_eq!(get_ptpl(&env, &a, 1), (Status::SUCCESS, 0));
    assert_eq!(set_ptpl(&env, &a, 0xffff_ffff, false), not_saveable());
    assert_eq!(get_ptpl(&env, &a, NSID), (Status::SUCCESS, 0));
    assert_eq!(read(&file), "");
    let r = report(&env, &a);
    assert_eq!(r[9], 0, "PTPLS off");
    assert_eq!(&r[64..66], &a.cntlid.to_le_bytes());
}

#[test]
fn a_ptpl_file_that_cannot_be_written_fails_the_register_with_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("gone");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("f.json");
    let env = setup();
    let (bdev, _) = new_bdev(&env);
    add_ptpl_ns(&env, &bdev, &file).unwrap();
    std::fs::remove_dir(&sub).unwrap();
    let a = host(&env, 1);
    assert_eq!(
        register(&env, &a, 0, 3, 0, 0xa1),
        GenericStatus::INTERNAL_DEVICE_ERROR.into()
    );
    assert!(!file.exists());
}

fn expect_refused(env: &Env, bdev: &str, file: &Path, what: &str) {
    match add_ptpl_ns(env, bdev, file) {
        Err(NvmfError::InvalidParam(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("{} accepted: {other:?}", file.display()),
    }
}

#[test]
fn bad_ptpl_files_fail_the_add_and_release_the_bdev() {
    let dir = tempfile::tempdir().unwrap();
    let env = setup();
    let (bdev, bdev_uuid) = new_bdev(&env);
    let put = |name: &str, body: &[u8]| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let reg = |rkey: u64, n: u8| format!(r#"{{"rkey":{rkey},"host_uuid":"{}"}}"#, hostid_uuid(n));
    let rec = |rtype: u32, crkey: u64, holder: &str, regs: &str| {
        format!(
            r#"{{"ptpl":true,"rtype":{rtype},"crkey":{crkey},"bdev_uuid":"{bdev_uuid}","holder_uuid":"{holder}","registrants":[{regs}]}}"#
        )
    };
    expect_refused(&env, &bdev, dir.path(), "not a regular file");
    expect_refused(&env, &bdev, Path::new(""), "does not name a file");
    expect_refused(&env, &bdev, &dir.path().join(".."), "does not name a file");
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    expect_refused(&env, &bdev, &fifo, "not a regular file");
    expect_refused(
        &env,
        &bdev,
        &put("junk", b"{\"ptpl\": tru"),
        "invalid reservation JSON",
    );
    expect_refused(
        &env,
        &bdev,
        &put("array", b"[1,2]"),
        "invalid reservation JSON",
    );
    let other = rec(1, 0, "", "").replace(&bdev_uuid, "00000000-0000-0000-0000-000000000001");
    expect_refused(
        &env,
        &bdev,
        &put("other", other.as_bytes()),
        "is not the namespace's bdev",
    );
    let mut big = vec![b' '; (1 << 20) + 1];
    big[0] = b'{';
    expect_refused(&env, &bdev, &put("big", &big), "larger than 1048576");
    let h1 = hostid_uuid(1);
    let cases = [
        (
            "holder",
            rec(1, 0xa1, &hostid_uuid(9), &reg(0xa1, 1)),
            "holder_uuid",
        ),
        ("rtype", rec(9, 0xa1, &h1, &reg(0xa1, 1)), "invalid rtype 9"),
        ("crkey", rec(1, 0x55, &h1, &reg(0xa1, 1)), "crkey 0x55"),
        (
            "dup",
            rec(0, 0, "", &format!("{},{}", reg(1, 1), reg(2, 1))),
            "twice",
        ),
        ("zero", rec(0, 0, "", &reg(0, 1)), "key 0"),
        (
            "hostid",
            rec(0, 0, "", r#"{"rkey":1,"host_uuid":"nope"}"#),
            "not a UUID",
        ),
    ];
    for (name, body, what) in cases {
        expect_refused(&env, &bdev, &put(name, body.as_bytes()), what);
    }
    let many: Vec<String> = (1..=17).map(|n| reg(u64::from(n), n)).collect();
    expect_refused(
        &env,
        &bdev,
        &put("many", rec(0, 0, "", &many.join(",")).as_bytes()),
        "17 registrants",
    );
    // Nothing kept the bdev claimed: a good file (Exclusive Access - All Registrants, two
    // registrants) is accepted and restored with both registrants holding it.
    let good = put(
        "good",
        rec(6, 0, "", &format!("{},{}", reg(5, 1), reg(6, 2))).as_bytes(),
    );
    assert_eq!(add_ptpl_ns(&env, &bdev, &good).unwrap(), NSID);
    let a = host(&env, 1);
    assert_eq!(
        report(&env, &a),
        padded(
            [
                header(0, 6, 2, true),
                entry(0xffff, true, 5, 1),
                entry(0xffff, true, 6, 2)
            ]
            .concat()
        )
    );
}

#[test]
fn rpc_add_ns_takes_ptpl_file_and_save_config_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rpc.json");
    let env = setup();
    let (bdev, _) = new_bdev(&env);
    let reg = rpc_registry(&env);
    let r = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        serde_json::json!({"nqn": SUBNQN, "namespace": {"bdev_name": bdev, "nsid": 2,
            "ptpl_file": file.to_str().unwrap()}}),
    );
    assert_eq!(r.unwrap(), serde_json::json!(2));
    let cfg = nvmf::config_json(&env.tgt);
    let adds: Vec<&serde_json::Value> = cfg
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["method"] == "nvmf_subsystem_add_ns" && c["params"]["namespace"]["nsid"] == 2)
        .collect();
    assert_eq!(adds.len(), 1);
    assert_eq!(
        adds[0]["params"]["namespace"]["ptpl_file"],
        serde_json::json!(file.to_str().unwrap())
    );
    // A directory as ptpl_file: SPDK's -32602 Invalid parameters.
    let (bdev2, _) = new_bdev(&env);
    let e = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_ns",
        serde_json::json!({"nqn": SUBNQN, "namespace": {"bdev_name": bdev2,
            "ptpl_file": dir.path().to_str().unwrap()}}),
    )
    .unwrap_err();
    assert_eq!(e.code, -32602);
}

#[test]
fn feature_83h_for_all_namespaces_leaves_namespaces_masked_from_the_host_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (f2, f3) = (dir.path().join("f2.json"), dir.path().join("f3.json"));
    let env = setup();
    let (b2, _) = new_bdev(&env);
    add_ptpl_ns(&env, &b2, &f2).unwrap();
    let (b3, b3_uuid) = new_bdev(&env);
    env.threads.set_current(0);
    let r = env.tgt.add_ns_ext(
        SUBNQN,
        NsOpts {
            bdev_name: b3,
            nsid: 3,
            no_auto_visible: true,
            ptpl_file: Some(f3.clone()),
            ..NsOpts::default()
        },
    );
    assert_eq!(r.unwrap(), 3);
    let host2 = "nqn.2014-08.org.nvmexpress:uuid:02000000-1111-2222-3333-444444444444";
    env.tgt.ns_add_host(SUBNQN, 3, host2).unwrap();
    env.update();
    let (a, b) = (host(&env, 1), host(&env, 2));
    // B (which sees NSID 3) turns persistence on for it; A cannot name it.
    assert_eq!(set_ptpl(&env, &b, 3, true), not_saveable());
    assert_eq!(
        set_ptpl(&env, &a, 3, false),
        GenericStatus::INVALID_FIELD.into()
    );
    let on3 = format!(
        r#"{{"ptpl":true,"rtype":0,"crkey":0,"bdev_uuid":"{b3_uuid}","holder_uuid":"","registrants":[]}}"#
    );
    assert_eq!(read(&f3), on3);
    // A turns persistence on, then off, for "all namespaces": only NSID 2 follows.
    assert_eq!(set_ptpl(&env, &a, 0xffff_ffff, true), not_saveable());
    assert_eq!(get_ptpl(&env, &a, NSID), (Status::SUCCESS, 1));
    assert_eq!(set_ptpl(&env, &a, 0xffff_ffff, false), not_saveable());
    assert_eq!(get_ptpl(&env, &a, NSID), (Status::SUCCESS, 0));
    assert_eq!(read(&f2), "");
    assert_eq!(get_ptpl(&env, &b, 3), (Status::SUCCESS, 1));
    assert_eq!(read(&f3), on3);
    // B's "all namespaces" reaches both.
    assert_eq!(set_ptpl(&env, &b, 0xffff_ffff, false), not_saveable());
    assert_eq!(get_ptpl(&env, &b, 3), (Status::SUCCESS, 0));
    assert_eq!(read(&f3), "");
}

#[test]
fn relative_and_dot_dot_ptpl_files_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let env = setup();
    let (bdev, _) = new_bdev(&env);
    expect_refused(
        &env,
        &bdev,
        Path::new("ptpl.json"),
        "ptpl_file 'ptpl.json' is not an absolute path",
    );
    expect_refused(
        &env,
        &bdev,
        Path::new("./sub/ptpl.json"),
        "ptpl_file './sub/ptpl.json' is not an absolute path",
    );
    let up = dir.path().join("a/../f.json");
    expect_refused(
        &env,
        &bdev,
        &up,
        &format!("ptpl_file '{}' has a '..' component", up.display()),
    );
    // Through the RPC: SPDK's answer for a failed add, and nothing created.
    let reg = rpc_registry(&env);
    for f in ["nologin", "../x.json"] {
        let e = rpc_call(
            &env,
            &reg,
            "nvmf_subsystem_add_ns",
            serde_json::json!({"nqn": SUBNQN, "namespace": {"bdev_name": bdev, "ptpl_file": f}}),
        )
        .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    }
    assert!(!Path::new("nologin").exists());
    // The bdev was released: an absolute path still works.
    let good = dir.path().join("f.json");
    assert_eq!(add_ptpl_ns(&env, &bdev, &good).unwrap(), NSID);
}
