//! NVMe in-band authentication (DH-HMAC-CHAP) on the target, driven by a host-side
//! implementation in this file over the in-memory transport; the keyring RPCs; save_config.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::{Cqe, GenericStatus, Sct, Sqe, Status};
use nvmf::auth::{
    self, DhGroup, DhKey, Digest, FAIL_DHGROUP_UNUSABLE, FAIL_FAILED, FAIL_HASH_UNUSABLE,
    FAIL_INCORRECT_PAYLOAD, FAIL_INCORRECT_PROTOCOL_MESSAGE, FAIL_SCC_MISMATCH,
};
use nvmf::keyring::DhchapKey;
use nvmf::testing::TestHost;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const AUTH_REQUIRED: Status = Status::new(Sct::COMMAND_SPECIFIC, 0x91);

fn key(hmac: u8, len: usize, seed: u8) -> DhchapKey {
    DhchapKey {
        hmac,
        secret: (0..len).map(|i| seed.wrapping_add(i as u8)).collect(),
    }
}

/// Writes `text` to a 0600 file in `dir` and adds it to the keyring as `name`.
fn add_key_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = path.to_str().unwrap().to_string();
    nvmf::keyring::add_file_key(name, &p).unwrap();
    p
}

fn registry(env: &Env) -> std::rc::Rc<rpc::RpcRegistry> {
    let reg = rpc_registry(env);
    nvmf::keyring::register_rpcs(&reg);
    reg
}

/// Key names unique across the tests of this process (the keyring is process-global).
fn kname(base: &str) -> String {
    unique(base)
}

fn auth_sqe(cid: u16, send: bool, len: u32, secp: u8) -> Sqe {
    let mut s = Sqe::new(0x7f, cid);
    // FCTYPE is byte 4 (the NSID dword of a plain SQE).
    s.nsid = u32::from(if send { 0x05u8 } else { 0x06 }).into();
    s.cdw10 = ((u32::from(secp) << 24) | (1 << 16) | (1 << 8)).into();
    s.cdw11 = len.into();
    s
}

fn send(env: &Env, h: &TestHost, cid: u16, msg: Vec<u8>) -> Cqe {
    let len = msg.len() as u32;
    env.cmd(h, auth_sqe(cid, true, len, 0xe9), Some(msg), len).0
}

fn recv(env: &Env, h: &TestHost, cid: u16, al: u32) -> (Cqe, Vec<u8>) {
    let (c, d) = env.cmd(h, auth_sqe(cid, false, al, 0xe9), None, al);
    (c, d.unwrap_or_default())
}

fn negotiate(tid: u16, hashes: &[u8], groups: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 8 + 64];
    m[4..6].copy_from_slice(&tid.to_le_bytes());
    m[7] = 1;
    m[8] = 1; // DH-HMAC-CHAP
    m[10] = hashes.len() as u8;
    m[11] = groups.len() as u8;
    m[12..12 + hashes.len()].copy_from_slice(hashes);
    m[42..42 + groups.len()].copy_from_slice(groups);
    m
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// What the host side does with a challenge.
struct HostCfg<'a> {
    hostnqn: &'a str,
    key: DhchapKey,
    /// Set: ask the controller to authenticate itself with this key (bidirectional).
    ctrl_key: Option<DhchapKey>,
    hashes: Vec<u8>,
    groups: Vec<u8>,
    tid: u16,
}

#[derive(Debug, PartialEq, Eq)]
enum HostResult {
    /// Authenticated (with the digest and group the controller chose).
    Ok(u8, u8),
    /// The controller answered AUTH_Failure1 with this reason code explanation.
    Failure1(u8),
    /// The controller's response R2 did not match: the host sent AUTH_Failure2.
    CtrlMismatch,
}

fn failure1_reason(env: &Env, h: &TestHost, cid: u16, tid: u16) -> u8 {
    let (c, m) = recv(env, h, cid, 4096);
    ok(&c);
    assert_eq!(m.len(), 8, "AUTH_Failure1 is 8 bytes");
    assert_eq!(&m[..2], &[0x00, 0xf1]);
    assert_eq!(u16_at(&m, 4), tid);
    assert_eq!(m[6], 1, "reason code: authentication failure");
    m[7]
}

