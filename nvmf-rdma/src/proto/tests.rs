use super::*;
use nvme::spec::SglDescriptor;
use zerocopy::IntoBytes;

const WRITE: u8 = 0x01;
const READ: u8 = 0x02;
const FLUSH: u8 = 0x00;

fn cfg(depth: u16) -> QueueConfig {
    QueueConfig {
        depth,
        read_depth: 16,
        max_send_depth: u32::from(depth) * 3 + 2,
        in_capsule_data_size: 4096,
        max_io_size: 131_072,
    }
}

fn capsule(opc: u8, cid: u16, sgl: Sgl, data: &[u8]) -> Vec<u8> {
    let mut sqe = Sqe::new(opc, cid);
    sqe.dptr = SglDescriptor::from(sgl);
    let mut v = sqe.as_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

fn keyed(address: u64, length: u32, key: u32) -> Sgl {
    Sgl::KeyedDataBlock {
        address,
        length,
        key,
        invalidate: false,
    }
}

fn actions(q: &mut RdmaQueue) -> Vec<Action> {
    std::iter::from_fn(|| q.poll_action()).collect()
}

fn sent_status(a: &Action) -> (u16, Status) {
    match a {
        Action::Send {
            cqe, write: None, ..
        } => (cqe.cid(), cqe.status()),
        other => panic!("expected a SEND without data, got {other:?}"),
    }
}

#[test]
fn write_with_in_capsule_data_is_submitted_with_that_data() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    let data: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
    let c = capsule(
        WRITE,
        7,
        Sgl::DataBlockOffset {
            offset: 0,
            length: 512,
        },
        &data,
    );
    q.on_recv(&mut pool, &c).unwrap();
    let a = actions(&mut q);
    assert_eq!(a.len(), 1);
    let Action::Submit(req) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(req.sqe.cid(), 7);
    assert_eq!(req.length, 512);
    assert_eq!(req.data.as_ref().unwrap().to_vec(), data);
    assert_eq!(q.slot_state(0), Some(St::Executing));
}

#[test]
fn in_capsule_offset_beyond_icd_is_invalid_sgl_offset() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    let c = capsule(
        WRITE,
        1,
        Sgl::DataBlockOffset {
            offset: 4097,
            length: 0,
        },
        &[0; 16],
    );
    q.on_recv(&mut pool, &c).unwrap();
    let a = actions(&mut q);
    assert_eq!(
        sent_status(&a[0]),
        (1, GenericStatus::INVALID_SGL_OFFSET.into())
    );
}

#[test]
fn in_capsule_length_beyond_received_bytes_is_sgl_length_invalid() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    let c = capsule(
        WRITE,
        2,
        Sgl::DataBlockOffset {
            offset: 0,
            length: 1024,
        },
        &[0; 512],
    );
    q.on_recv(&mut pool, &c).unwrap();
    let a = actions(&mut q);
    assert_eq!(
        sent_status(&a[0]),
        (2, GenericStatus::DATA_SGL_LENGTH_INVALID.into())
    );
    // Beyond in_capsule_data_size even when the host sent that much.
    let c = capsule(
        WRITE,
        3,
        Sgl::DataBlockOffset {
            offset: 4000,
            length: 200,
        },
        &[0; 4200],
    );
    q.on_recv(&mut pool, &c).unwrap();
    let a = actions(&mut q);
    assert_eq!(
        sent_status(&a[0]),
        (3, GenericStatus::DATA_SGL_LENGTH_INVALID.into())
    );
}

#[test]
fn keyed_write_reads_host_data_then_submits_it() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    let c = capsule(WRITE, 9, keyed(0x1000_0000, 12_288, 0xabcd), &[]);
    q.on_recv(&mut pool, &c).unwrap();
    let a = actions(&mut q);
    assert_eq!(a.len(), 1);
    let Action::Read {
        slot,
        remote,
        local,
    } = &a[0]
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        *remote,
        RemoteBuf {
            addr: 0x1000_0000,
            rkey: 0xabcd,
            len: 12_288
        }
    );
    assert_eq!(local.len(), 2);
    assert_eq!(local[0].len, 8192);
    assert_eq!(local[1].len, 4096);
    assert_eq!(q.slot_state(*slot), Some(St::TransferringHostToController));
    assert_eq!(pool.free_units(), 14);
    // The "hardware" fills the local buffers.
    let host: Vec<u8> = (0..12_288u32).map(|i| (i % 251) as u8).collect();
    pool.fill(local[0], &host[..8192]);
    pool.fill(local[1], &host[8192..]);
    let slot = *slot;
    q.on_read_done(&mut pool, slot, true);
    let a = actions(&mut q);
    let Action::Submit(req) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(req.length, 12_288);
    assert_eq!(req.data.as_ref().unwrap().to_vec(), host);
    assert_eq!(q.slot_state(slot), Some(St::Executing));
    assert_eq!(
        pool.free_units(),
        16,
        "buffer units return once the data is copied out"
    );
    // Completion: a SEND without data, then the slot is free.
    q.on_response(&mut pool, Response::status(9, Status::SUCCESS));
    let a = actions(&mut q);
    assert_eq!(sent_status(&a[0]), (9, Status::SUCCESS));
    assert_eq!(q.slot_state(slot), Some(St::Completing));
    q.on_send_done(&mut pool, slot, true);
    assert_eq!(q.slot_state(slot), Some(St::Free));
    assert_eq!(q.in_use(), 0);
    assert_eq!(q.send_in_flight(), 0);
}

