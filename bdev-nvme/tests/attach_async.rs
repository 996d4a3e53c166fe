//! `bdev_nvme_attach_controller` runs off the app Thread: a peer that accepts TCP and never
//! answers does not stop other RPCs; the attach fails after its own (small) timeout; a second
//! attach or a detach of the same name meanwhile gets EBUSY; user-given timeouts above
//! `MAX_TIMEOUT_US` are refused before any connection is made.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Disk, RamTransport, err, params, rpc_setup, silent_peer, start, wait};
use env::testing::TestThreads;
use serde_json::json;

type AttachOut = Rc<RefCell<Option<Result<Vec<String>, bdev_nvme::BdevNvmeError>>>>;

#[test]
fn attach_to_silent_peer_does_not_block_other_rpcs_and_fails_after_its_timeout() {
    let (tt, reg) = rpc_setup();
    let (port, stop, peer) = silent_peer();
    let attach = json!({"name": "Silent0", "trtype": "TCP", "adrfam": "IPv4",
                        "traddr": "127.0.0.1", "trsvcid": port.to_string(),
                        "subnqn": "nqn.2016-06.io.spdk:silent",
                        "fabrics_connect_timeout_us": 500_000});
    let t0 = Instant::now();
    let a = start(&reg, "bdev_nvme_attach_controller", attach.clone());
    assert!(
        a.borrow().is_none(),
        "the attach must not answer from inside the call (it would have blocked)"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );

    // Other RPCs answer meanwhile.
    let t1 = Instant::now();
    let b = start(&reg, "bdev_get_bdevs", json!({}));
    let bdevs = wait(&tt, &b, Duration::from_secs(1)).unwrap();
    assert!(bdevs.is_array(), "{bdevs}");
    assert!(t1.elapsed() < Duration::from_secs(1), "{:?}", t1.elapsed());

    // Same name again, and a detach of it: EBUSY while the first is connecting.
    let again = start(&reg, "bdev_nvme_attach_controller", attach.clone());
    assert_eq!(
        err(wait(&tt, &again, Duration::from_secs(1))),
        (-16, "controller Silent0 is still being attached".into())
    );
    let det = start(
        &reg,
        "bdev_nvme_detach_controller",
        json!({"name": "Silent0"}),
    );
    assert_eq!(
        err(wait(&tt, &det, Duration::from_secs(1))),
        (-16, "controller Silent0 is still being attached".into())
    );
    assert!(a.borrow().is_none(), "still connecting");

    // The attach fails after its 0.5 s connect timeout: no ICResp came.
    assert_eq!(
        err(wait(&tt, &a, Duration::from_secs(10))),
        (-5, "timed out: ICResp".into())
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    stop.send(()).unwrap();
    assert_eq!(
        peer.join().unwrap(),
        1,
        "one connection: the refused second attach made none"
    );

    // The name is free again: nothing attached, detach says not found.
    let g = start(&reg, "bdev_nvme_get_controllers", json!({}));
    assert_eq!(wait(&tt, &g, Duration::from_secs(1)).unwrap(), json!([]));
    let det = start(
        &reg,
        "bdev_nvme_detach_controller",
        json!({"name": "Silent0"}),
    );
    assert_eq!(
        err(wait(&tt, &det, Duration::from_secs(1))),
        (-19, "controller Silent0 not found".into())
    );
}

#[test]
fn huge_user_timeouts_are_refused_before_connecting() {
    let (tt, reg) = rpc_setup();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let a = start(
        &reg,
        "bdev_nvme_attach_controller",
        json!({"name": "Huge0", "trtype": "TCP", "traddr": "127.0.0.1",
               "trsvcid": port.to_string(), "subnqn": "nqn.2016-06.io.spdk:huge",
               "fabrics_connect_timeout_us": u64::MAX}),
    );
    assert_eq!(
        err(wait(&tt, &a, Duration::from_secs(1))),
        (
            -22,
            "fabrics_connect_timeout_us 18446744073709551615 is larger than the maximum \
             600000000 (10 minutes)"
                .into()
        )
    );
    assert_eq!(
        l.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "refused before any connect"
    );
    for (key, value, msg) in [
        (
            "timeout_us",
            json!(u64::MAX),
            "timeout_us 18446744073709551615 is larger than the maximum 600000000 (10 minutes)",
        ),
        (
            "timeout_admin_us",
            json!(600_000_001u64),
            "timeout_admin_us 600000001 is larger than the maximum 600000000 (10 minutes)",
        ),
        (
            "tcp_connect_timeout_ms",
            json!(u32::MAX),
            "tcp_connect_timeout_ms 4294967295 is larger than the maximum 600000 (10 minutes)",
        ),
    ] {
        let s = start(&reg, "bdev_nvme_set_options", json!({ key: value }));
        assert_eq!(
            err(wait(&tt, &s, Duration::from_secs(1))),
            (-22, msg.to_string()),
            "{key}"
        );
    }
    assert_eq!(bdev_nvme::options(), bdev_nvme::NvmeOpts::default());
    // The maxima themselves, and SPDK's defaults, are accepted.
    let s = start(
        &reg,
        "bdev_nvme_set_options",
        json!({"timeout_us": 600_000_000u64, "timeout_admin_us": 600_000_000u64,
               "tcp_connect_timeout_ms": 600_000}),
    );
    assert_eq!(wait(&tt, &s, Duration::from_secs(1)).unwrap(), json!(true));
    let defaults = serde_json::to_value(bdev_nvme::NvmeOpts::default()).unwrap();
    let s = start(&reg, "bdev_nvme_set_options", defaults);
    assert_eq!(wait(&tt, &s, Duration::from_secs(1)).unwrap(), json!(true));
    assert_eq!(bdev_nvme::options(), bdev_nvme::NvmeOpts::default());
}

#[test]
fn async_attach_over_a_working_transport_creates_bdevs_on_the_thread() {
    let tt = TestThreads::new(1);
    tt.set_current(0);
    let out: AttachOut = Rc::default();
    let o2 = Rc::clone(&out);
    bdev_nvme::attach_with_transport_async(
        &params("AsyncRam"),
        Arc::new(RamTransport(Arc::new(Disk::default()))),
        move |r| *o2.borrow_mut() = Some(r),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.borrow().is_none() && Instant::now() < deadline {
        tt.advance_time(Duration::from_millis(1));
        tt.poll_threads();
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(
        out.borrow_mut().take().unwrap().unwrap(),
        vec!["AsyncRamn1".to_string()]
    );
    assert!(bdev::get_by_name("AsyncRamn1").is_some());
    let gone: Rc<RefCell<Option<Result<(), bdev_nvme::BdevNvmeError>>>> = Rc::default();
    let g2 = Rc::clone(&gone);
    bdev_nvme::detach("AsyncRam", move |r| *g2.borrow_mut() = Some(r)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gone.borrow().is_none() && Instant::now() < deadline {
        tt.advance_time(Duration::from_millis(1));
        tt.poll_threads();
    }
    assert_eq!(gone.borrow_mut().take(), Some(Ok(())));
    assert!(bdev::get_by_name("AsyncRamn1").is_none());
}