/// The whole host side of DH-HMAC-CHAP (Linux `nvme_auth` host steps).
fn authenticate(env: &Env, h: &TestHost, cfg: &HostCfg) -> HostResult {
    let tid = cfg.tid;
    ok(&send(env, h, 10, negotiate(tid, &cfg.hashes, &cfg.groups)));
    let (c, ch) = recv(env, h, 11, 4096);
    ok(&c);
    if ch[..2] == [0x00, 0xf1] {
        return HostResult::Failure1(ch[7]);
    }
    assert_eq!(&ch[..2], &[0x01, 0x01], "expected a challenge");
    assert_eq!(u16_at(&ch, 4), tid);
    let hl = usize::from(ch[6]);
    let digest = Digest::from_id(ch[8]).unwrap();
    assert_eq!(digest.len(), hl);
    let group = DhGroup::from_id(ch[9]).unwrap();
    let dhvlen = usize::from(u16_at(&ch, 10));
    let seqnum = u32_at(&ch, 12);
    assert_eq!(ch.len(), 16 + hl + dhvlen);
    assert_eq!(dhvlen, group.size());
    let c1 = &ch[16..16 + hl];
    let (z, host_pub) = if group == DhGroup::Null {
        (None, Vec::new())
    } else {
        let k = DhKey::generate(group).unwrap();
        (
            Some(k.shared_secret(&ch[16 + hl..]).unwrap()),
            k.public().to_vec(),
        )
    };
    let r1 = auth::dhchap_response(
        digest,
        &cfg.key,
        "HostHost",
        seqnum,
        tid,
        0,
        cfg.hostnqn,
        SUBNQN,
        z.as_deref(),
        c1,
    );
    let c2: Vec<u8> = (0..hl).map(|i| 0x30 + i as u8).collect();
    let seqnum2: u32 = 0x0102_0304;
    let mut reply = vec![0u8; 16];
    reply[0] = 1;
    reply[1] = 2;
    reply[4..6].copy_from_slice(&tid.to_le_bytes());
    reply[6] = hl as u8;
    reply[8] = u8::from(cfg.ctrl_key.is_some());
    reply[10..12].copy_from_slice(&(host_pub.len() as u16).to_le_bytes());
    if cfg.ctrl_key.is_some() {
        reply[12..16].copy_from_slice(&seqnum2.to_le_bytes());
    }
    reply.extend_from_slice(&r1);
    reply.extend_from_slice(&c2);
    reply.extend_from_slice(&host_pub);
    ok(&send(env, h, 12, reply));
    let (c, s1) = recv(env, h, 13, 4096);
    ok(&c);
    if s1[..2] == [0x00, 0xf1] {
        return HostResult::Failure1(s1[7]);
    }
    assert_eq!(&s1[..2], &[0x01, 0x03], "expected success1");
    assert_eq!(u16_at(&s1, 4), tid);
    assert_eq!(usize::from(s1[6]), hl);
    let Some(ck) = &cfg.ctrl_key else {
        assert_eq!(s1.len(), 16);
        assert_eq!(s1[8], 0, "RVALID without a host challenge");
        return HostResult::Ok(digest.id(), group.id());
    };
    assert_eq!(s1.len(), 16 + hl);
    assert_eq!(s1[8], 1, "RVALID");
    let r2 = auth::dhchap_response(
        digest,
        ck,
        "Controller",
        seqnum2,
        tid,
        0,
        SUBNQN,
        cfg.hostnqn,
        z.as_deref(),
        &c2,
    );
    if s1[16..] != r2[..] {
        let mut f = vec![0u8; 8];
        f[1] = 0xf0;
        f[4..6].copy_from_slice(&tid.to_le_bytes());
        f[6] = 1;
        f[7] = FAIL_FAILED;
        ok(&send(env, h, 14, f));
        return HostResult::CtrlMismatch;
    }
    let mut s2 = vec![0u8; 16];
    s2[0] = 1;
    s2[1] = 4;
    s2[4..6].copy_from_slice(&tid.to_le_bytes());
    ok(&send(env, h, 14, s2));
    HostResult::Ok(digest.id(), group.id())
}

/// A target whose subsystem requires `HOSTNQN` to authenticate with `hkey` (and `ckey`).
fn auth_env(hkey: &DhchapKey, ckey: Option<&DhchapKey>) -> (Env, tempfile::TempDir) {
    let env = setup();
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(&env);
    let hn = kname("hkey");
    add_key_file(&dir, &hn, &hkey.to_text());
    let mut p = json!({"nqn": SUBNQN, "host": HOSTNQN, "dhchap_key": hn});
    if let Some(ck) = ckey {
        let cn = kname("ckey");
        add_key_file(&dir, &cn, &format!("{}\n", ck.to_text()));
        p["dhchap_ctrlr_key"] = json!(cn);
    }
    assert_eq!(
        rpc_call(&env, &reg, "nvmf_subsystem_add_host", p).unwrap(),
        json!(true)
    );
    env.update();
    (env, dir)
}

