//! The NVMe host driver, `nvme_identify` and `nvme_perf` against a spawned `nvmf_tgt`
//! (loopback TCP, a free port per test).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::Target;
use nvme::host::{Completion, Controller, ControllerOpts, HostError, IoQpair, TransportId};

const NQN: &str = "nqn.2016-06.io.spdk:cnode1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A target serving Malloc0 (64 MiB, 512-byte blocks) as NSID 1 of cnode1, and the
/// discovery subsystem, on 127.0.0.1:`port`.
fn start_target(port: u16) -> Target {
    let cfg = serde_json::json!({"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create",
             "params": {"name": "Malloc0", "num_blocks": 131072, "block_size": 512}},
            {"method": "bdev_wait_for_examine"}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport",
             "params": {"trtype": "TCP", "max_queue_depth": 128, "in_capsule_data_size": 4096,
                        "max_io_size": 131072}},
            {"method": "nvmf_create_subsystem",
             "params": {"nqn": NQN, "allow_any_host": true,
                        "serial_number": "SPDK00000000000001", "max_namespaces": 32}},
            {"method": "nvmf_subsystem_add_listener",
             "params": {"nqn": NQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv4",
                        "traddr": "127.0.0.1", "trsvcid": port.to_string()}}},
            {"method": "nvmf_subsystem_add_listener",
             "params": {"nqn": "nqn.2014-08.org.nvmexpress.discovery",
                        "listen_address": {"trtype": "TCP", "adrfam": "IPv4",
                        "traddr": "127.0.0.1", "trsvcid": port.to_string()}}},
            {"method": "nvmf_subsystem_add_ns",
             "params": {"nqn": NQN, "namespace": {"nsid": 1, "bdev_name": "Malloc0"}}}]}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tgt.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let t = Target::start(&["-c", path.to_str().unwrap()]);
    t.wait_init();
    drop(dir);
    t
}

fn trid(port: u16, subnqn: Option<&str>) -> String {
    let mut s = format!("trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port}");
    if let Some(n) = subnqn {
        s.push_str(&format!(" subnqn:{n}"));
    }
    s
}

fn run(bin: &str, args: &[&str]) -> (Output, String, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, so, se)
}

fn wait_one(q: &mut IoQpair) -> Completion {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.is_empty() {
        q.process_completions(&mut out).unwrap();
        assert!(std::time::Instant::now() < deadline, "I/O did not complete");
    }
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

#[test]
fn host_driver_writes_and_reads_back_through_in_capsule_and_r2t_paths() {
    let port = free_port();
    let _t = start_target(port);
    let trid = TransportId::parse(&trid(port, Some(NQN))).unwrap();
    let opts = ControllerOpts {
        header_digest: true,
        data_digest: true,
        ..Default::default()
    };
    let mut c = Controller::connect(&trid, opts).unwrap();
    let ns = c.namespace(1).unwrap().clone();
    assert_eq!((ns.block_size(), ns.num_blocks()), (512, 131_072));
    assert_eq!(c.data().subnqn().unwrap(), NQN);
    let mut q = c.alloc_io_qpair(32).unwrap();
    // 4 KiB goes in the capsule; 64 KiB needs R2T + H2CData.
    for (lba, len) in [(8u64, 4096usize), (100, 65536)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 13 + lba as usize) as u8).collect();
        q.write(1, lba, data.clone(), 1).unwrap();
        let w = wait_one(&mut q);
        assert!(w.is_success(), "{:?}", w.status);
        q.read(1, lba, vec![0; len], 2).unwrap();
        let r = wait_one(&mut q);
        assert!(r.is_success());
        assert_eq!(r.tag, 2);
        assert_eq!(r.buf, data, "read back {len} bytes at LBA {lba}");
    }
    q.write_zeroes(1, 8, 8, 3).unwrap();
    assert!(wait_one(&mut q).is_success());
    q.read(1, 8, vec![0xff; 4096], 4).unwrap();
    assert_eq!(wait_one(&mut q).buf, vec![0u8; 4096]);
    q.deallocate(1, &[(100, 128)], 5).unwrap();
    assert!(wait_one(&mut q).is_success());
    q.flush(1, 6).unwrap();
    assert!(wait_one(&mut q).is_success());
    // Bad requests are refused locally with the buffer handed back.
    let rej = q.read(1, 131_071, vec![0; 1024], 7).unwrap_err();
    assert_eq!(rej.buf.len(), 1024);
    assert!(matches!(rej.error, HostError::InvalidRequest(_)));
    // Reset, then the I/O qpair reconnects and works again.
    c.reset().unwrap();
    c.reconnect_io_qpair(&mut q).unwrap();
    q.read(1, 0, vec![0; 512], 8).unwrap();
    assert!(wait_one(&mut q).is_success());
    assert_eq!(c.process_admin_completions().unwrap(), 0);
}

