//! Size options are bounded when a TCP transport is created (SPDK `nvmf_transport_create` and
//! `nvmf_tcp_create`), so that a host cannot make the target allocate more than they allow
//! for one PDU; H2C write data always comes from the iobuf pool, also above its buffer size.
//! Alone in its own test binary because one test empties the process-wide pool.
#![allow(clippy::unwrap_used)]

use env::testing::TestThreads;
use nvme::spec::Sqe;
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::pdu::{CapsuleCmd, H2cData, IcReq};
use nvme::spec::tcp::{DecoderConfig, Negotiated, Pdu, PduEncoder, PduHeader, PduReader};
use nvmf::transport::Transport;
use nvmf::{NvmfError, Target, TransportOpts};
use nvmf_tcp::transport::check_size_limits;
use nvmf_tcp::{ProtoConfig, TcpConnection, TcpTransport};
use std::cell::RefCell;
use std::rc::Rc;

fn opts(max_io_size: u32, io_unit_size: u32, icd: u32) -> TransportOpts {
    TransportOpts {
        max_io_size,
        io_unit_size,
        in_capsule_data_size: icd,
        ..TransportOpts::default()
    }
}

fn refused(o: TransportOpts) -> String {
    match TcpTransport::new(o) {
        Err(NvmfError::InvalidParam(m)) => m,
        other => panic!("expected InvalidParam, got {other:?}"),
    }
}

/// The audit's request: max_io_size and in_capsule_data_size u32::MAX.
#[test]
fn max_io_size_u32_max_is_refused_with_spdk_message() {
    assert_eq!(
        refused(opts(u32::MAX, 131_072, u32::MAX)),
        "max_io_size 4294967295 must be a power of 2 and be greater than or equal 8KB"
    );
    assert_eq!(
        refused(opts(4096, 4096, 4096)),
        "max_io_size 4096 must be a power of 2 and be greater than or equal 8KB"
    );
    assert_eq!(
        refused(opts(3 * 65536, 65536, 4096)),
        "max_io_size 196608 must be a power of 2 and be greater than or equal 8KB"
    );
}

#[test]
fn more_than_16_io_units_per_command_is_refused() {
    // A power of 2, io_unit_size within the iobuf large buffers: still 32768 units.
    assert_eq!(
        refused(opts(1 << 31, 131_072, 4096)),
        "Unsupported IO Unit size specified, 131072 bytes"
    );
    assert_eq!(
        refused(opts(1 << 20, 32768, 4096)),
        "Unsupported IO Unit size specified, 32768 bytes"
    );
    // Exactly 16 units is SPDK's limit, accepted.
    let t = TcpTransport::new(opts(1 << 20, 65536, 4096)).unwrap();
    assert_eq!(t.opts().max_io_size, 1 << 20);
    assert_eq!(t.opts().io_unit_size, 65536);
}

#[test]
fn io_unit_larger_than_iobuf_large_buffer_is_refused() {
    let mut o = opts(1 << 20, 1 << 20, 4096);
    let e = check_size_limits(&mut o, 135_168).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid parameter: io_unit_size 1048576 is larger than iobuf pool large buffer size 135168"
    );
    // Through the transport, against the pool's configured size (the default 135168).
    assert_eq!(
        env::iobuf::iobuf_get_options().large_bufsize,
        135_168,
        "this binary uses the default iobuf options"
    );
    assert_eq!(
        refused(opts(1 << 20, 1 << 20, 4096)),
        "io_unit_size 1048576 is larger than iobuf pool large buffer size 135168"
    );
    let mut zero = opts(131_072, 0, 4096);
    assert_eq!(
        check_size_limits(&mut zero, 135_168)
            .unwrap_err()
            .to_string(),
        "invalid parameter: io_unit_size cannot be 0"
    );
}

#[test]
fn io_unit_and_icd_above_max_io_size_are_clamped_like_spdk() {
    let t = TcpTransport::new(opts(65536, 131_072, 1 << 20)).unwrap();
    assert_eq!(t.opts().io_unit_size, 65536);
    assert_eq!(t.opts().in_capsule_data_size, 65536);
}