/// Admin Connect; asserts AUTHREQ.ATR is set.
fn connect_admin_auth(env: &Env) -> (TestHost, u16) {
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data(HOSTNQN, SUBNQN, 0xffff)),
        1024,
    );
    ok(&c);
    assert_eq!(c.dw0.get() >> 16, 1, "AUTHREQ.ATR set");
    (h, c.dw0.get() as u16)
}

fn cfg(key: DhchapKey, hashes: &[u8], groups: &[u8]) -> HostCfg<'static> {
    HostCfg {
        hostnqn: HOSTNQN,
        key,
        ctrl_key: None,
        hashes: hashes.to_vec(),
        groups: groups.to_vec(),
        tid: 0x1234,
    }
}

fn enable_and_identify(env: &Env, h: &TestHost) {
    ok(&env
        .cmd(
            h,
            prop_set(2, PropertyOffset::CC, u64::from(CC_ENABLE)),
            None,
            0,
        )
        .0);
    let (c, d) = env.cmd(h, sqe(0x06, 3, 0, 1, 0, 0), None, 4096);
    ok(&c);
    assert_eq!(d.unwrap().len(), 4096);
}

#[test]
fn null_dh_sha256_authenticates_then_admin_commands_work() {
    let k = key(1, 32, 1);
    let (env, _d) = auth_env(&k, None);
    let (h, _) = connect_admin_auth(&env);
    assert_eq!(
        authenticate(&env, &h, &cfg(k, &[1], &[0])),
        HostResult::Ok(1, 0)
    );
    enable_and_identify(&env, &h);
}

#[test]
fn ffdhe2048_sha512_authenticates() {
    let k = key(3, 64, 9);
    let (env, _d) = auth_env(&k, None);
    let (h, _) = connect_admin_auth(&env);
    assert_eq!(
        authenticate(&env, &h, &cfg(k, &[1, 3], &[1])),
        HostResult::Ok(3, 1)
    );
    enable_and_identify(&env, &h);
}

#[test]
fn strongest_offered_hash_and_group_are_chosen() {
    let k = key(0, 48, 5);
    let (env, _d) = auth_env(&k, None);
    let (h, _) = connect_admin_auth(&env);
    // The host offers SHA-256/384 and null/ffdhe2048: the target picks SHA-384, ffdhe2048.
    assert_eq!(
        authenticate(&env, &h, &cfg(k, &[1, 2], &[0, 1])),
        HostResult::Ok(2, 1)
    );
}

#[test]
fn bidirectional_authentication_with_controller_key() {
    let k = key(2, 48, 3);
    let ck = key(1, 32, 77);
    let (env, _d) = auth_env(&k, Some(&ck));
    let (h, _) = connect_admin_auth(&env);
    let mut c = cfg(k, &[2], &[0, 1]);
    c.ctrl_key = Some(ck);
    assert_eq!(authenticate(&env, &h, &c), HostResult::Ok(2, 1));
    enable_and_identify(&env, &h);
}

#[test]
fn host_rejecting_controller_response_fails_the_queue() {
    let k = key(1, 32, 3);
    let ck = key(1, 32, 77);
    let (env, _d) = auth_env(&k, Some(&ck));
    let (h, _) = connect_admin_auth(&env);
    let mut c = cfg(k, &[1], &[0]);
    c.ctrl_key = Some(key(1, 32, 78));
    assert_eq!(authenticate(&env, &h, &c), HostResult::CtrlMismatch);
    env.threads.advance_time(Duration::from_millis(1));
    env.poll();
    assert!(h.closed_by_target());
}

#[test]
fn wrong_key_fails_and_the_controller_is_gone() {
    let (env, _d) = auth_env(&key(1, 32, 1), None);
    let reg = registry(&env);
    let (h, _) = connect_admin_auth(&env);
    assert_eq!(
        authenticate(&env, &h, &cfg(key(1, 32, 2), &[1], &[0])),
        HostResult::Failure1(FAIL_FAILED)
    );
    // Still not usable until the disconnect (100 ms later, as SPDK).
    let (c, _) = env.cmd(
        &h,
        prop_set(2, PropertyOffset::CC, u64::from(CC_ENABLE)),
        None,
        0,
    );
    assert_eq!(c.status(), AUTH_REQUIRED);
    env.threads.advance_time(Duration::from_millis(150));
    env.poll();
    assert!(h.closed_by_target());
    let ctrlrs = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_get_controllers",
        json!({"nqn": SUBNQN}),
    )
    .unwrap();
    assert_eq!(ctrlrs, json!([]));
}

