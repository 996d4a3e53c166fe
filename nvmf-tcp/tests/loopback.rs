//! End to end over real loopback sockets: a Target with a malloc namespace on env::testing
//! Threads, a raw NVMe/TCP host built on the shared PDU framer.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::Sqe;
use nvme::spec::fabrics::ConnectCmd;

#[test]
fn connect_identify_write_read_over_loopback() {
    let env = setup("TcpMalloc0");
    let (mut a, cntlid) = admin(&env, true, true);
    let mut id = Sqe::new(0x06, 3);
    id.cdw10 = 1.into();
    let (c, d) = env.cmd(&mut a, id, None, 4096);
    ok(&c);
    assert_eq!(d.len(), 4096);
    assert_eq!(
        u16::from_le_bytes([d[78], d[79]]),
        cntlid,
        "Identify CNTLID"
    );
    // I/O queue.
    let mut io = env.connect();
    env.ic(&mut io, false, true);
    let (c, _) = env.cmd(
        &mut io,
        ConnectCmd::new(1, 1, 127, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);
    // In-capsule write of 8 blocks, then an R2T write of 32 blocks.
    let small: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let (c, _) = env.cmd(&mut io, rw(0x01, 2, 10, 7), Some(&small), 4096);
    ok(&c);
    let big: Vec<u8> = (0..16384u32).map(|i| (i * 13 % 241) as u8).collect();
    let (c, _) = env.cmd(&mut io, rw(0x01, 3, 100, 31), Some(&big), 16384);
    ok(&c);
    let (c, d) = env.cmd(&mut io, rw(0x02, 4, 10, 7), None, 4096);
    ok(&c);
    assert_eq!(d, small);
    let (c, d) = env.cmd(&mut io, rw(0x02, 5, 100, 31), None, 16384);
    ok(&c);
    assert_eq!(d, big);
    // Out of range read: CapsuleResp with the error, no data.
    let (c, d) = env.cmd(&mut io, rw(0x02, 6, 1020, 7), None, 4096);
    assert_eq!(c.status().sc, 0x80, "LBA out of range");
    assert!(d.is_empty());
}
