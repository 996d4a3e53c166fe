//! Messages bounce between Threads on two reactors, in busy and in interrupt mode: every
//! message arrives (no loss, no lost wakeup) within a bounded time.

#![allow(clippy::unwrap_used)] // test code

use env::{CpuMask, ReactorOpts, Reactors, ThreadHandle};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const ROUND_TRIPS: u32 = 5_000;

fn bounce(peers: Arc<[OnceLock<ThreadHandle>; 2]>, side: usize, n: u32, done: mpsc::Sender<u32>) {
    if n == ROUND_TRIPS * 2 {
        done.send(n).unwrap();
        return;
    }
    let other = 1 - side;
    let p = peers.clone();
    let target = peers[other].get().unwrap();
    target
        .send_msg(move || bounce(p, other, n + 1, done))
        .unwrap();
}

fn run(interrupt_mode: bool) {
    let cores: CpuMask = CpuMask::all_available().cores().take(2).collect();
    let list: Vec<u32> = cores.cores().collect();
    let r = Reactors::start(
        ReactorOpts {
            cpumask: cores,
            interrupt_mode,
        },
        || {},
    )
    .unwrap();
    let peers: Arc<[OnceLock<ThreadHandle>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
    for (i, core) in [0, list.len() - 1].into_iter().map(|i| (i, list[i])) {
        let h = r.spawn_thread(core, &format!("pp{i}"), || {}).unwrap();
        peers[i.min(1)].set(h).unwrap();
    }
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let p = peers.clone();
    peers[0]
        .get()
        .unwrap()
        .send_msg(move || bounce(p, 0, 0, tx))
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(60));
    r.stop();
    r.wait().unwrap();
    assert_eq!(got, Ok(ROUND_TRIPS * 2), "after {:?}", start.elapsed());
}

#[test]
fn ping_pong_between_two_busy_reactors_loses_nothing() {
    run(false);
}

#[test]
fn ping_pong_between_two_interrupt_mode_reactors_never_loses_a_wakeup() {
    run(true);
}