#[test]
fn commands_before_authentication_are_refused() {
    let k = key(1, 32, 1);
    let (env, _d) = auth_env(&k, None);
    let (h, _) = connect_admin_auth(&env);
    let (c, _) = env.cmd(
        &h,
        prop_get(2, PropertySize::Eight, PropertyOffset::CAP),
        None,
        0,
    );
    assert_eq!(c.status(), AUTH_REQUIRED);
    let (c, _) = env.cmd(&h, sqe(0x06, 3, 0, 1, 0, 0), None, 4096);
    assert_eq!(c.status(), AUTH_REQUIRED);
    // The queue still authenticates afterwards.
    assert_eq!(
        authenticate(&env, &h, &cfg(k, &[1], &[0])),
        HostResult::Ok(1, 0)
    );
    enable_and_identify(&env, &h);
}

#[test]
fn host_without_key_is_not_asked_to_authenticate() {
    let (env, _d) = auth_env(&key(1, 32, 1), None);
    let (h, _) = admin_connect(
        &env,
        "nqn.2014-08.org.nvmexpress:uuid:77777777-2222-3333-4444-555555555555",
        0,
    );
    let (c, _) = env.cmd(&h, sqe(0x06, 3, 0, 1, 0, 0), None, 4096);
    ok(&c);
}

#[test]
fn io_queue_authenticates_too() {
    let k = key(1, 32, 1);
    let (env, _d) = auth_env(&k, None);
    let (a, cntlid) = connect_admin_auth(&env);
    assert_eq!(
        authenticate(&env, &a, &cfg(k.clone(), &[1], &[0])),
        HostResult::Ok(1, 0)
    );
    enable_and_identify(&env, &a);
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 1, 127, 0),
        Some(connect_data(HOSTNQN, SUBNQN, cntlid)),
        1024,
    );
    ok(&c);
    assert_eq!(c.dw0.get(), u32::from(cntlid) | 1 << 16);
    // Read of LBA 0 before authentication.
    let (c, _) = env.cmd(&h, sqe(0x02, 5, 1, 0, 0, 0), None, 512);
    assert_eq!(c.status(), AUTH_REQUIRED);
    assert_eq!(
        authenticate(&env, &h, &cfg(k, &[1], &[1])),
        HostResult::Ok(1, 1)
    );
    let (c, d) = env.cmd(&h, sqe(0x02, 6, 1, 0, 0, 0), None, 512);
    ok(&c);
    assert_eq!(d.unwrap().len(), 512);
}

