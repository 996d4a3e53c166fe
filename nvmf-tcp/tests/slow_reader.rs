//! A host that reads its responses slowly through small socket buffers: the target's vectored
//! writes of C2HData (headers, the read buffers themselves, data digests) stop part way
//! through pieces and resume, and the host still gets every byte, digest and completion in
//! order. Its own test binary: the socket options are process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use env::sock::{SockImplOpts, sock_impl_set_opts};
use nvme::spec::Sqe;
use nvme::spec::fabrics::ConnectCmd;
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::pdu::{CapsuleCmd, FLAG_LAST_PDU, FLAG_SUCCESS};
use nvme::spec::tcp::{PduEnd, PduHeader};
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

const READ_LEN: usize = 128 * 1024;

#[test]
fn queued_reads_reach_a_slow_host_intact_through_partial_writes() {
    // The target's sockets get an 8 KiB send buffer (Linux doubles 4096).
    set_send_buf(4096);
    let env = setup("TcpSlowMalloc0");
    let (_admin, cntlid) = admin(&env, false, false);
    // Fill the namespace (512 KiB) with a known pattern through a normal host.
    let mut w = env.connect();
    env.ic(&mut w, false, true);
    let (c, _) = env.cmd(
        &mut w,
        ConnectCmd::new(1, 1, 31, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);
    let pattern: Vec<u8> = (0..4 * READ_LEN).map(|i| (i * 31 % 253) as u8).collect();
    for (i, chunk) in pattern.chunks(READ_LEN).enumerate() {
        let (c, _) = env.cmd(
            &mut w,
            rw(0x01, 10 + i as u16, (i * 256) as u64, 255),
            Some(chunk),
            READ_LEN as u32,
        );
        ok(&c);
    }
    drop(w);

    // The slow host: a 4 KiB receive buffer set before connecting, digests on.
    let mut h = slow_host(&env);
    env.ic(&mut h, true, true);
    let (c, _) = env.cmd(
        &mut h,
        ConnectCmd::new(1, 1, 31, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);
    // Four 128 KiB reads at once, nothing read back while the target works on them.
    for i in 0..4u16 {
        let mut sqe: Sqe = rw(0x02, 20 + i, u64::from(i) * 256, 255);
        sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock {
            length: READ_LEN as u32,
        });
        h.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
    }
    // While output waits the poll group stays busy (interrupt mode must not sleep on it),
    // so poll the Threads a bounded number of times instead of until idle.
    spin(&env, 50);
    // Now read 1000 bytes at a time, letting the target continue between reads.
    let mut got = vec![Vec::new(); 4];
    let mut done = 0;
    let mut wire = 0usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1000];
    while done < 4 {
        assert!(Instant::now() < deadline, "reads not complete: {done} of 4");
        spin(&env, 2);
        match h.s.read(&mut buf) {
            Ok(0) => panic!("target closed the connection"),
            Ok(n) => {
                wire += n;
                h.pending.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => panic!("{e}"),
        }
        loop {
            let (n, p) = h.r.read(&h.pending).unwrap();
            h.pending.drain(..n);
            let Some(p) = p else { break };
            assert_eq!(p.end, PduEnd::Ok, "data digest");
            let PduHeader::C2hData(d) = p.header else {
                panic!("unexpected PDU {:?}", p.header)
            };
            let i = usize::from(d.cccid.get() - 20);
            assert_eq!(d.datao.get() as usize, got[i].len());
            got[i].extend_from_slice(&p.data);
            if d.ch.flags & FLAG_SUCCESS != 0 {
                assert_ne!(d.ch.flags & FLAG_LAST_PDU, 0);
                assert_eq!(i, done, "completions in submission order");
                done += 1;
            }
            if h.pending.is_empty() {
                break;
            }
        }
    }
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g[..],
            pattern[i * READ_LEN..(i + 1) * READ_LEN],
            "read {i} data"
        );
    }
    // One C2HData per read: header 24 + HDGST 4, data, DDGST 4.
    assert_eq!(wire, 4 * (24 + 4 + READ_LEN + 4));
    sock_impl_set_opts("posix", SockImplOpts::POSIX).unwrap();
}