#[test]
fn discovery_client_reads_the_log_page() {
    let port = free_port();
    let _t = start_target(port);
    let trid = TransportId::parse(&trid(port, None)).unwrap();
    let mut c = Controller::connect(&trid, ControllerOpts::default()).unwrap();
    assert!(c.is_discovery());
    let log = c.discovery_log().unwrap();
    let subtypes: Vec<u8> = log.entries.iter().map(|e| e.subtype).collect();
    assert_eq!(subtypes, vec![3, 2]);
    assert!(log.entries.iter().all(|e| e.trtype == 3 && e.adrfam == 1));
    assert_eq!(log.entries[1].subnqn().unwrap(), NQN);
    assert_eq!(log.entries[1].traddr().unwrap(), "127.0.0.1");
    assert_eq!(log.entries[1].trsvcid().unwrap(), port.to_string());
    assert!(matches!(
        c.alloc_io_qpair(0).unwrap_err(),
        HostError::Unsupported(_)
    ));
}

#[test]
fn nvme_identify_prints_controller_and_namespace_as_spdk() {
    let port = free_port();
    let _t = start_target(port);
    let (out, so, se) = run(
        env!("CARGO_BIN_EXE_nvme_identify"),
        &["-r", &trid(port, Some(NQN))],
    );
    assert!(out.status.success(), "stderr: {se}");
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(
        &lines[..3],
        &[
            "=====================================================",
            &format!("NVMeoF Controller at TCP (addr:127.0.0.1 subnqn:{NQN})"),
            "=====================================================",
        ]
    );
    for want in [
        "Serial Number:                         SPDK00000000000001",
        "Model Number:                          SPDK bdev Controller",
        "Max Data Transfer Size:                131072",
        "Max Number of Namespaces:              32",
        "Maximum Queue Entries:                 128",
        "  NVM Command Set:                     Supported",
        "Reset Timeout:                         15000 ms",
        &format!("Subsystem NQN:                         {NQN}"),
        "Error Log Page Entries Supported:      128",
        "Keep Alive Granularity:                10000 ms",
        &format!("{:>30} (02h): Supported ", "Read"),
        "Active Namespaces",
        "Namespace ID:1",
        "Size (in LBAs):                        131072 (0GiB)",
        "Number of LBA Formats:                 1",
        "Current LBA Format:                    LBA Format #00",
        "LBA Format #00: Data Size:   512  Metadata Size:     0",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{so}");
    }
}

#[test]
fn nvme_identify_on_discovery_nqn_prints_discovery_log() {
    let port = free_port();
    let _t = start_target(port);
    let (out, so, se) = run(
        env!("CARGO_BIN_EXE_nvme_identify"),
        &["-r", &trid(port, None)],
    );
    assert!(out.status.success(), "stderr: {se}");
    let lines: Vec<&str> = so.lines().collect();
    for want in [
        "NVMeoF Controller at TCP (addr:127.0.0.1 subnqn:nqn.2014-08.org.nvmexpress.discovery)",
        "Discovery Log Page",
        "Number of Records:                     2",
        "Record Format:                         0",
        "Discovery Log Entry 0",
        "Subsystem Type:                        3 (Current Discovery Subsystem)",
        "Discovery Log Entry 1",
        "Subsystem Type:                        2 (NVM Subsystem)",
        "Transport Type:                        3 (TCP)",
        "Address Family:                        1 (IPv4)",
        "NVM Subsystem Qualified Name:          nqn.2014-08.org.nvmexpress.discovery",
        &format!("NVM Subsystem Qualified Name:          {NQN}"),
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{so}");
    }
}

