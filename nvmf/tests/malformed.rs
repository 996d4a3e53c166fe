//! Table-driven: every malformed or out-of-state command with the status the spec (and SPDK)
//! assigns, asserted exactly (SCT, SC, DNR, and DW0 where it carries IATTR/IPO).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::{Sct, Sqe, Status};
use nvmf::testing::TestHost;

const G: Sct = Sct::GENERIC;
const CS: Sct = Sct::COMMAND_SPECIFIC;

struct Row {
    name: &'static str,
    sqe: Sqe,
    data: Option<Vec<u8>>,
    len: u32,
    status: Status,
    dw0: Option<u32>,
}

fn row(name: &'static str, sqe: Sqe, data: Option<Vec<u8>>, len: u32, sct: Sct, sc: u8) -> Row {
    Row {
        name,
        sqe,
        data,
        len,
        status: Status::new(sct, sc),
        dw0: None,
    }
}

fn dnr(mut r: Row) -> Row {
    r.status = r.status.with_dnr();
    r
}

fn ipo(mut r: Row, in_data: bool, ipo: u16) -> Row {
    r.dw0 = Some(u32::from(in_data) | (u32::from(ipo) << 16));
    r
}

fn fused(mut s: Sqe, f: u8) -> Sqe {
    s.flags = (s.flags & !0x3) | f;
    s
}

fn run(env: &Env, h: &TestHost, rows: Vec<Row>) {
    for r in rows {
        let cid = r.sqe.cid();
        let (c, _) = env.cmd(h, r.sqe, r.data, r.len);
        assert_eq!(c.cid.get(), cid, "{}: cid", r.name);
        assert_eq!(c.status(), r.status, "{}: status {}", r.name, c.status());
        if let Some(d) = r.dw0 {
            assert_eq!(c.dw0.get(), d, "{}: dw0", r.name);
        }
    }
}

#[test]
fn commands_before_connect_and_bad_connects() {
    let env = setup();
    let cd = |sub: &str, cntlid| Some(connect_data(HOSTNQN, sub, cntlid));
    let mut recfmt = connect_sqe(8, 0, 31, 0);
    recfmt.cdw10 = 1.into(); // RECFMT is the low 16 bits of CDW10
    let rows = vec![
        row(
            "identify before connect",
            sqe(0x06, 1, 0, 1, 0, 0),
            None,
            4096,
            G,
            0x0c,
        ),
        row(
            "property get before connect",
            prop_get(2, PropertySize::Four, PropertyOffset::CSTS),
            None,
            0,
            G,
            0x0c,
        ),
        ipo(
            row(
                "unknown subnqn",
                connect_sqe(3, 0, 31, 0),
                cd("nqn.2016-06.io.spdk:none", 0xffff),
                1024,
                CS,
                0x82,
            ),
            true,
            256,
        ),
        row(
            "connect data too short",
            connect_sqe(4, 0, 31, 0),
            Some(vec![0; 512]),
            512,
            G,
            0x02,
        ),
        ipo(
            row(
                "sqsize 0",
                connect_sqe(5, 0, 0, 0),
                cd(SUBNQN, 0xffff),
                1024,
                CS,
                0x82,
            ),
            false,
            44,
        ),
        ipo(
            row(
                "admin sqsize >= max_aq_depth",
                connect_sqe(6, 0, 128, 0),
                cd(SUBNQN, 0xffff),
                1024,
                CS,
                0x82,
            ),
            false,
            44,
        ),
        ipo(
            row(
                "static cntlid on admin connect",
                connect_sqe(7, 0, 31, 0),
                cd(SUBNQN, 1),
                1024,
                CS,
                0x82,
            ),
            true,
            16,
        ),
        row("recfmt 1", recfmt, cd(SUBNQN, 0xffff), 1024, CS, 0x80),
        ipo(
            row(
                "io connect unknown cntlid",
                connect_sqe(9, 1, 31, 0),
                cd(SUBNQN, 77),
                1024,
                CS,
                0x82,
            ),
            true,
            16,
        ),
        ipo(
            row(
                "io sqsize >= max_queue_depth",
                connect_sqe(10, 1, 128, 0),
                cd(SUBNQN, 1),
                1024,
                CS,
                0x82,
            ),
            false,
            44,
        ),
    ];
    let h = env.connect_host();
    run(&env, &h, rows);
}

