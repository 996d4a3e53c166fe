//! The number of attaches in progress at once is bounded (each holds an OS thread and a
//! connection): own process, because the bound is process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Answer, err, rpc_setup, silent_peer, start, wait};
use serde_json::json;

#[test]
fn attaches_in_progress_are_bounded() {
    let (tt, reg) = rpc_setup();
    let (port, stop, peer) = silent_peer();
    let attach = |name: &str| {
        json!({"name": name, "trtype": "TCP", "traddr": "127.0.0.1",
               "trsvcid": port.to_string(), "subnqn": "nqn.2016-06.io.spdk:silent",
               "fabrics_connect_timeout_us": 1_500_000})
    };
    let max = bdev_nvme::MAX_ATTACHES_IN_PROGRESS;
    let pending: Vec<Answer> = (0..max)
        .map(|i| {
            start(
                &reg,
                "bdev_nvme_attach_controller",
                attach(&format!("Many{i}")),
            )
        })
        .collect();
    assert!(pending.iter().all(|a| a.borrow().is_none()));
    let over = start(&reg, "bdev_nvme_attach_controller", attach("ManyOver"));
    assert_eq!(
        err(wait(&tt, &over, Duration::from_secs(1))),
        (
            -11,
            format!("too many controller attaches in progress (at most {max}); try again later")
        )
    );
    for a in &pending {
        assert_eq!(
            err(wait(&tt, a, Duration::from_secs(20))),
            (-5, "timed out: ICResp".into())
        );
    }
    stop.send(()).unwrap();
    assert_eq!(peer.join().unwrap(), max);
}
