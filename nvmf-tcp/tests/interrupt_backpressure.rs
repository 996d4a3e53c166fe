//! Interrupt mode with a host that does not read its responses: once the socket would block,
//! the reactor sleeps (it waits for writability, and stops waiting for input past the output
//! limit) instead of spinning; when the host reads, every response arrives intact.
//! Its own test binary: the socket options are process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use env::sock::{SockImplOpts, sock_impl_set_opts};
use env::{CpuMask, ReactorOpts, Reactors, Thread};
use nvme::spec::fabrics::{ConnectCmd, PropertySetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::PduHeader;
use nvme::spec::tcp::pdu::{CapsuleCmd, FLAG_SUCCESS};
use nvmf::{ListenAddr, SubType, Subsystem, Target, TransportOpts};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const READS: u16 = 31;
const READ_LEN: usize = 16 * 1024;

#[test]
fn reactor_sleeps_while_the_host_does_not_read_and_delivers_everything_after() {
    // Small target send buffers (Linux doubles 4096), so unread responses block the socket.
    sock_impl_set_opts(
        "posix",
        SockImplOpts {
            send_buf_size: 4096,
            recv_buf_size: 0,
            ..SockImplOpts::POSIX
        },
    )
    .unwrap();
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
            let opts = TransportOpts {
                acceptor_poll_rate: 200_000,
                ..TransportOpts::default()
            };
            let t2 = tgt.clone();
            tgt.create_transport("TCP", opts, move |res| {
                res.unwrap();
                bdev_malloc::create(&bdev_malloc::MallocOpts::new("BpMalloc0", 1024, 512)).unwrap();
                let mut s = Subsystem::new(SUBNQN, SubType::Nvme);
                s.allow_any_host = true;
                t2.create_subsystem(s).unwrap();
                t2.add_ns(SUBNQN, "BpMalloc0", 0, None, None, None, 0, false)
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
                    std::mem::forget(t3);
                });
            });
        },
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(20)).unwrap();

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
