//! Interrupt mode: a write waiting for an iobuf buffer is retried when buffers come back on
//! another thread, although nothing wakes the sleeping reactor for it (the poll group arms a
//! short timer while writes wait). Alone in its own test binary because it empties the
//! process-wide pool.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::{ConnectCmd, PropertySetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::PduHeader;
use nvme::spec::tcp::pdu::{CapsuleCmd, H2cData};
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

#[test]
fn interrupt_mode_write_waiting_for_a_buffer_proceeds_when_one_returns_elsewhere() {
    let port = free_port();
    // The acceptor is the only other periodic poller: once every 3 s.
    let r = start_interrupt_mode_target(port, "IrqWaitMalloc0", 3_000_000);
    let mut admin = blocking_host(port);
    admin.ic_blocking();
    let (c, _) = admin.cmd_blocking(
        ConnectCmd::new(1, 0, 31, 0).to_sqe(),
        Some(&connect_data(0xffff)),
        1024,
    );
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    let (c, _) = admin.cmd_blocking(
        PropertySetCmd::new(2, PropertySize::Four, PropertyOffset::CC, 0x0046_0001).to_sqe(),
        None,
        0,
    );
    ok(&c);
    let mut io = blocking_host(port);
    io.ic_blocking();
    let (c, _) = io.cmd_blocking(
        ConnectCmd::new(1, 1, 127, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);

    // Every large buffer of the global ring.
    let held = drain_large_pool();

    let pat: Vec<u8> = (0..65536u32).map(|i| (i % 241) as u8).collect();
    let mut sqe = rw(0x01, 9, 0, 127);
    sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock { length: 65536 });
    io.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
    // No buffer: no R2T; the reactor falls asleep.
    io.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    match io.s.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the target answered without a buffer: {other:?}"),
    }
    assert!(
        r.stats()[0].in_interrupt,
        "reactor asleep while the write waits"
    );

    // Buffers return on this thread: nothing wakes the reactor but its retry timer (the next
    // acceptor poll is up to 3 s away).
    let t = Instant::now();
    drop(held);
    io.s.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let p = io.recv_blocking();
    let took = t.elapsed();
    let PduHeader::R2t(t2) = p.header else {
        panic!("expected R2T once buffers are back, got {:?}", p.header)
    };
    assert!(
        took < Duration::from_millis(1000),
        "R2T came {took:?} after the buffers returned"
    );
    assert_eq!(
        (t2.cccid.get(), t2.r2to.get(), t2.r2tl.get()),
        (9, 0, 65536)
    );
    io.send(
        &PduHeader::H2cData(H2cData::new(9, t2.ttag.get(), 0, 65536, true)),
        &pat,
    );
    let p = io.recv_blocking();
    let PduHeader::CapsuleResp(rsp) = p.header else {
        panic!("expected the write's response, got {:?}", p.header)
    };
    ok(&rsp.cqe);
    let (c, data) = io.cmd_blocking(rw(0x02, 10, 0, 127), None, 65536);
    ok(&c);
    assert_eq!(data, pat);
    r.stop();
    r.wait().unwrap();
}