#[test]
fn malformed_messages_get_exact_failure_reasons() {
    let k = key(1, 32, 1);
    let (env, _d) = auth_env(&k, None);
    type Case = (&'static str, fn(&Env, &TestHost, &DhchapKey) -> u8, u8);
    let cases: [Case; 7] = [
        (
            "short",
            |e, h, _| {
                ok(&send(e, h, 10, vec![0, 0]));
                failure1_reason(e, h, 11, 0)
            },
            FAIL_INCORRECT_PAYLOAD,
        ),
        (
            "bad hash id",
            |e, h, _| {
                ok(&send(e, h, 10, negotiate(7, &[9], &[0])));
                failure1_reason(e, h, 11, 7)
            },
            FAIL_HASH_UNUSABLE,
        ),
        (
            "bad dh group",
            |e, h, _| {
                ok(&send(e, h, 10, negotiate(7, &[1], &[6])));
                failure1_reason(e, h, 11, 7)
            },
            FAIL_DHGROUP_UNUSABLE,
        ),
        (
            "secure channel",
            |e, h, _| {
                let mut m = negotiate(7, &[1], &[0]);
                m[6] = 1;
                ok(&send(e, h, 10, m));
                failure1_reason(e, h, 11, 7)
            },
            FAIL_SCC_MISMATCH,
        ),
        (
            "negotiate length",
            |e, h, _| {
                let mut m = negotiate(7, &[1], &[0]);
                m.push(0);
                ok(&send(e, h, 10, m));
                failure1_reason(e, h, 11, 7)
            },
            FAIL_INCORRECT_PAYLOAD,
        ),
        (
            "reply before negotiate",
            |e, h, _| {
                let mut m = vec![0u8; 16 + 64];
                m[0] = 1;
                m[1] = 2;
                m[6] = 32;
                ok(&send(e, h, 10, m));
                failure1_reason(e, h, 11, 0)
            },
            FAIL_INCORRECT_PROTOCOL_MESSAGE,
        ),
        (
            "bad transaction id",
            |e, h, k| {
                ok(&send(e, h, 10, negotiate(7, &[1], &[0])));
                let (c, ch) = recv(e, h, 11, 4096);
                ok(&c);
                let r1 = auth::dhchap_response(
                    Digest::Sha256,
                    k,
                    "HostHost",
                    u32_at(&ch, 12),
                    8,
                    0,
                    HOSTNQN,
                    SUBNQN,
                    None,
                    &ch[16..48],
                );
                let mut m = vec![0u8; 16];
                m[0] = 1;
                m[1] = 2;
                m[4] = 8; // T_ID 8, negotiated 7
                m[6] = 32;
                m.extend_from_slice(&r1);
                m.extend_from_slice(&[0; 32]);
                ok(&send(e, h, 12, m));
                failure1_reason(e, h, 13, 7)
            },
            FAIL_INCORRECT_PAYLOAD,
        ),
    ];
    for (name, run, want) in cases {
        let (h, _) = connect_admin_auth(&env);
        assert_eq!(run(&env, &h, &k), want, "case {name}");
        env.threads.advance_time(Duration::from_millis(150));
        env.poll();
        assert!(h.closed_by_target(), "case {name}: queue disconnected");
    }
}

#[test]
fn bad_command_fields_are_invalid_field_with_dnr() {
    let k = key(1, 32, 1);
    let (env, _d) = auth_env(&k, None);
    let (h, _) = connect_admin_auth(&env);
    let m = negotiate(1, &[1], &[0]);
    let len = m.len() as u32;
    let bad = Status::from(GenericStatus::INVALID_FIELD).with_dnr();
    // Security protocol other than E9h.
    let (c, _) = env.cmd(&h, auth_sqe(10, true, len, 0xea), Some(m.clone()), len);
    assert_eq!(c.status(), bad);
    // Transfer length different from the data length.
    let (c, _) = env.cmd(&h, auth_sqe(11, true, len + 4, 0xe9), Some(m), len);
    assert_eq!(c.status(), bad);
    // The transaction can still run.
    assert_eq!(
        authenticate(&env, &h, &cfg(k, &[1], &[0])),
        HostResult::Ok(1, 0)
    );
}

#[test]
fn stalled_authentication_times_out() {
    let (env, _d) = auth_env(&key(1, 32, 1), None);
    let (h, _) = connect_admin_auth(&env);
    ok(&send(&env, &h, 10, negotiate(1, &[1], &[0])));
    env.threads.advance_time(Duration::from_secs(119));
    env.poll();
    assert!(!h.closed_by_target());
    env.threads.advance_time(Duration::from_secs(2));
    env.poll();
    assert!(h.closed_by_target());
}

#[test]
fn keyring_rpcs_check_files_and_answer_as_spdk() {
    let env = setup();
    let reg = registry(&env);
    let dir = tempfile::tempdir().unwrap();
    let name = kname("k");
    let path = dir.path().join("key");
    std::fs::write(&path, key(0, 32, 1).to_text()).unwrap();
    let p = path.to_str().unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = rpc_call(
        &env,
        &reg,
        "keyring_file_add_key",
        json!({"name": name, "path": p}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-1, "Operation not permitted")
    );
    let e = rpc_call(
        &env,
        &reg,
        "keyring_file_add_key",
        json!({"name": name, "path": "relative/key"}),
    )
    .unwrap_err();
    assert_eq!(e.code, -1);
    let e = rpc_call(
        &env,
        &reg,
        "keyring_file_add_key",
        json!({"name": name, "path": "/nonexistent/key"}),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-2, "No such file or directory")
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        rpc_call(
            &env,
            &reg,
            "keyring_file_add_key",
            json!({"name": name, "path": p})
        )
        .unwrap(),
        json!(true)
    );
    let e = rpc_call(
        &env,
        &reg,
        "keyring_file_add_key",
        json!({"name": name, "path": p}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-17, "File exists"));
    let keys = rpc_call(&env, &reg, "keyring_get_keys", json!({})).unwrap();
    let mine: Vec<&Value> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == json!(name))
        .collect();
    assert_eq!(
        mine,
        [
            &json!({"name": name, "module": "keyring_file", "removed": false,
                 "probed": false, "refcnt": 1, "path": p})
        ]
    );
    // A host naming the key holds one more reference (SPDK refcnt).
    let host = "nqn.2014-08.org.nvmexpress:uuid:99999999-2222-3333-4444-555555555555";
    rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_host",
        json!({"nqn": SUBNQN, "host": host, "dhchap_key": name}),
    )
    .unwrap();
    env.update();
    let refcnt = |env: &Env| {
        rpc_call(env, &reg, "keyring_get_keys", json!({}))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == json!(name))
            .unwrap()["refcnt"]
            .clone()
    };
    assert_eq!(refcnt(&env), json!(2));
    rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_remove_host",
        json!({"nqn": SUBNQN, "host": host}),
    )
    .unwrap();
    env.update();
    assert_eq!(refcnt(&env), json!(1));
    assert_eq!(
        rpc_call(&env, &reg, "keyring_file_remove_key", json!({"name": name})).unwrap(),
        json!(true)
    );
    let e = rpc_call(&env, &reg, "keyring_file_remove_key", json!({"name": name})).unwrap_err();
    assert_eq!(e.code, -126);
}

