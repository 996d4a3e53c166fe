//! Interrupt mode: a reactor that sleeps in epoll wakes up for data on an NVMe/TCP socket
//! (the poll group registers each connection's fd), instead of waiting for the next timer.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::{ConnectCmd, PropertyGetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use std::time::{Duration, Instant};

#[test]
fn sleeping_interrupt_mode_reactor_answers_socket_data_without_waiting_for_a_timer() {
    let port = free_port();
    // The acceptor is the only periodic poller: once every 3 s.
    let r = start_interrupt_mode_target(port, "IrqMalloc0", 3_000_000);

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
