//! H2C data buffers come from the env iobuf pool: a write that cannot get one waits (no R2T,
//! no error) and proceeds once a buffer is returned. Alone in its own test binary because it
//! empties the process-wide pool.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::ConnectCmd;
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::PduHeader;
use nvme::spec::tcp::pdu::{CapsuleCmd, H2cData};
use std::io::{ErrorKind, Read};

#[test]
fn write_waits_for_an_iobuf_buffer_instead_of_failing() {
    let env = setup("IobufMalloc0");
    let (_admin, cntlid) = admin(&env, false, false);
    let mut io = env.connect();
    env.ic(&mut io, false, false);
    let (c, _) = env.cmd(
        &mut io,
        ConnectCmd::new(1, 1, 127, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);

    // Every large buffer of the global ring.
    let held = drain_large_pool();

    let pat: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    let mut sqe = rw(0x01, 7, 0, 127);
    sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock { length: 65536 });
    io.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
    for _ in 0..30 {
        env.pump();
    }
    let mut byte = [0u8; 1];
    match io.s.read(&mut byte) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the target answered without a buffer: {other:?}"),
    }

    drop(held);
    let p = env.recv(&mut io).unwrap();
    let PduHeader::R2t(t) = p.header else {
        panic!("expected R2T once buffers are back, got {:?}", p.header)
    };
    assert_eq!((t.cccid.get(), t.r2to.get(), t.r2tl.get()), (7, 0, 65536));
    io.send(
        &PduHeader::H2cData(H2cData::new(7, t.ttag.get(), 0, 65536, true)),
        &pat,
    );
    let p = env.recv(&mut io).unwrap();
    let PduHeader::CapsuleResp(r) = p.header else {
        panic!("expected CapsuleResp, got {:?}", p.header)
    };
    ok(&r.cqe);
    let (c, d) = env.cmd(&mut io, rw(0x02, 8, 0, 127), None, 65536);
    ok(&c);
    assert_eq!(d, pat);
}