#[test]
fn keyed_read_writes_data_then_sends_response() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(
        &mut pool,
        &capsule(READ, 4, keyed(0x2000, 8192 + 512, 0x77), &[]),
    )
    .unwrap();
    let a = actions(&mut q);
    let Action::Submit(req) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(
        (req.sqe.cid(), req.length, req.data.is_none()),
        (4, 8704, true)
    );
    assert_eq!(pool.free_units(), 14);
    let payload: Vec<u8> = (0..8704u32).map(|i| (i * 7) as u8).collect();
    q.on_response(
        &mut pool,
        Response {
            cqe: Cqe::new(4, Status::SUCCESS),
            data: Some(DataBuf::from_vec(payload.clone())),
        },
    );
    let a = actions(&mut q);
    assert_eq!(a.len(), 1);
    let Action::Send {
        slot,
        write: Some((remote, local)),
        cqe,
        invalidate,
    } = &a[0]
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        *remote,
        RemoteBuf {
            addr: 0x2000,
            rkey: 0x77,
            len: 8704
        }
    );
    assert_eq!(cqe.cid(), 4);
    assert_eq!(*invalidate, None);
    let mut got = pool.bytes(local[0]).to_vec();
    got.extend_from_slice(pool.bytes(local[1]));
    assert_eq!(got, payload);
    assert_eq!(q.slot_state(*slot), Some(St::TransferringControllerToHost));
    assert_eq!(
        q.send_in_flight(),
        2,
        "WRITE and SEND both occupy the send queue"
    );
    let slot = *slot;
    q.on_send_done(&mut pool, slot, true);
    assert_eq!(
        (q.in_use(), q.send_in_flight(), pool.free_units()),
        (0, 0, 16)
    );
}

#[test]
fn failed_read_sends_status_without_data() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(&mut pool, &capsule(READ, 5, keyed(0x2000, 4096, 1), &[]))
        .unwrap();
    actions(&mut q);
    q.on_response(
        &mut pool,
        Response {
            cqe: Cqe::new(5, GenericStatus::LBA_OUT_OF_RANGE.into()),
            data: Some(DataBuf::from_vec(vec![1; 4096])),
        },
    );
    let a = actions(&mut q);
    assert_eq!(
        sent_status(&a[0]),
        (5, GenericStatus::LBA_OUT_OF_RANGE.into())
    );
}

#[test]
fn keyed_sgl_longer_than_max_io_size_is_sgl_length_invalid() {
    let mut pool = UnitPool::new(8192, 32).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(&mut pool, &capsule(WRITE, 6, keyed(0, 131_073, 1), &[]))
        .unwrap();
    let a = actions(&mut q);
    assert_eq!(
        sent_status(&a[0]),
        (6, GenericStatus::DATA_SGL_LENGTH_INVALID.into())
    );
    assert_eq!(pool.free_units(), 32);
    q.on_send_done(&mut pool, 0, true);
    assert_eq!(q.in_use(), 0);
}

#[test]
fn bidirectional_opcode_is_invalid_opcode() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(&mut pool, &capsule(0x83, 8, keyed(0, 512, 1), &[]))
        .unwrap();
    let a = actions(&mut q);
    assert_eq!(
        sent_status(&a[0]),
        (8, GenericStatus::INVALID_OPCODE.into())
    );
}

#[test]
fn unknown_opcode_without_data_reaches_the_target_core() {
    // The target core answers unknown opcodes with Invalid Opcode; the transport passes them.
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(&mut pool, &capsule(0xc0, 8, keyed(0, 0, 0), &[]))
        .unwrap();
    let a = actions(&mut q);
    let Action::Submit(req) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!((req.sqe.opc, req.length), (0xc0, 0));
}