#[test]
fn nvme_identify_rejects_bad_transport_id_and_unreachable_target() {
    let (out, _, se) = run(
        env!("CARGO_BIN_EXE_nvme_identify"),
        &["-r", "trtype:TCP traddr:127.0.0.1 bogus:1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(se.contains("unknown transport ID key \"bogus\""), "{se}");
    let port = free_port();
    let (out, _, se) = run(
        env!("CARGO_BIN_EXE_nvme_identify"),
        &["-r", &trid(port, None)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(se.contains("no NVMe controller found"), "{se}");
}

#[test]
fn nvme_perf_randread_for_two_seconds_reports_nonzero_iops() {
    let port = free_port();
    let _t = start_target(port);
    let (out, so, se) = run(
        env!("CARGO_BIN_EXE_nvme_perf"),
        &[
            "-r",
            &trid(port, Some(NQN)),
            "-q",
            "8",
            "-o",
            "4096",
            "-w",
            "randread",
            "-t",
            "2",
        ],
    );
    assert!(out.status.success(), "stdout: {so}\nstderr: {se}");
    let name = format!("TCP (addr:127.0.0.1 subnqn:{NQN}) NSID 1");
    assert!(
        so.contains(&format!("Associating {name} with lcore 0")),
        "{so}"
    );
    let row = so
        .lines()
        .find(|l| l.starts_with(&format!("{name} from core  0:")))
        .unwrap_or_else(|| panic!("no result row in:\n{so}"));
    let nums: Vec<f64> = row
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 5, "{row}");
    assert!(nums[0] > 0.0, "IOPS {row}");
    assert!(
        (nums[1] - nums[0] * 4096.0 / 1048576.0).abs() < 0.02,
        "MiB/s {row}"
    );
    assert!(
        nums[3] <= nums[2] && nums[2] <= nums[4],
        "min <= avg <= max: {row}"
    );
    assert!(so.contains("Total"), "{so}");
    assert!(so.contains(" 50.00000% : "), "{so}");
    let progress = so
        .lines()
        .filter(|l| l.ends_with("MiB/s") && l.contains("IOPS"))
        .count();
    assert!(progress >= 1, "progress lines: {so}");
}

#[test]
fn nvme_perf_rejects_bad_arguments_clearly() {
    let perf = env!("CARGO_BIN_EXE_nvme_perf");
    let base = ["-q", "1", "-o", "4096", "-t", "1"];
    let cases: [(&[&str], &str); 5] = [
        (&["-r", "trtype:TCP", "-w", "read"], "traddr missing"),
        (
            &["-r", "trtype:TCP traddr:1.2.3.4:5", "-w", "read"],
            "not an IPv4 address",
        ),
        (
            &["-r", "trtype:TCP traddr:127.0.0.1", "-w", "rw"],
            "rwmixread (-M) must be specified",
        ),
        (
            &[
                "-r",
                "trtype:TCP traddr:127.0.0.1",
                "-w",
                "read",
                "-c",
                "zz",
            ],
            "invalid core mask",
        ),
        (
            // a core this machine does not have: refused before any connection
            &[
                "-r",
                "trtype:TCP traddr:127.0.0.1",
                "-w",
                "read",
                "-c",
                "0x8000000000000000",
            ],
            "invalid core mask \"0x8000000000000000\"",
        ),
    ];
    for (args, want) in cases {
        let mut all: Vec<&str> = base.to_vec();
        all.extend_from_slice(args);
        let (out, _, se) = run(perf, &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {se}");
        assert!(se.contains(want), "{args:?}: {se}");
    }
}

#[test]
fn namespace_hot_add_arrives_as_async_event_and_refreshes_namespaces() {
    let port = free_port();
    let t = start_target(port);
    let trid = TransportId::parse(&trid(port, Some(NQN))).unwrap();
    let mut c = Controller::connect(&trid, ControllerOpts::default()).unwrap();
    assert!(c.namespace(2).is_none());
    t.call(
        "bdev_malloc_create",
        Some(serde_json::json!({"name": "Malloc1", "num_blocks": 2048, "block_size": 4096})),
    )
    .unwrap();
    t.call(
        "nvmf_subsystem_add_ns",
        Some(serde_json::json!({"nqn": NQN, "namespace": {"nsid": 2, "bdev_name": "Malloc1"}})),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.namespace(2).is_none() {
        c.process_admin_completions().unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "no namespace-change event"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ns = c.namespace(2).unwrap();
    assert_eq!((ns.block_size(), ns.num_blocks()), (4096, 2048));
    let ev = c.take_async_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].event_type.0, 2, "notice");
    assert_eq!(ev[0].info, 0, "namespace attribute changed");
    assert_eq!(ev[0].log_page.0, 0x04, "changed namespace list");
}

#[test]
fn bdev_nvme_attaches_to_target_and_moves_data_through_the_bdev_layer() {
    use std::cell::RefCell;
    use std::rc::Rc;

    let port = free_port();
    let _t = start_target(port);
    let tt = env::testing::TestThreads::new(1);
    tt.set_current(0);
    let p = bdev_nvme::AttachParams {
        name: "HostTools0".into(),
        trtype: "tcp".into(),
        traddr: "127.0.0.1".into(),
        adrfam: Some("ipv4".into()),
        trsvcid: Some(port.to_string()),
        subnqn: Some(NQN.into()),
        ddgst: true,
        ..Default::default()
    };
    assert_eq!(
        bdev_nvme::attach(&p).unwrap(),
        vec!["HostTools0n1".to_string()]
    );
    let b = bdev::get_by_name("HostTools0n1").unwrap();
    assert_eq!((b.num_blocks(), b.data_block_size()), (131_072, 512));
    let d = bdev::open_ext("HostTools0n1", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let done: Rc<RefCell<Vec<bdev::IoCompletion>>> = Rc::default();
    let wait = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while done.borrow().len() < n {
            tt.poll_threads();
            assert!(
                std::time::Instant::now() < deadline,
                "bdev I/O did not complete"
            );
        }
    };
    // 256 KiB is two commands at the target's 128 KiB MDTS.
    let data: Vec<u8> = (0..262_144usize).map(|i| (i * 7 % 253) as u8).collect();
    let d1 = Rc::clone(&done);
    ch.write(bdev::IoVecs::from_vec(data.clone()), 1000, 512, move |c| {
        d1.borrow_mut().push(c)
    });
    wait(1);
    let d2 = Rc::clone(&done);
    ch.read(
        bdev::IoVecs::from_vec(vec![0; 262_144]),
        1000,
        512,
        move |c| d2.borrow_mut().push(c),
    );
    wait(2);
    let mut got = done.borrow_mut().drain(..).collect::<Vec<_>>();
    assert!(
        got.iter().all(|c| c.is_success()),
        "{:?}",
        got.iter().map(|c| &c.status).collect::<Vec<_>>()
    );
    let read = got.pop().unwrap().into_bufs().unwrap().0.to_vec();
    assert!(read == data, "data read back through bdev-nvme differs");
    let info = bdev_nvme::controller("HostTools0").unwrap().info_json();
    assert_eq!(info["trid"]["trsvcid"], port.to_string());
    assert_eq!(info["state"], "enabled");
    drop(ch);
    d.close();
    let gone: Rc<RefCell<Option<Result<(), bdev_nvme::BdevNvmeError>>>> = Rc::default();
    let g2 = Rc::clone(&gone);
    bdev_nvme::detach("HostTools0", move |r| *g2.borrow_mut() = Some(r)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gone.borrow().is_none() {
        tt.poll_threads();
        assert!(
            std::time::Instant::now() < deadline,
            "detach did not finish"
        );
    }
    assert_eq!(*gone.borrow(), Some(Ok(())));
    assert!(bdev::get_by_name("HostTools0n1").is_none());
}

/// A raw read of `nlb` 512-byte blocks at LBA 0 of `nsid`, bypassing the host driver's own
/// namespace check (as a hostile or stale host would send it).
fn raw_read(q: &mut IoQpair, nsid: u32, tag: u64) -> Completion {
    use nvme::spec::io::ReadWrite;
    use nvme::spec::{NvmOpcode, Sqe};
    let mut sqe = Sqe::new(NvmOpcode::READ.0, 0);
    sqe.nsid = nsid.into();
    ReadWrite {
        slba: 0,
        nlb: 7,
        ..Default::default()
    }
    .apply(&mut sqe);
    q.submit_raw(sqe, nvme::host::Payload::FromCtrl(vec![0; 4096]), tag)
        .unwrap();
    wait_one(q)
}

#[test]
#[ignore = "needs SPDK's spdk-rpc: run through `cargo xtask ci` (or `cargo xtask setup`)"]
fn spdk_rpc_masks_a_namespace_per_host_and_the_other_host_never_reads_it() {
    use nvme::spec::{GenericStatus, Sct};
    let port = free_port();
    let t = start_target(port);
    let rpc = |args: &[&str]| common::spdk_rpc_call(&t.sock, args);
    let (host_a, host_b) = ("nqn.2016-06.io.spdk:host-a", "nqn.2016-06.io.spdk:host-b");
    rpc(&["bdev_malloc_create", "-b", "Secret", "8", "512"]).unwrap();
    rpc(&["nvmf_subsystem_add_ns", NQN, "Secret", "-n", "2", "-i"]).unwrap();
    rpc(&["nvmf_ns_add_host", NQN, "2", host_a]).unwrap();
    // SPDK's errors for a namespace that does not exist.
    let e = rpc(&["nvmf_ns_add_host", NQN, "9", host_a]).unwrap_err();
    assert!(e.contains("Invalid parameters"), "{e}");

    let connect = |h: &str| {
        let trid = TransportId::parse(&format!("{} hostnqn:{h}", trid(port, Some(NQN)))).unwrap();
        Controller::connect(&trid, ControllerOpts::default()).unwrap()
    };
    let ids = |c: &Controller| c.namespaces().map(|n| n.id()).collect::<Vec<_>>();
    let mut a = connect(host_a);
    let mut b = connect(host_b);
    assert_eq!(ids(&a), vec![1, 2]);
    assert_eq!(ids(&b), vec![1], "namespace 2 is hidden from host B");

    let secret: Vec<u8> = (0..4096).map(|i| (i % 251) as u8 ^ 0xa5).collect();
    let mut qa = a.alloc_io_qpair(16).unwrap();
    qa.write(2, 0, secret.clone(), 1).unwrap();
    assert!(wait_one(&mut qa).is_success());
    let mut qb = b.alloc_io_qpair(16).unwrap();
    let r = raw_read(&mut qb, 2, 2);
    assert_eq!(r.status.sct, Sct::GENERIC);
    assert_eq!(r.status.sc, GenericStatus::INVALID_NAMESPACE_OR_FORMAT.0);
    assert!(r.status.dnr);
    assert_eq!(r.buf, vec![0; 4096], "no byte of A's namespace reaches B");

    // Visible to B now (notice by AEN); then hidden from A again.
    rpc(&["nvmf_ns_add_host", NQN, "2", host_b]).unwrap();
    let r = raw_read(&mut qb, 2, 3);
    assert!(r.is_success(), "{:?}", r.status);
    assert_eq!(r.buf, secret);
    rpc(&["nvmf_ns_remove_host", NQN, "2", host_a]).unwrap();
    let r = raw_read(&mut qa, 2, 4);
    assert_eq!(r.status.sc, GenericStatus::INVALID_NAMESPACE_OR_FORMAT.0);

    // save_config keeps the masking for a replay.
    let saved = rpc(&["save_config"]).unwrap().to_string();
    assert!(saved.contains("\"no_auto_visible\":true"), "{saved}");
    assert!(saved.contains("nvmf_ns_add_host"), "{saved}");
    assert!(saved.contains(host_b) && !saved.contains(host_a), "{saved}");
    let _ = (a.process_admin_completions(), b.process_admin_completions());
}

#[test]
#[ignore = "needs SPDK's spdk-rpc: run through `cargo xtask ci` (or `cargo xtask setup`)"]
fn spdk_rpc_drives_ana_states_ptpl_and_iostat_methods() {
    let port = free_port();
    let t = start_target(port);
    let rpc = |args: &[&str]| common::spdk_rpc_call(&t.sock, args);
    let p = port.to_string();
    let ana = "nqn.2016-06.io.spdk:ana";
    rpc(&["nvmf_create_subsystem", ana, "-a", "-r"]).unwrap();
    rpc(&[
        "nvmf_subsystem_add_listener",
        ana,
        "-t",
        "tcp",
        "-a",
        "127.0.0.1",
        "-s",
        &p,
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ptpl = dir.path().join("ptpl.json");
    rpc(&["bdev_malloc_create", "-b", "AnaMalloc", "8", "512"]).unwrap();
    rpc(&[
        "nvmf_subsystem_add_ns",
        ana,
        "AnaMalloc",
        "-p",
        ptpl.to_str().unwrap(),
    ])
    .unwrap();
    rpc(&[
        "nvmf_subsystem_listener_set_ana_state",
        ana,
        "-n",
        "inaccessible",
        "-t",
        "tcp",
        "-a",
        "127.0.0.1",
        "-s",
        &p,
        "-f",
        "ipv4",
    ])
    .unwrap();
    let l = rpc(&["nvmf_subsystem_get_listeners", ana]).unwrap();
    assert_eq!(l[0]["ana_states"][0]["ana_state"], "inaccessible", "{l}");
    // I/O through the inaccessible path: Asymmetric Access Inaccessible (SCT 3, SC 02h).
    let trid = TransportId::parse(&trid(port, Some(ana))).unwrap();
    let mut c = Controller::connect(&trid, ControllerOpts::default()).unwrap();
    let mut q = c.alloc_io_qpair(8).unwrap();
    q.read(1, 0, vec![0; 512], 1).unwrap();
    let r = wait_one(&mut q);
    assert_eq!((r.status.sct.0, r.status.sc), (3, 0x02), "{:?}", r.status);
    // An unknown ANA state is refused by the client itself; a bad listener by the target.
    let e = rpc(&[
        "nvmf_subsystem_listener_set_ana_state",
        ana,
        "-n",
        "optimized",
        "-t",
        "tcp",
        "-a",
        "127.0.0.1",
        "-s",
        "1",
    ])
    .unwrap_err();
    assert!(e.contains("error setting ANA state"), "{e}");
    let saved = rpc(&["save_config"]).unwrap().to_string();
    assert!(
        saved.contains("nvmf_subsystem_listener_set_ana_state"),
        "{saved}"
    );
    assert!(saved.contains("ptpl_file"), "{saved}");

    // bdev iostat methods as spdk-rpc sends them.
    rpc(&["bdev_set_qd_sampling_period", "Malloc0", "1000"]).unwrap();
    let s = rpc(&["bdev_get_iostat", "--names", "Malloc0", "-c"]).unwrap();
    assert!(s["channels"].is_array(), "{s}");
    rpc(&["bdev_reset_iostat", "-b", "Malloc0", "-m", "all"]).unwrap();
    let s = rpc(&["bdev_get_iostat", "--names", "Malloc0"]).unwrap();
    assert_eq!(s["bdevs"][0]["num_read_ops"], 0, "{s}");
    let _ = c.process_admin_completions();
}