#[test]
fn io_connect_before_enable_and_qid_too_large() {
    let env = setup();
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data(HOSTNQN, SUBNQN, 0xffff)),
        1024,
    );
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    // Admin commands on a disabled controller.
    run(
        &env,
        &h,
        vec![row(
            "identify with CC.EN=0",
            sqe(0x06, 2, 0, 1, 0, 0),
            None,
            4096,
            G,
            0x0c,
        )],
    );
    let io = env.connect_host();
    run(
        &env,
        &io,
        vec![ipo(
            row(
                "io connect before CC.EN",
                connect_sqe(3, 1, 31, 0),
                Some(connect_data(HOSTNQN, SUBNQN, cntlid)),
                1024,
                CS,
                0x82,
            ),
            false,
            42,
        )],
    );
    let (c, _) = env.cmd(
        &h,
        prop_set(4, PropertyOffset::CC, u64::from(CC_ENABLE)),
        None,
        0,
    );
    ok(&c);
    let io2 = env.connect_host();
    run(
        &env,
        &io2,
        vec![row(
            "qid beyond max_qpairs_per_ctrlr",
            connect_sqe(5, 128, 31, 0),
            Some(connect_data(HOSTNQN, SUBNQN, cntlid)),
            1024,
            CS,
            0x01,
        )],
    );
}

#[test]
fn bad_admin_commands() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    let lp = |cid, lid: u32, numd: u32, off: u32| {
        let mut s = sqe(0x02, cid, 0, lid | (numd << 16), 0, off);
        s.cdw13 = 0.into();
        s
    };
    let mut unknown_fabrics = Sqe::new(0x7f, 5);
    unknown_fabrics.nsid = 0x08.into(); // fctype is byte 4 (the NSID field's first byte)
    let rows = vec![
        row(
            "connect on connected queue",
            connect_sqe(1, 0, 31, 0),
            Some(connect_data(HOSTNQN, SUBNQN, 0xffff)),
            1024,
            G,
            0x0c,
        ),
        row(
            "property get bad offset",
            prop_get(2, PropertySize::Four, PropertyOffset(0x100)),
            None,
            0,
            CS,
            0x82,
        ),
        row(
            "property set read-only CAP",
            prop_set(3, PropertyOffset::CAP, 1),
            None,
            0,
            CS,
            0x82,
        ),
        row(
            "property get 8 bytes of 4-byte CC",
            prop_get(4, PropertySize::Eight, PropertyOffset::CC),
            None,
            0,
            CS,
            0x82,
        ),
        row("fabrics disconnect", unknown_fabrics, None, 0, G, 0x01),
        row("format NVM", sqe(0x80, 6, 0, 0, 0, 0), None, 0, G, 0x01),
        row("create I/O SQ", sqe(0x01, 7, 0, 0, 0, 0), None, 0, G, 0x01),
        row(
            "fused admin",
            fused(sqe(0x06, 8, 0, 1, 0, 0), 1),
            None,
            4096,
            G,
            0x02,
        ),
        row(
            "keep alive with nsid",
            sqe(0x18, 9, 1, 0, 0, 0),
            None,
            0,
            G,
            0x02,
        ),
        row(
            "identify ns nsid 0",
            sqe(0x06, 10, 0, 0, 0, 0),
            None,
            4096,
            G,
            0x0b,
        ),
        row(
            "identify ns nsid > NN",
            sqe(0x06, 11, 33, 0, 0, 0),
            None,
            4096,
            G,
            0x0b,
        ),
        // SPDK 25.09 `nvmf_ctrlr_identify_ns_id_descriptor_list`: an inactive NSID in range
        // is Invalid Field (out of range would be Invalid Namespace or Format).
        row(
            "identify descriptors of inactive ns",
            sqe(0x06, 12, 2, 3, 0, 0),
            None,
            4096,
            G,
            0x02,
        ),
        row(
            "identify descriptors of nsid > NN",
            sqe(0x06, 12, 33, 3, 0, 0),
            None,
            4096,
            G,
            0x0b,
        ),
        row(
            "identify unsupported CNS",
            sqe(0x06, 13, 0, 0x10, 0, 0),
            None,
            4096,
            G,
            0x02,
        ),
        row(
            "identify short buffer",
            sqe(0x06, 14, 0, 1, 0, 0),
            None,
            512,
            G,
            0x02,
        ),
        row(
            "identify ctrl IOCS with ZNS CSI",
            sqe(0x06, 15, 0, 6, 2 << 24, 0),
            None,
            4096,
            G,
            0x02,
        ),
        row(
            "discovery log on I/O controller",
            lp(16, 0x70, 255, 0),
            None,
            1024,
            CS,
            0x09,
        ),
        row(
            "unknown log page",
            lp(17, 0x42, 127, 0),
            None,
            512,
            CS,
            0x09,
        ),
        row(
            "log page offset not dword aligned",
            lp(18, 0x02, 127, 2),
            None,
            512,
            G,
            0x02,
        ),
        row(
            "log page longer than buffer",
            lp(19, 0x02, 255, 0),
            None,
            512,
            G,
            0x02,
        ),
        row(
            "get unknown feature",
            sqe(0x0a, 20, 0, 0x7e, 0, 0),
            None,
            0,
            G,
            0x02,
        ),
        row(
            "set feature with save",
            sqe(0x09, 21, 0, 0x01 | (1 << 31), 0, 0),
            None,
            0,
            CS,
            0x0d,
        ),
        row(
            "set interrupt coalescing",
            sqe(0x09, 22, 0, 0x08, 0, 0),
            None,
            0,
            CS,
            0x0e,
        ),
        row(
            "set host identifier",
            sqe(0x09, 23, 0, 0x81, 1, 0),
            None,
            16,
            G,
            0x0c,
        ),
        row(
            "get host identifier EXHID=0",
            sqe(0x0a, 24, 0, 0x81, 0, 0),
            None,
            16,
            G,
            0x02,
        ),
        row(
            "set power state 1",
            sqe(0x09, 25, 0, 0x02, 1, 0),
            None,
            0,
            G,
            0x02,
        ),
        row(
            "set unknown feature",
            sqe(0x09, 26, 0, 0x7e, 0, 0),
            None,
            0,
            G,
            0x02,
        ),
    ];
    run(&env, &h, rows);
    // Four AERs are accepted (no answer yet); the fifth exceeds AERL.
    for cid in 40..44 {
        h.submit(sqe(0x0c, cid, 0, 0, 0, 0), None, 0);
    }
    env.poll();
    assert!(h.take_response().is_none());
    run(
        &env,
        &h,
        vec![row(
            "fifth AER",
            sqe(0x0c, 44, 0, 0, 0, 0),
            None,
            0,
            CS,
            0x05,
        )],
    );
}