#[test]
fn unsupported_sgl_types_are_descriptor_type_invalid() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    let seg = Sgl::LastSegment {
        address: 0,
        length: 32,
        offset: true,
    };
    q.on_recv(&mut pool, &capsule(WRITE, 1, seg, &[0; 32]))
        .unwrap();
    let mut raw = capsule(READ, 2, keyed(0, 512, 1), &[]);
    raw[SQE_LEN - 40 + 15] = 0x9f; // DPTR byte 15: undefined type 9
    q.on_recv(&mut pool, &raw).unwrap();
    // In-capsule data for a controller-to-host command makes no sense either.
    q.on_recv(
        &mut pool,
        &capsule(
            READ,
            3,
            Sgl::DataBlockOffset {
                offset: 0,
                length: 0,
            },
            &[],
        ),
    )
    .unwrap();
    let a = actions(&mut q);
    let sgl_bad: Status = GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID.into();
    assert_eq!(sent_status(&a[0]), (1, sgl_bad));
    assert_eq!(sent_status(&a[1]), (2, sgl_bad));
    assert_eq!(sent_status(&a[2]), (3, sgl_bad));
}

#[test]
fn more_commands_than_negotiated_depth_is_a_protocol_error() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(2));
    q.on_recv(&mut pool, &capsule(FLUSH, 1, keyed(0, 0, 0), &[]))
        .unwrap();
    q.on_recv(&mut pool, &capsule(FLUSH, 2, keyed(0, 0, 0), &[]))
        .unwrap();
    let e = q
        .on_recv(&mut pool, &capsule(FLUSH, 3, keyed(0, 0, 0), &[]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "NVMe/RDMA protocol error: command cid 3 exceeds the negotiated queue depth 2"
    );
}

#[test]
fn short_capsule_is_a_protocol_error() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(2));
    let e = q.on_recv(&mut pool, &[0; 63]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "NVMe/RDMA protocol error: capsule of 63 bytes is shorter than an SQE"
    );
    assert_eq!(q.in_use(), 0);
}

#[test]
fn duplicate_cid_is_cid_conflict_and_first_command_still_completes() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(&mut pool, &capsule(FLUSH, 5, keyed(0, 0, 0), &[]))
        .unwrap();
    q.on_recv(&mut pool, &capsule(FLUSH, 5, keyed(0, 0, 0), &[]))
        .unwrap();
    let a = actions(&mut q);
    assert!(matches!(a[0], Action::Submit(_)));
    assert_eq!(sent_status(&a[1]), (5, GenericStatus::CID_CONFLICT.into()));
    let Action::Send {
        slot: conflict_slot,
        ..
    } = a[1]
    else {
        unreachable!()
    };
    q.on_send_done(&mut pool, conflict_slot, true);
    q.on_response(&mut pool, Response::status(5, Status::SUCCESS));
    let a = actions(&mut q);
    assert_eq!(sent_status(&a[0]), (5, Status::SUCCESS));
}

#[test]
fn reads_beyond_read_depth_wait_for_a_completion() {
    let mut pool = UnitPool::new(8192, 64).unwrap();
    let mut q = RdmaQueue::new(QueueConfig {
        read_depth: 2,
        ..cfg(8)
    });
    for cid in 0..3 {
        q.on_recv(&mut pool, &capsule(WRITE, cid, keyed(0x1000, 4096, 1), &[]))
            .unwrap();
    }
    let a = actions(&mut q);
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|a| matches!(a, Action::Read { .. })));
    assert_eq!(q.slot_state(2), Some(St::DataTransferToControllerPending));
    let Action::Read { slot, .. } = a[0] else {
        unreachable!()
    };
    q.on_read_done(&mut pool, slot, true);
    let a = actions(&mut q);
    assert!(matches!(a[0], Action::Submit(_)));
    assert!(matches!(a[1], Action::Read { slot: 2, .. }));
}

#[test]
fn requests_wait_for_buffer_units_and_resume_when_freed() {
    let mut pool = UnitPool::new(8192, 2).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(&mut pool, &capsule(READ, 1, keyed(0, 16_384, 1), &[]))
        .unwrap();
    q.on_recv(&mut pool, &capsule(READ, 2, keyed(0, 512, 1), &[]))
        .unwrap();
    let a = actions(&mut q);
    assert_eq!(a.len(), 1);
    assert_eq!(q.slot_state(1), Some(St::NeedBuffer));
    q.on_response(
        &mut pool,
        Response {
            cqe: Cqe::new(1, Status::SUCCESS),
            data: Some(DataBuf::from_vec(vec![3; 16_384])),
        },
    );
    let a = actions(&mut q);
    let Action::Send { slot, .. } = a[0] else {
        panic!("{a:?}")
    };
    q.on_send_done(&mut pool, slot, true);
    let a = actions(&mut q);
    let Action::Submit(req) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!((req.sqe.cid(), req.length), (2, 512));
    assert_eq!(pool.free_units(), 1);
}

