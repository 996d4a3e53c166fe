//! Fabrics Connect data (`nvme::spec::ConnectData`) and NQN validation (`validate_nqn`).
//!
//! Input: the bytes are Connect data (padded or cut to 1024 bytes) and, as (lossy) UTF-8, an
//! NQN candidate.
//!
//! Checks: no panic; `view` accepts exactly 1024 bytes; a decoded NQN field is at most 223 bytes
//! without NUL and survives a `ConnectData::new` round trip; an NQN `validate_nqn` accepts is
//! 11..=223 bytes, NUL-free and begins with "nqn.".
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme::spec::{ConnectCmd, ConnectData, Sqe, validate_nqn};

fn check_nqn(s: &str) {
    if validate_nqn(s).is_ok() {
        assert!(
            (11..=223).contains(&s.len()),
            "accepted NQN of {} bytes",
            s.len()
        );
        assert!(!s.contains('\0'));
        assert!(s.starts_with("nqn."), "accepted {s:?}");
    }
    let _ = nvme::spec::nqn::is_discovery_nqn(s);
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(ConnectData::view(data).is_ok(), data.len() == 1024);
    let mut buf = [0u8; 1024];
    let n = data.len().min(1024);
    buf[..n].copy_from_slice(&data[..n]);
    let Ok(cd) = ConnectData::read_from(&buf) else {
        panic!("1024 bytes refused as Connect data");
    };
    let _ = cd.cntlid();
    let host = cd.hostnqn();
    let sub = cd.subnqn();
    for s in [&host, &sub].into_iter().flatten() {
        assert!(s.len() <= 223);
        assert!(!s.contains('\0'));
        check_nqn(s);
    }
    if let (Ok(h), Ok(s)) = (host, sub) {
        let Ok(again) = ConnectData::new(cd.hostid, cd.cntlid(), h, s) else {
            panic!("decoded NQNs {h:?} / {s:?} cannot be written back");
        };
        assert_eq!(again.hostnqn().ok(), Some(h));
        assert_eq!(again.subnqn().ok(), Some(s));
        assert_eq!(again.cntlid(), cd.cntlid());
    }
    check_nqn(&String::from_utf8_lossy(data));
    if let Ok(s) = std::str::from_utf8(data) {
        check_nqn(s);
    }
    // The Connect command's own fields, from the first 64 bytes.
    if let Ok(sqe) = Sqe::read_from(&buf[..64]) {
        let c = ConnectCmd::from_sqe(&sqe);
        let _ = c.sq_flow_control_disabled();
        assert_eq!(c.to_sqe(), sqe);
    }
});
