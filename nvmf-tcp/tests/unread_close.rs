//! A connection that must close (protocol error) while the host reads nothing: its TermReq
//! sits behind unsent read data; after a bounded wait the target closes the socket and drops
//! the rest, instead of holding the data buffers until the host reads.
//! Its own test binary: the socket options are process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::ConnectCmd;
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::PduHeader;
use nvme::spec::tcp::pdu::{CapsuleCmd, IcReq};
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

const READ_LEN: usize = 128 * 1024;

#[test]
fn terminating_connection_with_unread_output_closes_after_a_bounded_wait() {
    set_send_buf(4096);
    let env = setup("TcpUnreadMalloc0");
    let (_admin, cntlid) = admin(&env, false, false);
    let mut h = slow_host(&env);
    env.ic(&mut h, false, false);
    let (c, _) = env.cmd(
        &mut h,
        ConnectCmd::new(1, 1, 31, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);
    // Four 128 KiB reads, none read back; then a second ICReq (a protocol error: TermReq).
    for i in 0..4u16 {
        let mut sqe = rw(0x02, 20 + i, u64::from(i) * 256, 255);
        sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock {
            length: READ_LEN as u32,
        });
        h.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
    }
    spin(&env, 50);
    h.send(&PduHeader::IcReq(IcReq::new(0, false, false, 0)), &[]);
    // 1.5 s of target polls with the host reading nothing.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        spin(&env, 5);
        std::thread::sleep(Duration::from_millis(5));
    }
    // The host now reads to the end: the connection is closed and most of the 512 KiB of
    // read data never came (dropped with the connection, buffers back to the pool).
    let mut total = 0usize;
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "connection still open after 10 s"
        );
        spin(&env, 2);
        match h.s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        total < 4 * READ_LEN,
        "{total} bytes arrived: the target waited for the host to read everything"
    );
}