#[test]
fn responses_wait_for_send_queue_room() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(QueueConfig {
        max_send_depth: 2,
        ..cfg(4)
    });
    q.on_recv(&mut pool, &capsule(READ, 1, keyed(0, 512, 1), &[]))
        .unwrap();
    q.on_recv(&mut pool, &capsule(FLUSH, 2, keyed(0, 0, 0), &[]))
        .unwrap();
    actions(&mut q);
    q.on_response(
        &mut pool,
        Response {
            cqe: Cqe::new(1, Status::SUCCESS),
            data: Some(DataBuf::from_vec(vec![9; 512])),
        },
    );
    q.on_response(&mut pool, Response::status(2, Status::SUCCESS));
    let a = actions(&mut q);
    assert_eq!(a.len(), 1, "WRITE+SEND fill the send queue of depth 2");
    assert_eq!(q.slot_state(1), Some(St::ReadyToCompletePending));
    q.on_send_done(&mut pool, 0, true);
    let a = actions(&mut q);
    assert_eq!(sent_status(&a[0]), (2, Status::SUCCESS));
}

#[test]
fn invalidate_key_subtype_sends_with_invalidate() {
    let mut pool = UnitPool::new(8192, 16).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    let sgl = Sgl::KeyedDataBlock {
        address: 0x10,
        length: 512,
        key: 0x1234_5678,
        invalidate: true,
    };
    q.on_recv(&mut pool, &capsule(READ, 1, sgl, &[])).unwrap();
    actions(&mut q);
    q.on_response(
        &mut pool,
        Response {
            cqe: Cqe::new(1, Status::SUCCESS),
            data: Some(DataBuf::from_vec(vec![0; 512])),
        },
    );
    let a = actions(&mut q);
    let Action::Send { invalidate, .. } = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(*invalidate, Some(0x1234_5678));
}

#[test]
fn disconnect_with_io_in_flight_releases_everything_after_flush() {
    let mut pool = UnitPool::new(8192, 4).unwrap();
    let mut q = RdmaQueue::new(QueueConfig {
        read_depth: 1,
        ..cfg(8)
    });
    // Executing in the target core.
    q.on_recv(&mut pool, &capsule(READ, 1, keyed(0, 8192, 1), &[]))
        .unwrap();
    // READ posted.
    q.on_recv(&mut pool, &capsule(WRITE, 2, keyed(0, 8192, 1), &[]))
        .unwrap();
    // READ pending (read depth 1).
    q.on_recv(&mut pool, &capsule(WRITE, 3, keyed(0, 8192, 1), &[]))
        .unwrap();
    // Waiting for buffers.
    q.on_recv(&mut pool, &capsule(WRITE, 4, keyed(0, 16_384, 1), &[]))
        .unwrap();
    let a = actions(&mut q);
    assert_eq!(a.len(), 2);
    assert_eq!(q.in_use(), 4);
    assert_eq!(pool.free_units(), 1);
    q.disconnect(&mut pool);
    assert!(!q.is_quiesced(), "the posted READ must be flushed first");
    assert_eq!(q.in_use(), 1);
    // Commands after disconnect are ignored, responses for released commands too.
    q.on_recv(&mut pool, &capsule(FLUSH, 9, keyed(0, 0, 0), &[]))
        .unwrap();
    q.on_response(&mut pool, Response::status(1, Status::SUCCESS));
    assert!(q.poll_action().is_none());
    q.on_read_done(&mut pool, 1, false);
    assert!(q.is_quiesced());
    assert_eq!(
        (q.in_use(), q.send_in_flight(), pool.free_units()),
        (0, 0, 4)
    );
    assert!(q.poll_action().is_none());
}

#[test]
fn disconnect_before_actions_are_executed_takes_their_credit_back() {
    let mut pool = UnitPool::new(8192, 4).unwrap();
    let mut q = RdmaQueue::new(cfg(4));
    q.on_recv(&mut pool, &capsule(WRITE, 2, keyed(0, 8192, 1), &[]))
        .unwrap();
    assert_eq!(q.send_in_flight(), 1);
    q.disconnect(&mut pool);
    assert!(q.is_quiesced());
    assert_eq!((q.in_use(), pool.free_units()), (0, 4));
}

