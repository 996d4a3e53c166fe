//! The target chain: the test host -> target B (`bdev_nvme` over TCP) -> target A (malloc),
//! all on loopback. Data written through B lands on A; detaching A's controller on B fails
//! the I/O in flight with an NVMe error status, and B keeps serving RPCs and exits 0 on
//! SIGTERM; the same when A dies under I/O; with reconnect_delay_sec B reconnects to a
//! restarted A. Each scenario also runs with both targets in
//! `--interrupt-mode`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Target;
use nvme::host::{Completion, Controller, ControllerOpts, HostError, IoQpair, TransportId};
use nvme::spec::status::{GenericStatus, Sct, Status};
use serde_json::{Value, json};

const NQN_A: &str = "nqn.2016-06.io.spdk:cnodeA";
const NQN_B: &str = "nqn.2016-06.io.spdk:cnodeB";
/// Malloc0 on A: 64 MiB of 512-byte blocks.
const BLOCKS: u64 = 131_072;
const BS: usize = 512;
/// Transfers up to this size are sent in the command capsule (transport option on A and B).
const IN_CAPSULE: usize = 4096;
/// MDTS of A (max_io_size); B's bdev splits larger I/O into commands of this size.
const MAX_IO: usize = 131_072;
/// MDTS of B.
const MAX_IO_B: usize = 4 * MAX_IO;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn listen_address(port: u16) -> Value {
    json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1",
           "trsvcid": port.to_string()})
}

fn transport_params(max_io: usize) -> Value {
    json!({"trtype": "TCP", "max_queue_depth": 128, "in_capsule_data_size": IN_CAPSULE,
           "max_io_size": max_io})
}

/// Target A: Malloc0 as NSID 1 of `NQN_A` on 127.0.0.1:`port`, from a `-c` config file.
/// `args`: more command-line arguments.
fn start_target_a_with(port: u16, args: &[&str]) -> Target {
    let cfg = json!({"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create",
             "params": {"name": "Malloc0", "num_blocks": BLOCKS, "block_size": BS}},
            {"method": "bdev_wait_for_examine"}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": transport_params(MAX_IO)},
            {"method": "nvmf_create_subsystem",
             "params": {"nqn": NQN_A, "allow_any_host": true,
                        "serial_number": "SPDK0000000000000A", "max_namespaces": 4}},
            {"method": "nvmf_subsystem_add_listener",
             "params": {"nqn": NQN_A, "listen_address": listen_address(port)}},
            {"method": "nvmf_subsystem_add_ns",
             "params": {"nqn": NQN_A, "namespace": {"nsid": 1, "bdev_name": "Malloc0"}}}]}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let mut all = vec!["-c", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let t = Target::start(&all);
    t.wait_init();
    t
}

/// Target B, configured only over RPC: attaches A's subsystem as controller "NvmeA" and
/// exports the resulting bdev NvmeAn1 as NSID 1 of `NQN_B` on 127.0.0.1:`port_b`.
/// `extra` holds more `bdev_nvme_attach_controller` parameters (digests).
fn start_target_b_with(port_a: u16, port_b: u16, extra: Value, args: &[&str]) -> Target {
    let t = Target::start(args);
    t.wait_init();
    // B listens before it connects to A: its connections to A take ephemeral local ports,
    // one of which could otherwise be the free port picked for B's listener.
    assert_eq!(
        t.call("nvmf_create_transport", Some(transport_params(MAX_IO_B)))
            .unwrap(),
        json!(true)
    );
    assert_eq!(
        t.call(
            "nvmf_create_subsystem",
            Some(json!({"nqn": NQN_B, "allow_any_host": true,
                        "serial_number": "SPDK0000000000000B"})),
        )
        .unwrap(),
        json!(true)
    );
    assert_eq!(
        t.call(
            "nvmf_subsystem_add_listener",
            Some(json!({"nqn": NQN_B, "listen_address": listen_address(port_b)})),
        )
        .unwrap(),
        json!(true)
    );
    let mut params = json!({"name": "NvmeA", "trtype": "TCP", "adrfam": "IPv4",
                            "traddr": "127.0.0.1", "trsvcid": port_a.to_string(),
                            "subnqn": NQN_A});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let names = t
        .call("bdev_nvme_attach_controller", Some(params))
        .unwrap_or_else(|e| panic!("attach failed: {e:?}\nB log:\n{}", t.log()));
    assert_eq!(names, json!(["NvmeAn1"]));
    let bdevs = t
        .call("bdev_get_bdevs", Some(json!({"name": "NvmeAn1"})))
        .unwrap();
    assert_eq!(bdevs[0]["block_size"], json!(BS));
    assert_eq!(bdevs[0]["num_blocks"], json!(BLOCKS));
    assert_eq!(bdevs[0]["product_name"], json!("NVMe disk"));
    assert_eq!(
        t.call(
            "nvmf_subsystem_add_ns",
            Some(json!({"nqn": NQN_B, "namespace": {"bdev_name": "NvmeAn1"}})),
        )
        .unwrap(),
        json!(1)
    );
    t
}