#[test]
fn bad_io_commands() {
    let env = setup();
    let (_h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    let mut big = sqe(0x02, 5, 1, u32::MAX, u32::MAX, 0);
    big.cdw12 = 0.into();
    let mut copy2 = sqe(0x19, 13, 1, 100, 0, 1);
    copy2.cdw12 = 1.into();
    let mut dsm_range = vec![0u8; 16];
    dsm_range[4..8].copy_from_slice(&8u32.to_le_bytes());
    dsm_range[8..16].copy_from_slice(&1020u64.to_le_bytes());
    let mut copy_range = vec![0u8; 32];
    copy_range[8..16].copy_from_slice(&1000u64.to_le_bytes());
    copy_range[16..18].copy_from_slice(&99u16.to_le_bytes());
    let rows = vec![
        dnr(row(
            "read inactive nsid",
            sqe(0x02, 1, 2, 0, 0, 0),
            None,
            512,
            G,
            0x0b,
        )),
        dnr(row(
            "read nsid 0",
            sqe(0x02, 2, 0, 0, 0, 0),
            None,
            512,
            G,
            0x0b,
        )),
        dnr(row(
            "read past the end",
            sqe(0x02, 3, 1, 1020, 0, 7),
            None,
            4096,
            G,
            0x80,
        )),
        dnr(row(
            "write past the end",
            sqe(0x01, 4, 1, 1024, 0, 0),
            Some(vec![0; 512]),
            512,
            G,
            0x80,
        )),
        dnr(row("read LBA overflow", big, None, 512, G, 0x80)),
        dnr(row(
            "read longer than SGL",
            sqe(0x02, 6, 1, 0, 0, 7),
            None,
            512,
            G,
            0x0f,
        )),
        dnr(row(
            "write data shorter than NLB",
            sqe(0x01, 7, 1, 0, 0, 1),
            Some(vec![0; 512]),
            1024,
            G,
            0x0f,
        )),
        dnr(row(
            "unknown I/O opcode",
            sqe(0x7e, 8, 1, 0, 0, 0),
            None,
            0,
            G,
            0x01,
        )),
        row(
            "reservation register without its key data",
            sqe(0x0d, 9, 1, 0, 0, 0),
            None,
            0,
            G,
            0x02,
        ),
        row(
            "property get on I/O queue",
            prop_get(10, PropertySize::Four, PropertyOffset::CSTS),
            None,
            0,
            G,
            0x01,
        ),
        dnr(row(
            "fused second without first",
            fused(sqe(0x01, 11, 1, 0, 0, 0), 2),
            Some(vec![0; 512]),
            512,
            G,
            0x0a,
        )),
        dnr(row(
            "reserved fuse value",
            fused(sqe(0x02, 12, 1, 0, 0, 0), 3),
            None,
            512,
            G,
            0x02,
        )),
        dnr(row(
            "copy with two source ranges",
            copy2,
            Some(vec![0; 64]),
            64,
            G,
            0x02,
        )),
        dnr(row(
            "copy source past the end",
            sqe(0x19, 14, 1, 0, 0, 0),
            Some(copy_range),
            32,
            G,
            0x80,
        )),
        dnr(row(
            "DSM deallocate past the end",
            sqe(0x09, 15, 1, 0, 1 << 2, 0),
            Some(dsm_range),
            16,
            G,
            0x80,
        )),
    ];
    run(&env, &io, rows);
}