#[test]
fn completions_for_unknown_or_idle_slots_are_ignored() {
    let mut pool = UnitPool::new(8192, 4).unwrap();
    let mut q = RdmaQueue::new(cfg(2));
    q.on_send_done(&mut pool, 1, true);
    q.on_read_done(&mut pool, 99, true);
    q.on_response(&mut pool, Response::status(42, Status::SUCCESS));
    assert_eq!((q.in_use(), q.send_in_flight()), (0, 0));
    assert!(q.poll_action().is_none());
}

#[test]
fn bounded_random_capsules_never_panic_or_leak() {
    // Deterministic LCG; 2000 capsules of random bytes through a depth-8 queue, each answered.
    let mut pool = UnitPool::new(8192, 32).unwrap();
    let mut q = RdmaQueue::new(cfg(8));
    let mut x: u64 = 0x1234_5678;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) as u32
    };
    for _ in 0..2000 {
        let len = 64 + (next() % 128) as usize;
        let mut c: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        c[0] &= 0x7f; // not fabrics
        c[15] = (c[15] & 0x0f) | 0x40; // keyed SGL most of the time
        c[15] = if next() % 4 == 0 { next() as u8 } else { c[15] };
        if q.on_recv(&mut pool, &c).is_err() {
            break;
        }
        while let Some(a) = q.poll_action() {
            match a {
                Action::Submit(r) => {
                    q.on_response(&mut pool, Response::status(r.sqe.cid(), Status::SUCCESS))
                }
                Action::Read { slot, .. } => q.on_read_done(&mut pool, slot, true),
                Action::Send { slot, .. } => q.on_send_done(&mut pool, slot, true),
            }
        }
    }
    assert_eq!(
        (q.in_use(), q.send_in_flight(), pool.free_units()),
        (0, 0, 32)
    );
}

#[test]
fn fabrics_connect_data_is_read_and_property_get_moves_no_data() {
    let mut pool = UnitPool::new(8192, 4).unwrap();
    let mut q = RdmaQueue::new(cfg(32));
    let mut connect = capsule(0x7f, 1, keyed(0xffff_8880_0000_1000, 1024, 0x3a0), &[]);
    connect[4] = 0x01; // FCTYPE Connect
    q.on_recv(&mut pool, &connect).unwrap();
    let a = actions(&mut q);
    let Action::Read {
        slot,
        remote,
        local,
    } = &a[0]
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        *remote,
        RemoteBuf {
            addr: 0xffff_8880_0000_1000,
            rkey: 0x3a0,
            len: 1024
        }
    );
    assert_eq!(
        local,
        &vec![Sge {
            offset: 0,
            len: 1024
        }]
    );
    let slot = *slot;
    let mut connect_data = vec![0u8; 1024];
    connect_data[256..260].copy_from_slice(b"nqn.");
    pool.fill(local[0], &connect_data);
    q.on_read_done(&mut pool, slot, true);
    let a = actions(&mut q);
    let Action::Submit(req) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(req.data.as_ref().unwrap().to_vec(), connect_data);
    let mut get = capsule(0x7f, 2, keyed(0, 0, 0), &[]);
    get[4] = 0x04; // FCTYPE Property Get
    q.on_recv(&mut pool, &get).unwrap();
    let a = actions(&mut q);
    let Action::Submit(req) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(
        (req.sqe.cid(), req.length, req.data.is_none()),
        (2, 0, true)
    );
}

/// A pool or receive-buffer size from unbounded options (the audit: 4 GiB units, ICD x depth
/// up to 2^48) is refused with ENOMEM before anything is allocated, instead of aborting.
#[test]
fn buffers_larger_than_available_memory_are_refused_without_allocating() {
    let e = UnitPool::new(u32::MAX, u32::MAX).unwrap_err();
    let RdmaError::NoMemory { what, len, source } = &e else {
        panic!("expected NoMemory, got {e:?}")
    };
    assert_eq!(*what, "RDMA poll group buffer pool");
    assert_eq!(*len, u64::from(u32::MAX) * u64::from(u32::MAX));
    assert!(
        matches!(source, env::EnvError::NoMemory { requested, .. } if *requested == *len),
        "{source:?}"
    );
    assert_eq!(nvmf::NvmfError::from(e).errno(), -12);

    let e = zeroed_buffer(1 << 48, "NVMe/RDMA shared receive buffers").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("NVMe/RDMA shared receive buffers: cannot allocate 281474976710656 bytes"),
        "{e}"
    );
    // A small one is zeroed memory of exactly that size.
    let v = zeroed_buffer(4160, "NVMe/RDMA receive buffers").unwrap();
    assert_eq!(v.len(), 4160);
    assert!(v.iter().all(|b| *b == 0));
}
