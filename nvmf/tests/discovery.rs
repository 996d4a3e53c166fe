//! Discovery controller: Connect, Identify, per-host log page, referrals, restrictions.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::identify::IdentifyController;
use nvme::spec::nqn::DISCOVERY_NQN;
use nvme::spec::props::PropertyOffset;
use nvme::spec::{Sct, Status};
use nvmf::testing::TestHost;
use nvmf::{ListenAddr, Referral, SubType, Subsystem};
use zerocopy::FromBytes;

const OTHER_HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:99999999-2222-3333-4444-555555555555";

fn disc_connect(env: &Env, hostnqn: &str) -> TestHost {
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data(hostnqn, DISCOVERY_NQN, 0xffff)),
        1024,
    );
    ok(&c);
    let (c, _) = env.cmd(
        &h,
        prop_set(2, PropertyOffset::CC, u64::from(CC_ENABLE)),
        None,
        0,
    );
    ok(&c);
    h
}

fn log_page(env: &Env, h: &TestHost, cid: u16) -> Vec<u8> {
    let numd = 4096 / 4 - 1;
    let (c, d) = env.cmd(h, sqe(0x02, cid, 0, 0x70 | (numd << 16), 0, 0), None, 4096);
    ok(&c);
    d.unwrap()
}

fn entry_subnqn(page: &[u8], i: usize) -> String {
    let e = &page[1024 * (i + 1)..1024 * (i + 2)];
    let s = &e[256..512];
    String::from_utf8(s[..s.iter().position(|b| *b == 0).unwrap()].to_vec()).unwrap()
}

#[test]
fn discovery_log_lists_only_subsystems_the_host_may_access() {
    let env = setup();
    let mut s = Subsystem::new("nqn.2016-06.io.spdk:private", SubType::Nvme);
    s.hosts.push(OTHER_HOST.into());
    env.tgt.create_subsystem(s).unwrap();
    env.tgt
        .add_listener(
            "nqn.2016-06.io.spdk:private",
            ListenAddr::tcp("127.0.0.1", "4421"),
            false,
        )
        .unwrap();
    env.tgt
        .add_listener(DISCOVERY_NQN, env.addr.clone(), false)
        .unwrap();
    env.update();

    let h = disc_connect(&env, HOSTNQN);
    let (c, d) = env.cmd(&h, sqe(0x06, 3, 0, 1, 0, 0), None, 4096);
    ok(&c);
    let id = IdentifyController::read_from_bytes(&d.unwrap()).unwrap();
    assert_eq!(id.cntrltype, 2);
    assert_eq!(id.subnqn().unwrap(), DISCOVERY_NQN);

    let page = log_page(&env, &h, 4);
    let genctr = u64::from_le_bytes(page[0..8].try_into().unwrap());
    let numrec = u64::from_le_bytes(page[8..16].try_into().unwrap());
    assert_eq!(genctr, env.tgt.genctr());
    assert_eq!(
        numrec, 2,
        "current discovery entry + cnode1, not the private subsystem"
    );
    assert_eq!(entry_subnqn(&page, 0), DISCOVERY_NQN);
    assert_eq!(page[1024 + 2], 3, "subtype current discovery");
    assert_eq!(entry_subnqn(&page, 1), SUBNQN);
    let e = &page[2048..3072];
    assert_eq!(e[0], 3, "trtype TCP");
    assert_eq!(e[1], 1, "adrfam IPv4");
    assert_eq!(e[2], 2, "subtype NVMe");
    assert_eq!(&e[32..36], b"4420");
    assert_eq!(e[36], b' ');
    // TRADDR at 512..768 (space padded), after SUBNQN at 256..512.
    assert_eq!(&e[512..521], b"127.0.0.1");
    assert_eq!(e[521], b' ');

    let h2 = disc_connect(&env, OTHER_HOST);
    let page = log_page(&env, &h2, 4);
    assert_eq!(u64::from_le_bytes(page[8..16].try_into().unwrap()), 3);
    assert_eq!(entry_subnqn(&page, 2), "nqn.2016-06.io.spdk:private");
}