#[test]
fn spdk_default_and_example_options_are_accepted_unchanged() {
    // SPDK's TCP defaults (nvmf_create_transport -t TCP with nothing else).
    let t = TcpTransport::new(TransportOpts::default()).unwrap();
    assert_eq!(
        (
            t.opts().max_io_size,
            t.opts().io_unit_size,
            t.opts().in_capsule_data_size
        ),
        (131_072, 131_072, 4096)
    );
    // examples/*.json: max_queue_depth 128, in_capsule_data_size 4096, max_io_size 131072.
    let o = TransportOpts::from_json(
        "TCP",
        serde_json::json!({"max_queue_depth": 128, "in_capsule_data_size": 4096, "max_io_size": 131072})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let t = TcpTransport::new(o).unwrap();
    assert_eq!(
        (t.opts().max_io_size, t.opts().in_capsule_data_size),
        (131_072, 4096)
    );
}

/// A refused nvmf_create_transport leaves the target as it was: a second, valid request
/// for the same type succeeds.
#[test]
fn target_survives_a_refused_transport_and_accepts_a_valid_one() {
    let threads = TestThreads::new(1);
    threads.set_current(0);
    let tgt = Target::new("nvmf_tgt").unwrap();
    tgt.register_transport_factory("TCP", nvmf_tcp::factory());
    tgt.start(vec![threads.thread(0).handle()], || {}).unwrap();
    assert!(threads.poll_threads());
    let got: Rc<RefCell<Vec<Result<(), String>>>> = Rc::default();
    let g = got.clone();
    tgt.create_transport("TCP", opts(u32::MAX, 131_072, u32::MAX), move |r| {
        g.borrow_mut().push(r.map_err(|e| e.to_string()))
    });
    assert!(threads.poll_threads() || !got.borrow().is_empty());
    let g = got.clone();
    tgt.create_transport("TCP", TransportOpts::default(), move |r| {
        g.borrow_mut().push(r.map_err(|e| e.to_string()))
    });
    threads.poll_threads();
    assert_eq!(
        *got.borrow(),
        vec![
            Err(
                "invalid parameter: max_io_size 4294967295 must be a power of 2 and be greater than or equal 8KB"
                    .to_string()
            ),
            Ok(())
        ]
    );
}

fn host_reader() -> PduReader {
    PduReader::new(DecoderConfig::host_default())
}

fn read_all(r: &mut PduReader, mut bytes: &[u8]) -> Vec<Pdu> {
    let mut v = Vec::new();
    while !bytes.is_empty() {
        let (n, p) = r.read(bytes).unwrap();
        bytes = &bytes[n..];
        if let Some(p) = p {
            v.push(p);
        }
    }
    v
}

fn write_cmd(cid: u16, length: u32) -> Sqe {
    let mut s = Sqe::new(0x01, cid);
    s.dptr = SglDescriptor::from(Sgl::TransportDataBlock { length });
    s.nsid = 1.into();
    s
}

/// A 1 MiB write (max_io_size 1 MiB, io_unit_size 64 KiB: 16 units, allowed) is larger than
/// one iobuf large buffer: it used to get a 1 MiB heap buffer at once, outside the pool. Now
/// it waits while the pool is empty (no R2T) and, once buffers are back, its data lands in
/// ceil(1 MiB / 135168) = 8 pool buffers.
#[test]
fn write_larger_than_a_large_buffer_waits_for_pool_buffers() {
    let cfg = ProtoConfig {
        max_io_size: 1 << 20,
        ..ProtoConfig::default()
    };
    let mut c = TcpConnection::new(cfg);
    let enc = PduEncoder::new();
    let mut out = Vec::new();
    enc.encode(
        &PduHeader::IcReq(IcReq::new(0, false, false, 0)),
        &[],
        &mut out,
    )
    .unwrap();
    c.receive(&out);
    let mut r = host_reader();
    assert_eq!(read_all(&mut r, &std::mem::take(c.outbound())).len(), 1);
    r.decoder_mut().set_negotiated(Negotiated::default());

    // Empty the pool (bounded: the default pool has 1024 large buffers).
    let mut held = Vec::new();
    while let Some(b) = env::iobuf::iobuf_get(131_072) {
        held.push(b);
        assert!(held.len() <= 1 << 16, "iobuf pool never ran dry");
    }
    // Leave 7 buffers: one short of what the write needs.
    for _ in 0..7 {
        held.pop();
    }
    let mut out = Vec::new();
    enc.encode(
        &PduHeader::CapsuleCmd(CapsuleCmd::new(write_cmd(3, 1 << 20))),
        &[],
        &mut out,
    )
    .unwrap();
    c.receive(&out);
    assert!(!c.retry_buffers());
    assert_eq!(c.waiting_for_buffers(), 1);
    assert!(c.outbound().is_empty(), "an R2T went out without buffers");
    // The 7 partial buffers went back: another 7 can still be taken.
    let mut again = Vec::new();
    for _ in 0..7 {
        again.push(env::iobuf::iobuf_get(131_072).unwrap());
    }
    drop(again);

    held.clear();
    let pool = env::iobuf::iobuf_initialize().unwrap();
    let free_large = pool.free_counts().1;
    assert!(c.retry_buffers());
    // Not a heap buffer: 8 large buffers left the pool for it.
    assert_eq!(pool.free_counts().1, free_large - 8);
    assert_eq!(c.waiting_for_buffers(), 0);
    let pat: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let mut off = 0u32;
    while off < 1 << 20 {
        let pdus = read_all(&mut r, &std::mem::take(c.outbound()));
        assert_eq!(pdus.len(), 1);
        let PduHeader::R2t(t) = pdus[0].header else {
            panic!("expected R2T, got {:?}", pdus[0].header)
        };
        assert_eq!(t.r2to.get(), off);
        let n = t.r2tl.get();
        assert_eq!(n, 131_072);
        let mut out = Vec::new();
        let last = off + n == 1 << 20;
        enc.encode(
            &PduHeader::H2cData(H2cData::new(3, t.ttag.get(), off, n, last)),
            &pat[off as usize..(off + n) as usize],
            &mut out,
        )
        .unwrap();
        c.receive(&out);
        off += n;
    }
    let req = c.take_request().unwrap();
    let data = req.data.unwrap();
    assert_eq!(data.total_len(), 1 << 20);
    assert_eq!(data.segments().len(), 8);
    assert!(data.eq_slice_at(0, &pat));
    drop(data);
    assert_eq!(pool.free_counts().1, free_large);
}