#[test]
fn add_host_key_errors() {
    let env = setup();
    let reg = registry(&env);
    let dir = tempfile::tempdir().unwrap();
    let host = "nqn.2014-08.org.nvmexpress:uuid:88888888-2222-3333-4444-555555555555";
    let e = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_host",
        json!({"nqn": SUBNQN, "host": host, "dhchap_key": "no-such-key"}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
    // A key file whose CRC is wrong.
    let good = key(1, 32, 4).to_text();
    let bad_name = kname("bad");
    let mut raw = key(1, 32, 4).secret;
    raw.extend_from_slice(&[0, 0, 0, 0]);
    use base64::Engine;
    let bad = format!(
        "DHHC-1:01:{}:",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    add_key_file(&dir, &bad_name, &bad);
    let e = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_host",
        json!({"nqn": SUBNQN, "host": host, "dhchap_key": bad_name}),
    )
    .unwrap_err();
    assert_eq!(e.code, -32602);
    assert!(e.message.contains("key CRC mismatch"), "{}", e.message);
    // A controller key without a host key.
    let cn = kname("c");
    add_key_file(&dir, &cn, &good);
    let e = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_add_host",
        json!({"nqn": SUBNQN, "host": host, "dhchap_ctrlr_key": cn}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "Invalid parameters"));
}

#[test]
fn save_config_round_trip_keeps_keys_and_hosts() {
    let hk = key(1, 32, 1);
    let ck = key(2, 48, 2);
    let (env, _dir) = auth_env(&hk, Some(&ck));
    let cfg1 = nvmf::config_json(&env.tgt);
    let host_call = |cfg: &Value| -> Value {
        cfg.as_array()
            .unwrap()
            .iter()
            .find(|c| c["method"] == "nvmf_subsystem_add_host")
            .unwrap()["params"]
            .clone()
    };
    let h1 = host_call(&cfg1);
    let hname = h1["dhchap_key"].as_str().unwrap().to_string();
    let cname = h1["dhchap_ctrlr_key"].as_str().unwrap().to_string();
    let ring: Vec<Value> = nvmf::keyring::config_json()
        .into_iter()
        .filter(|c| c["params"]["name"] == json!(hname) || c["params"]["name"] == json!(cname))
        .collect();
    assert_eq!(ring.len(), 2);
    assert!(ring.iter().all(|c| c["method"] == "keyring_file_add_key"));
    // Replay into a fresh target after the keys left the ring.
    nvmf::keyring::remove_key(&hname).unwrap();
    nvmf::keyring::remove_key(&cname).unwrap();
    let env2 = setup();
    let reg2 = registry(&env2);
    for c in &ring {
        rpc_call(&env2, &reg2, "keyring_file_add_key", c["params"].clone()).unwrap();
    }
    rpc_call(&env2, &reg2, "nvmf_subsystem_add_host", h1.clone()).unwrap();
    env2.update();
    assert_eq!(host_call(&nvmf::config_json(&env2.tgt)), h1);
    let subs = rpc_call(&env2, &reg2, "nvmf_get_subsystems", json!({})).unwrap();
    let hosts = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["nqn"] == SUBNQN)
        .unwrap()["hosts"]
        .clone();
    assert_eq!(
        hosts,
        json!([{"nqn": HOSTNQN, "dhchap_key": hname, "dhchap_ctrlr_key": cname}])
    );
    // And the replayed keys authenticate.
    let (h, _) = connect_admin_auth(&env2);
    let mut c = cfg(hk, &[1], &[0]);
    c.ctrl_key = Some(ck);
    assert_eq!(authenticate(&env2, &h, &c), HostResult::Ok(1, 0));
}