/// Waits (at most 20 s) until the I/O thread has seen 8 successful completions.
fn wait_progress(progress: &AtomicU64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::Acquire) < 8 {
        assert!(Instant::now() < deadline, "I/O through B made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the reader thread saw around the detach.
#[derive(Debug, Default)]
struct IoOutcome {
    ok_before: u64,
    ok_after: u64,
    submitted: u64,
    failed: Vec<Completion>,
    left: usize,
    host_err: Option<HostError>,
}

fn connect(port: u16, nqn: &str) -> Controller {
    connect_with(port, nqn, ControllerOpts::default())
}

fn connect_with(port: u16, nqn: &str, opts: ControllerOpts) -> Controller {
    let trid = TransportId::parse(&format!(
        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port} subnqn:{nqn}"
    ))
    .unwrap();
    Controller::connect(&trid, opts).unwrap()
}

/// Polls until `n` completions arrived (at most 20 s) and returns them sorted by tag.
fn wait_n(q: &mut IoQpair, n: usize) -> Vec<Completion> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n {
        q.process_completions(&mut out).unwrap();
        assert!(
            Instant::now() < deadline,
            "only {} of {n} I/Os completed",
            out.len()
        );
    }
    assert_eq!(out.len(), n);
    out.sort_by_key(|c| c.tag);
    out
}

/// Deterministic, position-dependent bytes (different for every 512-byte block).
fn pattern(lba: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let blk = lba + (i / BS) as u64;
            (blk.wrapping_mul(31) as usize ^ (i % BS).wrapping_mul(7) ^ 0x5a) as u8
        })
        .collect()
}

/// The extents the test writes: in-capsule writes (512 B, 4 KiB) at a few offsets, R2T
/// writes (8 KiB, 64 KiB), and a 4 MiB run of 128 KiB (MDTS) writes, plus the last block;
/// then writes larger than A's MDTS that B splits (512 KiB, and 3 x 128 KiB + 1 KiB at an
/// odd LBA).
fn extents() -> Vec<(u64, usize)> {
    let mut v = vec![
        (0u64, BS),
        (9, IN_CAPSULE),
        (1000, IN_CAPSULE),
        (3001, 2 * IN_CAPSULE),
        (5003, 65_536),
        (BLOCKS - 1, BS),
    ];
    let base = 16_384u64;
    for i in 0..32u64 {
        v.push((base + i * (MAX_IO / BS) as u64, MAX_IO));
    }
    v.push((40_000, MAX_IO_B));
    v.push((45_001, 3 * MAX_IO + 1024));
    v
}

/// Reads every extent in commands of at most `max` bytes (at most `depth` in flight) and
/// asserts the bytes equal `pattern`.
fn read_and_check(q: &mut IoQpair, ext: &[(u64, usize)], max: usize, depth: usize, via: &str) {
    let mut pieces = Vec::new();
    for &(lba, len) in ext {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(max);
            pieces.push((lba + (off / BS) as u64, n));
            off += n;
        }
    }
    for (chunk_no, chunk) in pieces.chunks(depth).enumerate() {
        for (i, &(lba, len)) in chunk.iter().enumerate() {
            q.read(1, lba, vec![0; len], i as u64).unwrap();
        }
        for (i, c) in wait_n(q, chunk.len()).into_iter().enumerate() {
            let (lba, len) = chunk[i];
            assert!(
                c.is_success(),
                "read via {via} of {len} bytes at LBA {lba}: {:?}",
                c.status
            );
            assert_eq!(c.buf.len(), len);
            assert!(
                c.buf == pattern(lba, len),
                "read via {via} (batch {chunk_no}) of {len} bytes at LBA {lba} differs"
            );
        }
    }
}

