//! Compare and fused compare-and-write on a bdev whose module executes only read and write:
//! the bdev layer emulates both, so the target accepts them (SPDK's nvmf offers them for
//! every bdev) and Identify Controller ONCS keeps the compare bit.
#![allow(clippy::unwrap_used)]

mod common;
use bdev::module::{BdevOps, BdevProps};
use bdev::{BdevError, BdevIo, IoRequest, IoStatus, IoType};
use common::*;
use nvme::spec::identify::{FUSES_COMPARE_AND_WRITE, IdentifyController, ONCS_COMPARE};
use nvme::spec::{GenericStatus, MediaStatus, Status};
use std::sync::{Arc, Mutex};
use zerocopy::FromBytes;

const BS: usize = 512;
const BS32: u32 = BS as u32;
const BLOCKS: u64 = 64;

/// An in-memory bdev that executes Read and Write only, counting what reaches it.
#[derive(Default)]
struct ReadWriteOnly {
    data: Mutex<Vec<u8>>,
    seen: Mutex<Vec<IoType>>,
}

impl BdevOps for ReadWriteOnly {
    type Channel = ();

    fn create_channel(&self) -> Result<(), BdevError> {
        Ok(())
    }

    fn submit_request(&self, _ch: &(), mut io: BdevIo) {
        self.seen.lock().unwrap().push(io.io_type());
        let status = match io.request_mut() {
            IoRequest::Read {
                offset_blocks,
                bufs,
                ..
            } => {
                let d = self.data.lock().unwrap();
                let at = *offset_blocks as usize * BS;
                let n = bufs.total_len();
                bufs.copy_from_slice_at(0, &d[at..at + n]);
                IoStatus::Success
            }
            IoRequest::Write {
                offset_blocks,
                num_blocks,
                bufs,
            } => {
                let mut d = self.data.lock().unwrap();
                let at = *offset_blocks as usize * BS;
                let n = *num_blocks as usize * BS;
                bufs.copy_to_slice_at(0, &mut d[at..at + n]);
                IoStatus::Success
            }
            _ => IoStatus::Failed,
        };
        io.complete(status);
    }

    fn io_type_supported(&self, t: IoType) -> bool {
        matches!(t, IoType::Read | IoType::Write)
    }
}

fn fused(mut s: nvme::spec::Sqe, f: u8) -> nvme::spec::Sqe {
    s.flags = (s.flags & !0x3) | f;
    s
}

/// setup()'s target with the read/write-only bdev as NSID 2, and a connected host.
fn env_with_rw_only() -> (
    Env,
    Arc<ReadWriteOnly>,
    nvmf::testing::TestHost,
    nvmf::testing::TestHost,
) {
    let env = setup();
    let ops = Arc::new(ReadWriteOnly {
        data: Mutex::new(vec![0; BLOCKS as usize * BS]),
        ..ReadWriteOnly::default()
    });
    let name = unique("RwOnly");
    bdev::module::register_bdev(
        "rwonly",
        BdevProps::new(&name, BS as u32, BLOCKS),
        Arc::clone(&ops),
    )
    .unwrap();
    env.threads.set_current(0);
    assert!(
        !bdev::get_by_name(&name)
            .unwrap()
            .io_type_supported(IoType::Compare)
    );
    assert_eq!(
        env.tgt
            .add_ns(SUBNQN, &name, 2, None, None, None, 0, false)
            .unwrap(),
        2
    );
    env.update();
    let (admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    (env, ops, admin, io)
}

#[test]
fn identify_controller_offers_compare_and_fused_compare_write_for_an_emulating_bdev() {
    let (env, _ops, admin, _io) = env_with_rw_only();
    let (c, d) = env.cmd(&admin, sqe(0x06, 3, 0, 1, 0, 0), None, 4096);
    ok(&c);
    let id = IdentifyController::read_from_bytes(&d.unwrap()).unwrap();
    assert_eq!(id.oncs.get() & ONCS_COMPARE, ONCS_COMPARE);
    assert_eq!(id.fuses.get(), FUSES_COMPARE_AND_WRITE);
}

#[test]
fn compare_and_fused_compare_write_run_on_a_bdev_without_native_compare() {
    let (env, ops, _admin, io) = env_with_rw_only();
    let old = vec![0x5au8; BS];
    let new = vec![0xa5u8; BS];
    ok(&env
        .cmd(&io, sqe(0x01, 1, 2, 7, 0, 0), Some(old.clone()), BS32)
        .0);
    // Compare: equal succeeds, different is a Compare Failure.
    ok(&env
        .cmd(&io, sqe(0x05, 2, 2, 7, 0, 0), Some(old.clone()), BS32)
        .0);
    let (c, _) = env.cmd(&io, sqe(0x05, 3, 2, 7, 0, 0), Some(new.clone()), BS32);
    assert_eq!(c.status(), Status::from(MediaStatus::COMPARE_FAILURE));
    // Fused compare-and-write that matches: both succeed, the block is replaced.
    io.submit(fused(sqe(0x05, 4, 2, 7, 0, 0), 1), Some(old.clone()), BS32);
    io.submit(fused(sqe(0x01, 5, 2, 7, 0, 0), 2), Some(new.clone()), BS32);
    env.poll();
    let mut got = [io.take_response().unwrap().0, io.take_response().unwrap().0];
    got.sort_by_key(|c| c.cid.get());
    assert_eq!((got[0].cid.get(), got[0].status()), (4, Status::SUCCESS));
    assert_eq!((got[1].cid.get(), got[1].status()), (5, Status::SUCCESS));
    assert_eq!(&ops.data.lock().unwrap()[7 * BS..8 * BS], &new[..]);
    // One that does not match: Compare Failure, the write is aborted, nothing written.
    io.submit(fused(sqe(0x05, 6, 2, 7, 0, 0), 1), Some(old.clone()), BS32);
    io.submit(
        fused(sqe(0x01, 7, 2, 7, 0, 0), 2),
        Some(vec![0x33; BS]),
        BS32,
    );
    env.poll();
    let mut got = [io.take_response().unwrap().0, io.take_response().unwrap().0];
    got.sort_by_key(|c| c.cid.get());
    assert_eq!(got[0].status(), Status::from(MediaStatus::COMPARE_FAILURE));
    assert_eq!(
        got[1].status(),
        Status::from(GenericStatus::ABORTED_FAILED_FUSED).with_dnr()
    );
    assert_eq!(&ops.data.lock().unwrap()[7 * BS..8 * BS], &new[..]);
    // The module only ever saw reads and writes.
    let seen = ops.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|t| matches!(t, IoType::Read | IoType::Write)),
        "{seen:?}"
    );
    assert!(seen.contains(&IoType::Read));
}