// Known answers computed independently with Python's hashlib/hmac from the formulas of the
// Linux kernel (drivers/nvme/common/auth.c: nvme_auth_transform_key,
// nvme_auth_augmented_challenge; drivers/nvme/host/auth.c:
// nvme_auth_dhchap_setup_host_response, nvme_auth_dhchap_setup_ctrl_response) and NVMe Base
// 2.0 section 8.13.5.8 (secret transformation) / 8.13.5.4-5 (response values):
//   K' = HMAC_hh(K, nqn1 || "NVMe-over-Fabrics")
//   Ca = HMAC_H(H(Z), C) with a DH secret Z, else C
//   R  = HMAC_H(K', Ca || le32(S) || le16(T_ID) || u8(SC_C) || role || nqn1 || 00h || nqn2)
// and Python's pow(2, x, p) with the RFC 7919 ffdhe2048 prime.

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn known_answer_host_response_sha256_null_group() {
    let k = DhchapKey {
        hmac: 1,
        secret: (0u8..32).collect(),
    };
    assert_eq!(
        hex(&auth::transform_key(&k, HOSTNQN)),
        "6ce1e4ea31e8331a4fe5826bfde17a5cd386b8f0338748919e279ba6c55bf727"
    );
    let c: Vec<u8> = (0xa0u8..0xc0).collect();
    let r = auth::dhchap_response(
        Digest::Sha256,
        &k,
        "HostHost",
        0x1234_5678,
        0x0102,
        0,
        HOSTNQN,
        SUBNQN,
        None,
        &c,
    );
    assert_eq!(
        hex(&r),
        "a7efd4fc4b08886750039b8d64108ba5abc84b2bfd5e2a88c00dd9631a3a213c"
    );
}

#[test]
fn known_answer_controller_response_sha512_with_dh_secret() {
    let k = DhchapKey {
        hmac: 2,
        secret: (0u8..48).collect(),
    };
    let c: Vec<u8> = (0x40u8..0x80).collect();
    let z = vec![0x5a; 256];
    let r = auth::dhchap_response(
        Digest::Sha512,
        &k,
        "Controller",
        7,
        0xbeef,
        0,
        SUBNQN,
        HOSTNQN,
        Some(&z),
        &c,
    );
    assert_eq!(
        hex(&r),
        "667be4159640b2ab7a7eff8afce74755766898a3dc08585aa1601fc5bf384c94\
         8e251ec2ba1f461fc5f38214ad42b8d09101f0dba03306e9760e258494953d74"
    );
}

#[test]
fn known_answer_ffdhe2048_exchange() {
    let x: Vec<u8> = (1u8..65).collect();
    let y: Vec<u8> = (65u8..129).collect();
    let a = DhKey::from_private(DhGroup::Ffdhe2048, &x).unwrap();
    let b = DhKey::from_private(DhGroup::Ffdhe2048, &y).unwrap();
    assert_eq!(a.public().len(), 256);
    assert_eq!(hex(&a.public()[240..]), "9c0bb0b0533ad4517ba6745743b91cac");
    let z = a.shared_secret(b.public()).unwrap();
    assert_eq!(z, b.shared_secret(a.public()).unwrap());
    assert_eq!(hex(&z[..16]), "cdf77624deb70745f19bfd3e88ad3039");
    // Peer values outside 2..p-2 or of the wrong size are refused.
    assert!(a.shared_secret(&[0u8; 256]).is_err());
    let mut one = vec![0u8; 256];
    one[255] = 1;
    assert!(a.shared_secret(&one).is_err());
    assert!(a.shared_secret(&b.public()[1..]).is_err());
}

