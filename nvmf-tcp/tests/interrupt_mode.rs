//! Interrupt mode: a reactor that sleeps in epoll wakes up for data on an NVMe/TCP socket
//! (the poll group registers each connection's fd), instead of waiting for the next timer.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use env::{CpuMask, ReactorOpts, Reactors, Thread};
use nvme::spec::fabrics::{ConnectCmd, PropertyGetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvmf::{ListenAddr, SubType, Subsystem, Target, TransportOpts};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn sleeping_interrupt_mode_reactor_answers_socket_data_without_waiting_for_a_timer() {
    let port = free_port();
    let (tx, rx) = mpsc::channel::<()>();
    let core = CpuMask::all_available().first().unwrap();
    let r = Reactors::start(
        ReactorOpts {
            cpumask: CpuMask::single(core).unwrap(),
            interrupt_mode: true,
        },
        move || {
            let tgt = Target::new("nvmf_tgt").unwrap();
            tgt.register_transport_factory("TCP", nvmf_tcp::factory());
            let me = Thread::current().unwrap().handle();
            tgt.start(vec![me], || {}).unwrap();
            // The acceptor is the only periodic poller: once every 3 s.
            let opts = TransportOpts {
                acceptor_poll_rate: 3_000_000,
                ..TransportOpts::default()
            };
            let t2 = tgt.clone();
            tgt.create_transport("TCP", opts, move |res| {
                res.unwrap();
                bdev_malloc::create(&bdev_malloc::MallocOpts::new("IrqMalloc0", 1024, 512))
                    .unwrap();
                let mut s = Subsystem::new(SUBNQN, SubType::Nvme);
                s.allow_any_host = true;
                t2.create_subsystem(s).unwrap();
                t2.add_ns(SUBNQN, "IrqMalloc0", 0, None, None, None, 0, false)
                    .unwrap();
                t2.add_listener(
                    SUBNQN,
                    ListenAddr::tcp("127.0.0.1", &port.to_string()),
                    false,
                )
                .unwrap();
                let t3 = t2.clone();
                t2.update(move || {
                    tx.send(()).unwrap();
                    // Keep the target alive for the reactor's lifetime.
                    std::mem::forget(t3);
                });
            });
        },
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(20)).unwrap();

    // A host on its own OS thread: blocking socket, so no pumping of env Threads.
    let mut h = blocking_host(port);
    h.ic_blocking();
    let (c, _) = h.cmd_blocking(
        ConnectCmd::new(1, 0, 31, 0).to_sqe(),
        Some(&connect_data(0xffff)),
        1024,
    );
    ok(&c);
    // Let the reactor fall asleep, then time three commands.
    for cid in 2..5u16 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            r.stats()[0].in_interrupt,
            "reactor asleep before command {cid}"
        );
        let t = Instant::now();
        let get = PropertyGetCmd::new(cid, PropertySize::Four, PropertyOffset::CSTS).to_sqe();
        let (c, _) = h.cmd_blocking(get, None, 0);
        let took = t.elapsed();
        ok(&c);
        assert_eq!(c.cid(), cid);
        assert_eq!(c.dw0.get(), 0, "CSTS before CC.EN");
        assert!(
            took < Duration::from_millis(1000),
            "command {cid} answered after {took:?} (the next timer is 3 s away)"
        );
    }
    r.stop();
    r.wait().unwrap();
}
