//! 1,000 connections opened and dropped (loopback): the target's open file descriptors and
//! resident memory, read from /proc/self (the target runs in this test process), come back to
//! where they started. Alone in its own test binary so no other test's sockets are counted.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::ConnectCmd;
use nvme::spec::tcp::PduHeader;
use nvme::spec::tcp::pdu::IcReq;
use std::net::TcpStream;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident set size in bytes (`/proc/self/statm`, second field, in pages of 4 KiB).
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Opens `n` connections in batches; each does a different amount of work before it is
/// dropped: nothing, ICReq only, half a PDU, a full admin Connect.
fn churn(env: &Env, n: usize) {
    const BATCH: usize = 50;
    let mut done = 0;
    while done < n {
        let mut conns: Vec<Host> = Vec::new();
        let mut raw: Vec<TcpStream> = Vec::new();
        for i in 0..BATCH.min(n - done) {
            match (done + i) % 4 {
                0 => raw.push(TcpStream::connect(("127.0.0.1", env.port)).unwrap()),
                1 => {
                    let mut h = env.connect();
                    h.send(&PduHeader::IcReq(IcReq::new(0, false, false, 0)), &[]);
                    conns.push(h);
                }
                2 => {
                    let mut h = env.connect();
                    h.send_raw(&[0x00, 0, 128, 0, 128, 0, 0, 0, 0, 0]);
                    conns.push(h);
                }
                _ => {
                    let mut h = env.connect();
                    env.ic(&mut h, false, false);
                    let (c, _) = env.cmd(
                        &mut h,
                        ConnectCmd::new(1, 0, 31, 0).to_sqe(),
                        Some(&connect_data(0xffff)),
                        1024,
                    );
                    ok(&c);
                    conns.push(h);
                }
            }
        }
        for _ in 0..3 {
            env.pump();
        }
        done += conns.len() + raw.len();
        drop(conns);
        drop(raw);
        for _ in 0..3 {
            env.pump();
        }
    }
}

/// Pumps until the fd count is back to `want` (closed connections are reaped on later polls).
fn settle(env: &Env, want: usize) -> usize {
    let mut now = open_fds();
    for _ in 0..500 {
        if now <= want {
            break;
        }
        env.pump();
        std::thread::sleep(std::time::Duration::from_millis(2));
        now = open_fds();
    }
    now
}

#[test]
fn thousand_connections_opened_and_dropped_leave_no_fds_or_memory_behind() {
    let env = setup("ChurnMalloc0");
    // Warm up allocator pools and lazily created state first.
    churn(&env, 100);
    let fds0 = settle(&env, 0);
    let fds_before = open_fds();
    assert_eq!(fds0, fds_before);
    let rss_before = rss_bytes();

    churn(&env, 1000);
    let fds_after = settle(&env, fds_before);
    let rss_after = rss_bytes();
    eprintln!("fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} bytes");

    assert_eq!(
        fds_after, fds_before,
        "open fds before/after 1000 connections"
    );
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 4 << 20,
        "RSS grew by {growth} bytes over 1000 connections ({rss_before} -> {rss_after})"
    );
}
