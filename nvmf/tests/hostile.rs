//! Hostile input: bounded streams of random SQEs and data on unconnected, admin and I/O
//! queues. Nothing panics, the Threads go idle, every answer carries a CID that was sent.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::Sqe;
use std::collections::HashSet;
use zerocopy::FromBytes;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn random_sqe(rng: &mut Rng, cid: u16, opcodes: &[u8]) -> Sqe {
    let mut raw = rng.bytes(64);
    raw[0] = opcodes[(rng.next() as usize) % opcodes.len()];
    let mut s = Sqe::read_from_bytes(&raw).unwrap();
    s.cid = cid.into();
    if rng.next().is_multiple_of(2) {
        s.nsid = ((rng.next() % 4) as u32).into();
    }
    if rng.next().is_multiple_of(2) {
        s.cdw12 = ((rng.next() % 16) as u32).into();
        s.cdw11 = 0.into();
    }
    s
}

fn blast(env: &Env, h: &nvmf::testing::TestHost, rng: &mut Rng, n: u16, opcodes: &[u8]) {
    let mut sent = HashSet::new();
    for cid in 0..n {
        let sqe = random_sqe(rng, cid, opcodes);
        let len = (rng.next() % 9000) as u32;
        let data = if rng.next().is_multiple_of(2) {
            Some(rng.bytes(len as usize))
        } else {
            None
        };
        sent.insert(cid);
        h.submit(sqe, data, len);
        if cid.is_multiple_of(16) {
            env.poll();
        }
    }
    env.poll();
    while let Some((c, _)) = h.take_response() {
        assert!(sent.contains(&c.cid.get()), "answer for a CID never sent");
    }
}

#[test]
fn random_commands_on_every_kind_of_queue_never_panic() {
    let env = setup();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let all: Vec<u8> = (0..=255).collect();
    let admin_ops = [
        0x00, 0x01, 0x02, 0x06, 0x08, 0x09, 0x0a, 0x18, 0x7f, 0x80, 0xc0,
    ];
    let io_ops = [
        0x00, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0d, 0x19, 0x7f, 0x81,
    ];
    // Unconnected queue.
    let raw = env.connect_host();
    blast(&env, &raw, &mut rng, 300, &all);
    // Admin and I/O queues of a live controller.
    let (admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    blast(&env, &io, &mut rng, 1500, &io_ops);
    blast(&env, &admin, &mut rng, 1500, &admin_ops);
    // The target still serves a fresh association correctly.
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    let (c, d) = env.cmd(&h, sqe(0x06, 1, 0, 1, 0, 0), None, 4096);
    ok(&c);
    assert_eq!(d.unwrap().len(), 4096);
}