#[test]
fn get_qpairs_shows_auth_state_and_set_keys_changes_the_key() {
    let k = key(1, 32, 1);
    let (env, dir) = auth_env(&k, None);
    let reg = registry(&env);
    let (h, _) = connect_admin_auth(&env);
    let qpairs = |env: &Env| {
        rpc_call(
            env,
            &reg,
            "nvmf_subsystem_get_qpairs",
            json!({"nqn": SUBNQN}),
        )
        .unwrap()
    };
    let q = qpairs(&env);
    assert_eq!(q[0]["state"], json!("authenticating"));
    assert_eq!(
        q[0]["auth"],
        json!({"state": "negotiate", "digest": "unknown", "dhgroup": "unknown"})
    );
    assert_eq!(
        authenticate(&env, &h, &cfg(k.clone(), &[1, 2], &[0, 1])),
        HostResult::Ok(2, 1)
    );
    let q = qpairs(&env);
    assert_eq!(q[0]["state"], json!("enabled"));
    assert_eq!(
        q[0]["auth"],
        json!({"state": "completed", "digest": "sha384", "dhgroup": "ffdhe2048"})
    );
    // New key: the next connection must use it; the old one fails.
    let k2 = key(2, 48, 40);
    let n2 = kname("k2");
    add_key_file(&dir, &n2, &k2.to_text());
    assert_eq!(
        rpc_call(
            &env,
            &reg,
            "nvmf_subsystem_set_keys",
            json!({"nqn": SUBNQN, "host": HOSTNQN, "dhchap_key": n2}),
        )
        .unwrap(),
        json!(true)
    );
    env.update();
    let (h2, _) = connect_admin_auth(&env);
    assert_eq!(
        authenticate(&env, &h2, &cfg(k, &[1], &[0])),
        HostResult::Failure1(FAIL_FAILED)
    );
    let (h3, _) = connect_admin_auth(&env);
    assert_eq!(
        authenticate(&env, &h3, &cfg(k2.clone(), &[1], &[0])),
        HostResult::Ok(1, 0)
    );
    // Re-authentication of the enabled queue with the new key.
    let mut c = cfg(k2, &[3], &[0]);
    c.tid = 0x99;
    assert_eq!(authenticate(&env, &h3, &c), HostResult::Ok(3, 0));
    // Unknown host: -EINVAL as SPDK.
    let e = rpc_call(
        &env,
        &reg,
        "nvmf_subsystem_set_keys",
        json!({"nqn": SUBNQN, "host": "nqn.2014-08.org.nvmexpress:uuid:66666666-2222-3333-4444-555555555555", "dhchap_key": n2}),
    )
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-22, "Invalid argument"));
}

#[test]
fn every_ffdhe_group_agrees_on_a_padded_secret() {
    for g in [
        DhGroup::Ffdhe2048,
        DhGroup::Ffdhe3072,
        DhGroup::Ffdhe4096,
        DhGroup::Ffdhe6144,
        DhGroup::Ffdhe8192,
    ] {
        let p = g.prime().unwrap();
        assert_eq!(p.bits() as usize, g.size() * 8, "{g:?}");
        let a = DhKey::generate(g).unwrap();
        let b = DhKey::generate(g).unwrap();
        assert_eq!(a.public().len(), g.size());
        let z = a.shared_secret(b.public()).unwrap();
        assert_eq!(z.len(), g.size());
        assert_eq!(z, b.shared_secret(a.public()).unwrap(), "{g:?}");
    }
}

#[test]
fn ffdhe8192_sha512_authenticates() {
    let k = key(3, 64, 21);
    let (env, _d) = auth_env(&k, None);
    let (h, _) = connect_admin_auth(&env);
    // What the Linux host offers: all hashes and groups; the strongest pair wins.
    assert_eq!(
        authenticate(&env, &h, &cfg(k, &[1, 2, 3], &[0, 1, 2, 3, 4, 5])),
        HostResult::Ok(3, 5)
    );
}

#[test]
fn io_queue_authentication_times_out_after_the_controller_kato() {
    let k = key(1, 32, 1);
    let (env, _d) = auth_env(&k, None);
    // Admin Connect with KATO 10 s (a multiple of the 10 s KAS granularity).
    let a = env.connect_host();
    let (c, _) = env.cmd(
        &a,
        connect_sqe(1, 0, 31, 10_000),
        Some(connect_data(HOSTNQN, SUBNQN, 0xffff)),
        1024,
    );
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    assert_eq!(
        authenticate(&env, &a, &cfg(k.clone(), &[1], &[0])),
        HostResult::Ok(1, 0)
    );
    enable_and_identify(&env, &a);
    let (c, d) = env.cmd(&a, sqe(0x0a, 3, 0, 0x0f, 0, 0), None, 0);
    ok(&c);
    assert!(d.is_none_or(|d| d.is_empty()));
    assert_eq!(c.dw0.get(), 10_000, "Get Features KATO");
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 1, 127, 0),
        Some(connect_data(HOSTNQN, SUBNQN, cntlid)),
        1024,
    );
    ok(&c);
    ok(&send(&env, &h, 10, negotiate(1, &[1], &[0])));
    // Keep the controller alive past its KATO: only the stalled I/O queue may go.
    env.threads.advance_time(Duration::from_secs(6));
    env.poll();
    let (c, _) = env.cmd(&a, sqe(0x18, 4, 0, 0, 0, 0), None, 0);
    ok(&c);
    env.threads.advance_time(Duration::from_secs(3));
    env.poll();
    assert!(!h.closed_by_target(), "closed before the 10 s KATO");
    env.threads.advance_time(Duration::from_secs(2));
    env.poll();
    assert!(
        h.closed_by_target(),
        "still open 11 s after its last step (KATO 10 s)"
    );
    assert!(!a.closed_by_target());
}
