//! Interrupt mode with a host that does not read its responses: once the socket would block,
//! the reactor sleeps (it waits for writability, and stops waiting for input past the output
//! limit) instead of spinning; when the host reads, every response arrives intact.
//! Its own test binary: the socket options are process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::{ConnectCmd, PropertySetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::PduHeader;
use nvme::spec::tcp::pdu::{CapsuleCmd, FLAG_SUCCESS};
use std::time::{Duration, Instant};

const READS: u16 = 31;
const READ_LEN: usize = 16 * 1024;

#[test]
fn reactor_sleeps_while_the_host_does_not_read_and_delivers_everything_after() {
    // Small target send buffers (Linux doubles 4096), so unread responses block the socket.
    set_send_buf(4096);
    let port = free_port();
    let r = start_interrupt_mode_target(port, "BpMalloc0", 200_000);

    let mut a = blocking_host(port);
    a.ic_blocking();
    let (c, _) = a.cmd_blocking(
        ConnectCmd::new(1, 0, 31, 0).to_sqe(),
        Some(&connect_data(0xffff)),
        1024,
    );
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    let (c, _) = a.cmd_blocking(
        PropertySetCmd::new(2, PropertySize::Four, PropertyOffset::CC, 0x0046_0001).to_sqe(),
        None,
        0,
    );
    ok(&c);
    let mut h = blocking_host(port);
    h.ic_blocking();
    let (c, _) = h.cmd_blocking(
        ConnectCmd::new(1, 1, 31, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);

    // 31 reads of 16 KiB (496 KiB of C2HData) sent at once, none read.
    for cid in 0..READS {
        let mut sqe = rw(0x02, 100 + cid, u64::from(cid) * 32, 31);
        sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock {
            length: READ_LEN as u32,
        });
        h.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
    }
    // The target fills the socket, then must sleep: sample the reactor for 1 s.
    std::thread::sleep(Duration::from_millis(300));
    let mut awake = 0;
    for _ in 0..20 {
        if !r.stats()[0].in_interrupt {
            awake += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        awake <= 2,
        "reactor awake in {awake} of 20 samples while the host reads nothing (spinning)"
    );

    // Now the host reads: every read completes with its data (the writability wakeup works).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut data: Vec<usize> = vec![0; READS as usize];
    let mut done = 0;
    while done < READS {
        assert!(Instant::now() < deadline, "only {done} reads completed");
        let p = h.recv_blocking();
        match p.header {
            PduHeader::C2hData(c) => {
                let i = usize::from(c.cccid.get() - 100);
                data[i] += p.data.len();
                if c.ch.flags & FLAG_SUCCESS != 0 {
                    done += 1;
                }
            }
            PduHeader::CapsuleResp(rsp) => {
                ok(&rsp.cqe);
                done += 1;
            }
            other => panic!("unexpected PDU {other:?}"),
        }
    }
    assert!(data.iter().all(|&n| n == READ_LEN), "{data:?}");
    r.stop();
    r.wait().unwrap();
}