#[test]
fn data_written_through_b_lands_on_a_and_detach_fails_inflight_io_without_hanging() {
    write_through_b_then_detach_under_io(&[]);
}

#[test]
fn interrupt_mode_data_written_through_b_lands_on_a_and_detach_fails_io_without_hanging() {
    write_through_b_then_detach_under_io(&["--interrupt-mode"]);
}

/// A and B started with `args`.
fn write_through_b_then_detach_under_io(args: &[&str]) {
    let (port_a, port_b) = (free_port(), free_port());
    let a = start_target_a_with(port_a, args);
    let mut b = start_target_b_with(port_a, port_b, json!({}), args);

    // Write through B, at most 16 commands in flight.
    let ext = extents();
    let mut cb = connect(port_b, NQN_B);
    let ns = cb.namespace(1).unwrap().clone();
    assert_eq!((ns.block_size(), ns.num_blocks()), (BS as u32, BLOCKS));
    // B advertises its own MDTS, larger than A's: its bdev splits what A cannot take at once.
    assert_eq!(cb.max_xfer_size(), Some(MAX_IO_B as u32));
    let mut qb = cb.alloc_io_qpair(32).unwrap();
    for chunk in ext.chunks(16) {
        for (i, &(lba, len)) in chunk.iter().enumerate() {
            qb.write(1, lba, pattern(lba, len), i as u64).unwrap();
        }
        for (i, c) in wait_n(&mut qb, chunk.len()).into_iter().enumerate() {
            assert!(
                c.is_success(),
                "write via B at LBA {}: {:?}\nB log:\n{}",
                chunk[i].0,
                c.status,
                b.log()
            );
        }
    }
    let total: usize = ext.iter().map(|e| e.1).sum();
    assert!(total > 4 << 20, "{total} bytes written");
    read_and_check(&mut qb, &ext, MAX_IO_B, 16, "B");

    // The same LBAs read on A directly hold the same bytes.
    let mut ca = connect(port_a, NQN_A);
    let mut qa = ca.alloc_io_qpair(32).unwrap();
    read_and_check(&mut qa, &ext, MAX_IO, 16, "A");
    // A block written by nobody is still zero on A (the pattern did not spill).
    qa.read(1, 8, vec![0xff; BS], 99).unwrap();
    let c = wait_n(&mut qa, 1).pop().unwrap();
    assert!(c.is_success());
    assert_eq!(c.buf, vec![0u8; BS]);
    ca.free_io_qpair(qa);
    ca.shutdown().unwrap();

    // Detach NvmeA on B while a thread keeps 16 reads (alternately 4 KiB and 128 KiB, so B
    // has I/O in flight to A) going through B.
    let detached = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let io = {
        let (detached, progress) = (Arc::clone(&detached), Arc::clone(&progress));
        std::thread::spawn(move || -> IoOutcome {
            let mut r = IoOutcome::default();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut out = Vec::new();
            let mut submitted = 0u64;
            // Keep submitting until 32 reads failed after the detach answered, then drain.
            let mut submitting = true;
            while submitting || qb.outstanding() > 0 {
                if Instant::now() > deadline {
                    break;
                }
                while submitting && qb.outstanding() < 16 {
                    let len = if submitted.is_multiple_of(2) {
                        IN_CAPSULE
                    } else {
                        MAX_IO
                    };
                    let lba = 16_384 + (submitted % 32) * (MAX_IO / BS) as u64;
                    match qb.read(1, lba, vec![0; len], submitted) {
                        Ok(_) => submitted += 1,
                        Err(rej) => {
                            r.host_err = Some(rej.error);
                            return r;
                        }
                    }
                }
                out.clear();
                if let Err(e) = qb.process_completions(&mut out) {
                    r.host_err = Some(e);
                    return r;
                }
                let after = detached.load(Ordering::Acquire);
                for c in out.drain(..) {
                    if c.is_success() {
                        if after {
                            r.ok_after += 1;
                        } else {
                            r.ok_before += 1;
                            progress.fetch_add(1, Ordering::Release);
                        }
                    } else {
                        r.failed.push(c);
                    }
                }
                if after && r.failed.len() >= 32 {
                    submitting = false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            r.left = qb.outstanding();
            r.submitted = submitted;
            r
        })
    };
    // Let some reads succeed before the detach (bounded wait).
    wait_progress(&progress);
    let detach_started = Instant::now();
    let r = b.call(
        "bdev_nvme_detach_controller",
        Some(json!({"name": "NvmeA"})),
    );
    detached.store(true, Ordering::Release);
    assert_eq!(r.unwrap(), json!(true), "B log:\n{}", b.log());
    assert!(detach_started.elapsed() < Duration::from_secs(15));
    // After the detach, I/O through B fails within a bounded time and nothing stays
    // outstanding (the thread gives up after 30 s overall).
    let r = io.join().unwrap();
    assert!(r.host_err.is_none(), "queue pair failed: {:?}", r.host_err);
    assert_eq!(r.left, 0, "I/O still outstanding on B after detach: {r:?}");
    assert!(
        r.ok_before > 0,
        "no read succeeded before the detach: {r:?}"
    );
    assert!(
        r.failed.len() >= 32,
        "too few failed reads after detach: {r:?}\nB log:\n{}",
        b.log()
    );
    for c in &r.failed {
        assert!(!c.is_success());
        assert_eq!(
            c.buf.len(),
            if c.tag.is_multiple_of(2) {
                IN_CAPSULE
            } else {
                MAX_IO
            }
        );
    }
    // Once the namespace is gone, B answers Invalid Namespace or Format, Do Not Retry, as
    // SPDK's nvmf does for an inactive NSID.
    assert_eq!(
        r.failed.last().unwrap().status,
        Status::new(Sct::GENERIC, GenericStatus::INVALID_NAMESPACE_OR_FORMAT.0).with_dnr()
    );

    // B still answers: NvmeAn1 is gone, the subsystem is still listed.
    let err = b
        .call("bdev_get_bdevs", Some(json!({"name": "NvmeAn1"})))
        .unwrap_err();
    assert_eq!(err.code, -19, "{err:?}");
    let all = b.call("bdev_get_bdevs", None).unwrap();
    assert_eq!(all, json!([]));
    assert_eq!(
        b.call("bdev_nvme_get_controllers", None).unwrap(),
        json!([])
    );
    let subs = b.call("nvmf_get_subsystems", None).unwrap();
    let nqns: Vec<&str> = subs
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["nqn"].as_str().unwrap())
        .collect();
    assert!(nqns.contains(&NQN_B), "{subs}");

    // A is unaffected by B's detach: still serving the data.
    let mut ca = connect(port_a, NQN_A);
    let mut qa = ca.alloc_io_qpair(32).unwrap();
    read_and_check(&mut qa, &ext, MAX_IO, 16, "A after detach");
    ca.free_io_qpair(qa);
    ca.shutdown().unwrap();
    drop(cb);

    b.signal("TERM");
    let st = b.wait_exit(Duration::from_secs(15));
    assert_eq!(
        st.map(|s| s.code()),
        Some(Some(0)),
        "B did not exit 0 on SIGTERM; log:\n{}",
        b.log()
    );
    let log = b.log();
    assert!(!log.contains("panicked"), "{log}");
    drop(a);
}

#[test]
fn target_a_killed_under_io_fails_io_through_b_and_b_survives() {
    kill_a_under_io_through_b(&[]);
}

#[test]
fn interrupt_mode_target_a_killed_under_io_fails_io_through_b_and_b_survives() {
    kill_a_under_io_through_b(&["--interrupt-mode"]);
}

/// A and B started with `args`.
fn kill_a_under_io_through_b(args: &[&str]) {
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = start_target_a_with(port_a, args);
    // B talks to A with header and data digests; the test talks to B with digests too.
    let mut b = start_target_b_with(port_a, port_b, json!({"hdgst": true, "ddgst": true}), args);
    let digests = ControllerOpts {
        header_digest: true,
        data_digest: true,
        ..Default::default()
    };
    let mut cb = connect_with(port_b, NQN_B, digests);
    let mut qb = cb.alloc_io_qpair(32).unwrap();
    let ext = &extents()[..8];
    for (i, &(lba, len)) in ext.iter().enumerate() {
        qb.write(1, lba, pattern(lba, len), i as u64).unwrap();
    }
    for c in wait_n(&mut qb, ext.len()) {
        assert!(c.is_success(), "write {}: {:?}", c.tag, c.status);
    }
    read_and_check(&mut qb, ext, MAX_IO_B, 16, "B with digests");

    // Keep 16 writes of 128 KiB in flight through B, then kill A.
    let killed = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let io = {
        let (killed, progress) = (Arc::clone(&killed), Arc::clone(&progress));
        std::thread::spawn(move || -> (IoOutcome, IoQpair) {
            let mut r = IoOutcome::default();
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut out = Vec::new();
            let mut submitted = 0u64;
            let mut submitting = true;
            while (submitting || qb.outstanding() > 0) && Instant::now() < deadline {
                while submitting && qb.outstanding() < 16 {
                    let lba = 16_384 + (submitted % 32) * (MAX_IO / BS) as u64;
                    match qb.write(1, lba, pattern(lba, MAX_IO), submitted) {
                        Ok(_) => submitted += 1,
                        Err(rej) => {
                            r.host_err = Some(rej.error);
                            return (r, qb);
                        }
                    }
                }
                out.clear();
                if let Err(e) = qb.process_completions(&mut out) {
                    r.host_err = Some(e);
                    return (r, qb);
                }
                let after = killed.load(Ordering::Acquire);
                for c in out.drain(..) {
                    match (c.is_success(), after) {
                        (true, false) => {
                            r.ok_before += 1;
                            progress.fetch_add(1, Ordering::Release);
                        }
                        (true, true) => r.ok_after += 1,
                        (false, _) => r.failed.push(c),
                    }
                }
                if after && r.failed.len() >= 16 {
                    submitting = false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            r.left = qb.outstanding();
            r.submitted = submitted;
            (r, qb)
        })
    };
    wait_progress(&progress);
    a.signal("KILL");
    killed.store(true, Ordering::Release);
    assert!(a.wait_exit(Duration::from_secs(10)).is_some());
    let (r, qb) = io.join().unwrap();
    assert!(
        r.host_err.is_none(),
        "queue pair to B failed: {:?}",
        r.host_err
    );
    assert_eq!(
        r.left, 0,
        "writes still outstanding on B after A died: {r:?}"
    );
    assert!(r.ok_before > 0, "no write succeeded before A died: {r:?}");
    assert!(
        r.failed.len() >= 16,
        "too few failed writes after A died: {r:?}\nB log:\n{}",
        b.log()
    );
    assert!(
        r.failed
            .iter()
            .all(|c| !c.is_success() && c.buf.len() == MAX_IO)
    );
    cb.free_io_qpair(qb);

    // B still answers RPCs and keeps the failed controller (no reconnect_delay_sec: as SPDK,
    // a failed controller stays until detached); detaching it succeeds, and afterwards
    // neither the controller nor its bdev is listed.
    let subs = b.call("nvmf_get_subsystems", None).unwrap();
    assert!(subs.to_string().contains(NQN_B), "{subs}");
    let ctrlrs = b.call("bdev_nvme_get_controllers", None).unwrap();
    assert_eq!(ctrlrs[0]["name"], json!("NvmeA"), "{ctrlrs}");
    assert_eq!(
        b.call(
            "bdev_nvme_detach_controller",
            Some(json!({"name": "NvmeA"}))
        )
        .unwrap(),
        json!(true)
    );
    assert_eq!(
        b.call("bdev_nvme_get_controllers", None).unwrap(),
        json!([])
    );
    assert_eq!(b.call("bdev_get_bdevs", None).unwrap(), json!([]));
    drop(cb);
    b.signal("TERM");
    let st = b.wait_exit(Duration::from_secs(15));
    assert_eq!(
        st.map(|s| s.code()),
        Some(Some(0)),
        "B did not exit 0 on SIGTERM; log:\n{}",
        b.log()
    );
    assert!(!b.log().contains("panicked"), "{}", b.log());
}

/// Medians of 300 one-at-a-time 4 KiB reads of LBA 64 (which holds `pattern`) on each
/// queue pair, alternating between them every 10 reads so that both see the same machine
/// load.
fn median_qd1_read_latencies(qs: [&mut IoQpair; 2]) -> [Duration; 2] {
    let mut lat = [Vec::new(), Vec::new()];
    let [q0, q1] = qs;
    for round in 0..30u64 {
        for (k, q) in [&mut *q0, &mut *q1].into_iter().enumerate() {
            for i in 0..10 {
                let t0 = Instant::now();
                q.read(1, 64, vec![0; IN_CAPSULE], round * 10 + i).unwrap();
                let c = wait_n(q, 1).pop().unwrap();
                lat[k].push(t0.elapsed());
                assert!(c.is_success(), "{:?}", c.status);
                assert!(c.buf == pattern(64, IN_CAPSULE));
            }
        }
    }
    lat.map(|mut v| {
        v.sort();
        v[v.len() / 2]
    })
}

#[test]
fn interrupt_mode_b_completes_io_from_a_without_waiting_for_a_timer() {
    let (port_a, port_b) = (free_port(), free_port());
    let _a = start_target_a_with(port_a, &["--interrupt-mode"]);
    let mut b = start_target_b_with(port_a, port_b, json!({}), &["--interrupt-mode"]);
    let mut cb = connect(port_b, NQN_B);
    let mut qb = cb.alloc_io_qpair(8).unwrap();
    qb.write(1, 64, pattern(64, IN_CAPSULE), 0).unwrap();
    assert!(wait_n(&mut qb, 1)[0].is_success());
    // One read at a time: each waits for B to notice A's answer. A sleeping reactor must be
    // woken by the socket, not by the next periodic poller (the admin queue poller runs
    // every 10 ms; without the wake-up the median is ~10 ms). The bound allows for a busy
    // machine: 5 ms plus three times the median of the same reads sent to A directly in
    // alternation.
    let mut ca = connect(port_a, NQN_A);
    let mut qa = ca.alloc_io_qpair(8).unwrap();
    let [median_b, median_a] = median_qd1_read_latencies([&mut qb, &mut qa]);
    ca.free_io_qpair(qa);
    ca.shutdown().unwrap();
    let bound = Duration::from_millis(5) + 3 * median_a;
    assert!(
        median_b < bound,
        "median QD1 read latency through interrupt-mode B {median_b:?}, directly on A \
         {median_a:?}"
    );
    cb.free_io_qpair(qb);
    cb.shutdown().unwrap();
    b.signal("TERM");
    assert_eq!(
        b.wait_exit(Duration::from_secs(15)).map(|s| s.code()),
        Some(Some(0)),
        "{}",
        b.log()
    );
}

/// A and B started with `args`; B attaches with `reconnect_delay_sec` 1 and no loss
/// timeout. A is killed and started again on the same port: reads through B work again.
fn restart_a_and_b_reconnects(args: &[&str]) {
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = start_target_a_with(port_a, args);
    let mut b = start_target_b_with(
        port_a,
        port_b,
        json!({"ctrlr_loss_timeout_sec": -1, "reconnect_delay_sec": 1}),
        args,
    );
    let mut cb = connect(port_b, NQN_B);
    let mut qb = cb.alloc_io_qpair(8).unwrap();
    qb.write(1, 64, pattern(64, IN_CAPSULE), 0).unwrap();
    assert!(wait_n(&mut qb, 1)[0].is_success());
    a.signal("KILL");
    assert!(a.wait_exit(Duration::from_secs(10)).is_some());
    drop(a);
    // While A is down, reads through B fail (bounded) rather than hang.
    qb.read(1, 64, vec![0; IN_CAPSULE], 1).unwrap();
    let down = wait_n(&mut qb, 1).pop().unwrap();
    assert!(!down.is_success());
    let _a2 = start_target_a_with(port_a, args);
    // A fresh malloc bdev reads zeroes; B reconnects within a few reconnect delays.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tag = 2;
    loop {
        qb.read(1, 64, vec![0xff; IN_CAPSULE], tag).unwrap();
        let c = wait_n(&mut qb, 1).pop().unwrap();
        if c.is_success() {
            assert_eq!(c.buf, vec![0u8; IN_CAPSULE]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never reconnected to A: {:?}\nB log:\n{}",
            c.status,
            b.log()
        );
        tag += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    qb.write(1, 64, pattern(64, IN_CAPSULE), 1000).unwrap();
    assert!(wait_n(&mut qb, 1)[0].is_success());
    qb.read(1, 64, vec![0; IN_CAPSULE], 1001).unwrap();
    assert!(wait_n(&mut qb, 1)[0].buf == pattern(64, IN_CAPSULE));
    cb.free_io_qpair(qb);
    cb.shutdown().unwrap();
    b.signal("TERM");
    assert_eq!(
        b.wait_exit(Duration::from_secs(15)).map(|s| s.code()),
        Some(Some(0)),
        "{}",
        b.log()
    );
}

#[test]
fn b_reconnects_to_a_restarted_target() {
    restart_a_and_b_reconnects(&[]);
}

#[test]
fn interrupt_mode_b_reconnects_to_a_restarted_target() {
    restart_a_and_b_reconnects(&["--interrupt-mode"]);
}