#[test]
fn discovery_controller_refuses_io_connect_and_other_admin_commands() {
    let env = setup();
    let h = disc_connect(&env, HOSTNQN);
    let (c, _) = env.cmd(&h, sqe(0x08, 5, 0, 0, 0, 0), None, 0);
    assert_eq!(
        c.status(),
        Status::new(Sct::GENERIC, 0x01),
        "Abort on discovery"
    );
    let (c, _) = env.cmd(&h, sqe(0x06, 6, 1, 0, 0, 0), None, 4096);
    assert_eq!(
        c.status(),
        Status::new(Sct::GENERIC, 0x02),
        "Identify NS on discovery"
    );
    let (c, _) = env.cmd(&h, sqe(0x09, 7, 0, 0x06, 1, 0), None, 0);
    assert_eq!(
        c.status(),
        Status::new(Sct::GENERIC, 0x02),
        "Set VWC on discovery"
    );
    let (c, _) = env.cmd(&h, sqe(0x0a, 8, 0, 0x0f, 0, 0), None, 0);
    ok(&c);
    assert_eq!(c.dw0.get(), 120_000, "default discovery KATO");
    let io = env.connect_host();
    let (c, _) = env.cmd(
        &io,
        connect_sqe(1, 1, 31, 0),
        Some(connect_data(HOSTNQN, DISCOVERY_NQN, 1)),
        1024,
    );
    assert_eq!(c.status(), Status::new(Sct::COMMAND_SPECIFIC, 0x82));
    assert_eq!(c.dw0.get(), 42 << 16);
}

#[test]
fn referral_appears_and_log_change_aen_fires_with_kato() {
    let env = setup();
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 0, 31, 30_000),
        Some(connect_data(HOSTNQN, DISCOVERY_NQN, 0xffff)),
        1024,
    );
    ok(&c);
    let (c, _) = env.cmd(
        &h,
        prop_set(2, PropertyOffset::CC, u64::from(CC_ENABLE)),
        None,
        0,
    );
    ok(&c);
    h.submit(sqe(0x0c, 3, 0, 0, 0, 0), None, 0);
    env.poll();
    assert!(h.take_response().is_none());
    env.tgt
        .add_referral(Referral {
            addr: ListenAddr::tcp("127.0.0.1", "4430"),
            subnqn: DISCOVERY_NQN.into(),
            secure_channel: false,
        })
        .unwrap();
    env.update();
    let (c, _) = h.take_response().expect("discovery log change AEN");
    assert_eq!(c.cid.get(), 3);
    assert_eq!(c.dw0.get(), 0x0070_f002);
    let page = log_page(&env, &h, 4);
    assert_eq!(u64::from_le_bytes(page[8..16].try_into().unwrap()), 2);
    let e = &page[2048..3072];
    assert_eq!(e[2], 1, "referral subtype");
    assert_eq!(&e[32..36], b"4430");
}

#[test]
fn connect_on_a_listener_the_subsystem_does_not_have_is_refused() {
    let env = setup();
    let mut s = Subsystem::new("nqn.2016-06.io.spdk:other", SubType::Nvme);
    s.allow_any_host = true;
    env.tgt.create_subsystem(s).unwrap();
    env.tgt
        .add_listener(
            "nqn.2016-06.io.spdk:other",
            ListenAddr::tcp("127.0.0.1", "4422"),
            false,
        )
        .unwrap();
    env.update();
    // Arrives on 4420, which only cnode1 listens on.
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data(HOSTNQN, "nqn.2016-06.io.spdk:other", 0xffff)),
        1024,
    );
    assert_eq!(c.status(), Status::new(Sct::COMMAND_SPECIFIC, 0x84));
}
