//! Floods against a running `nvmf_tgt`: more connections than it has file descriptors for.
//! Every failed accept is logged (not once per poll), nothing crashes, and once the flood is
//! gone the target serves NVMe/TCP I/O and RPC again.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::Target;
use nvme::host::{Controller, ControllerOpts, TransportId};

const NQN: &str = "nqn.2016-06.io.spdk:flood";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16) -> serde_json::Value {
    serde_json::json!({"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create",
             "params": {"name": "Malloc0", "num_blocks": 2048, "block_size": 512}}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {"nqn": NQN, "allow_any_host": true}},
            {"method": "nvmf_subsystem_add_listener",
             "params": {"nqn": NQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv4",
                        "traddr": "127.0.0.1", "trsvcid": port.to_string()}}},
            {"method": "nvmf_subsystem_add_ns",
             "params": {"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}}]}]})
}

#[test]
fn out_of_file_descriptors_logs_rate_limited_and_recovers() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.json");
    std::fs::write(&cfg, config(port).to_string()).unwrap();
    // 64 descriptors: enough to start (epoll, eventfds, listeners, log), not for the flood.
    let t = Target::start_with_nofile(64, &["-c", cfg.to_str().unwrap()]);
    t.wait_init();

    // 100 TCP and 100 RPC connections, held for 3 s: the kernel queues them in the backlogs,
    // the target's accept fails with EMFILE on every poll.
    let mut tcp = Vec::new();
    let mut unix = Vec::new();
    for _ in 0..100 {
        tcp.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        if let Ok(u) = UnixStream::connect(&t.sock) {
            unix.push(u);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let log = t.log();
    let tcp_errors = log
        .matches("accept failed error=Too many open files")
        .count()
        - log.matches("RPC accept failed").count();
    let rpc_errors = log.matches("RPC accept failed").count();
    assert!(
        (1..=6).contains(&tcp_errors),
        "NVMe/TCP accept errors logged {tcp_errors} times in 3 s (at most one a second)"
    );
    assert!(
        (1..=6).contains(&rpc_errors),
        "RPC accept errors logged {rpc_errors} times in 3 s (at most one a second)"
    );
    drop(tcp);
    drop(unix);

    // The flood is gone: the target accepts again (the queued dead connections are accepted
    // and closed first), I/O and RPC work.
    let deadline = Instant::now() + Duration::from_secs(20);
    let trid = TransportId::parse(&format!(
        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port} subnqn:{NQN}"
    ))
    .unwrap();
    let mut c = loop {
        match Controller::connect(&trid, ControllerOpts::default()) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "never reconnected: {e}\n{}",
                    t.log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let mut q = c.alloc_io_qpair(8).unwrap();
    let data: Vec<u8> = (0..4096).map(|i| (i % 253) as u8).collect();
    q.write(1, 16, data.clone(), 1).unwrap();
    let mut out = Vec::new();
    while out.is_empty() {
        q.process_completions(&mut out).unwrap();
        assert!(Instant::now() < deadline, "write did not complete");
    }
    assert!(out[0].is_success());
    q.read(1, 16, vec![0; 4096], 2).unwrap();
    out.clear();
    while out.is_empty() {
        q.process_completions(&mut out).unwrap();
        assert!(Instant::now() < deadline, "read did not complete");
    }
    assert_eq!(out[0].buf, data);
    assert!(t.call("spdk_get_version", None).is_ok());
    assert!(!t.log().contains("panicked"));
}
