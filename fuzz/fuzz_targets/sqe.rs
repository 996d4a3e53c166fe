//! Submission queue entries and the structures a target decodes from command data:
//! `Sqe` accessors, SGL descriptor decode, Identify/Get Log Page/Features/I/O argument decoders,
//! Namespace Identification Descriptor lists, DSM/Copy ranges, Identify Controller/Namespace and
//! discovery log entry string fields.
//!
//! Input: 64 bytes of SQE (zero padded), then command data.
//!
//! Checks: no panic; a decoded SGL re-encodes to a descriptor that decodes to the same SGL;
//! Identify arguments and Get Log Page arguments survive an `apply`/`from_sqe` round trip; a
//! parsed descriptor list writes back and parses to the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme::spec::features::{GetFeaturesArgs, SetFeaturesArgs};
use nvme::spec::identify::{IdentifyArgs, NsIdDescriptor};
use nvme::spec::io::{Abort, CopyArgs, DatasetManagement, ReadWrite, ReservationArgs};
use nvme::spec::log::GetLogPageArgs;
use nvme::spec::{
    DiscoveryLogEntry, IdentifyController, IdentifyNamespace, PropertyGetCmd, PropertySetCmd,
    SglDescriptor, Sqe,
};
use zerocopy::FromBytes;

fn padded<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = data.len().min(N);
    a[..n].copy_from_slice(&data[..n]);
    a
}

fuzz_target!(|data: &[u8]| {
    let raw: [u8; 64] = padded(data);
    let rest = data.get(64..).unwrap_or_default();
    let Ok(sqe) = Sqe::read_from(&raw) else {
        panic!("64 bytes refused as an SQE");
    };
    assert!(Sqe::read_from(data).is_ok() == (data.len() == 64));
    let _ = (
        sqe.cid(),
        sqe.nsid(),
        sqe.admin_opcode(),
        sqe.nvm_opcode(),
        sqe.fuse(),
    );
    let _ = (
        sqe.is_fabrics(),
        sqe.fctype(),
        sqe.psdt(),
        sqe.prp1(),
        sqe.prp2(),
        sqe.cdws(),
    );

    // SGL
    if let Ok(sgl) = sqe.sgl().decode() {
        let back = SglDescriptor::from(sgl);
        assert_eq!(back.decode().ok(), Some(sgl), "SGL round trip");
    }

    // Command arguments.
    let id = IdentifyArgs::from_sqe(&sqe);
    let mut s2 = Sqe::new(0x06, 1);
    id.apply(&mut s2);
    assert_eq!(IdentifyArgs::from_sqe(&s2), id, "Identify args round trip");
    let lp = GetLogPageArgs::from_sqe(&sqe);
    let _ = lp.byte_len();
    let mut s3 = Sqe::new(0x02, 1);
    lp.apply(&mut s3);
    assert_eq!(
        GetLogPageArgs::from_sqe(&s3),
        lp,
        "Get Log Page args round trip"
    );
    let _ = GetFeaturesArgs::from_sqe(&sqe);
    let _ = SetFeaturesArgs::from_sqe(&sqe);
    let rw = ReadWrite::from_sqe(&sqe);
    let _ = (rw.num_blocks(), rw.last_lba());
    let dsm = DatasetManagement::from_sqe(&sqe);
    let _ = (dsm.num_ranges(), dsm.deallocate());
    let _ = nvme::spec::io::dsm_ranges(rest, dsm.num_ranges());
    let copy = CopyArgs::from_sqe(&sqe);
    let _ = nvme::spec::io::copy_source_ranges(rest, copy.num_ranges());
    let _ = Abort::from_sqe(&sqe);
    let _ = ReservationArgs::from_sqe(&sqe);
    let _ = PropertyGetCmd::from_sqe(&sqe).size();
    let _ = PropertySetCmd::from_sqe(&sqe).size();
    let _ = (
        PropertyGetCmd::from_sqe(&sqe).offset(),
        PropertySetCmd::from_sqe(&sqe).offset(),
    );

    // Data structures.
    if let Ok(list) = NsIdDescriptor::parse_list(rest) {
        let mut out = [0u8; 4096];
        if NsIdDescriptor::write_list(&list, &mut out).is_ok() {
            assert_eq!(
                NsIdDescriptor::parse_list(&out).ok(),
                Some(list),
                "descriptor list round trip"
            );
        }
    }
    let page: [u8; 4096] = padded(rest);
    if let Ok(c) = IdentifyController::read_from_bytes(&page) {
        let _ = (
            c.serial_number(),
            c.model_number(),
            c.firmware_revision(),
            c.subnqn(),
        );
    }
    if let Ok(ns) = IdentifyNamespace::read_from_bytes(&page) {
        if let Some(bs) = ns.block_size() {
            assert!(bs >= 512 && bs.is_power_of_two());
        }
        assert!(ns.lba_format_index() < 64);
    }
    let entry: [u8; 1024] = padded(rest);
    if let Ok(e) = DiscoveryLogEntry::read_from_bytes(&entry) {
        let _ = (e.subnqn(), e.trsvcid(), e.traddr(), e.tcp_sectype());
    }
});
