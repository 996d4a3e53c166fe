//! End-to-end tests of the HTTP/WebSocket server: the bridge is polled on the test thread
//! (which owns the registry) while a jsonrpsee client runs on another thread.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::cell::RefCell;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use jsonrpsee::core::ClientError;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use rpc::client::{SpdkCoreApiClient, VersionFields, VersionInfo};
use rpc::{HttpOpts, HttpServer, Request, RpcError, RpcRegistry, StateMask};
use serde::Deserialize;
use serde_json::{Value, json};

const TEST_DEADLINE: Duration = Duration::from_secs(30);

fn version() -> VersionInfo {
    VersionInfo {
        version: "rspdk v0.1.0".into(),
        fields: VersionFields {
            major: 0,
            minor: 1,
            patch: 0,
            suffix: String::new(),
            commit: None,
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeParams {
    size: u64,
}

/// Serves a registry over HTTP/WS while `client` runs against `addr` on a tokio runtime.
fn run<F, Fut>(client: F)
where
    F: FnOnce(std::net::SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let reg = RpcRegistry::new();
    reg.register("spdk_get_version", StateMask::BOTH, |r| r.ok(version()));
    reg.register_typed("sized", StateMask::BOTH, |p: SizeParams, r: Request| {
        r.ok(p.size * 2)
    });
    reg.register("run_only", StateMask::RUNTIME, |r| r.ok(1));
    let deferred: Rc<RefCell<Vec<Request>>> = Rc::default();
    let d = deferred.clone();
    reg.register("deferred", StateMask::BOTH, move |r| d.borrow_mut().push(r));

    let (server, bridge) =
        HttpServer::start("127.0.0.1:0".parse().unwrap(), HttpOpts::default()).unwrap();
    let addr = server.local_addr();
    let handle = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client(addr));
    });
    let start = Instant::now();
    let mut polls = 0u64;
    while !handle.is_finished() {
        assert!(
            start.elapsed() < TEST_DEADLINE,
            "test client did not finish"
        );
        if !bridge.poll(&reg) {
            thread::sleep(Duration::from_millis(1));
        }
        polls += 1;
        // Deferred calls are answered on a later poll.
        if polls.is_multiple_of(5) {
            for r in deferred.borrow_mut().drain(..) {
                r.ok("later");
            }
        }
    }
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
    server.stop();
}

fn call_error(e: ClientError) -> RpcError {
    match e {
        ClientError::Call(obj) => RpcError::new(obj.code(), obj.message()),
        other => panic!("expected a call error, got {other:?}"),
    }
}

#[test]
fn http_client_trait_calls_registry_methods() {
    run(|addr| async move {
        let client = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        assert_eq!(client.spdk_get_version().await.unwrap(), version());
        assert_eq!(
            client.rpc_get_methods(false, false).await.unwrap(),
            vec![
                "rpc_get_methods",
                "spdk_get_version",
                "sized",
                "run_only",
                "deferred"
            ]
        );
        assert_eq!(
            client.rpc_get_methods(true, false).await.unwrap(),
            vec!["rpc_get_methods", "spdk_get_version", "sized", "deferred"]
        );
        let v: Value = client.request("deferred", rpc_params![]).await.unwrap();
        assert_eq!(v, json!("later"));
    });
}

#[test]
fn http_errors_carry_spdk_codes_and_messages() {
    run(|addr| async move {
        let client = HttpClientBuilder::default()
            .build(format!("http://{addr}"))
            .unwrap();
        let e = client
            .request::<Value, _>("no_such_method", rpc_params![])
            .await
            .unwrap_err();
        assert_eq!(call_error(e), RpcError::new(-32601, "Method not found"));
        let mut p = jsonrpsee::core::params::ObjectParams::new();
        p.insert("size", "big").unwrap();
        let e = client.request::<Value, _>("sized", p).await.unwrap_err();
        assert_eq!(
            call_error(e),
            RpcError::new(
                -32602,
                "Invalid parameters: invalid type: string \"big\", expected u64"
            )
        );
        let e = client
            .request::<Value, _>("run_only", rpc_params![])
            .await
            .unwrap_err();
        assert_eq!(call_error(e).code, -1);
        let mut p = jsonrpsee::core::params::ObjectParams::new();
        p.insert("size", 21).unwrap();
        let v: Value = client.request("sized", p).await.unwrap();
        assert_eq!(v, json!(42));
    });
}

#[test]
fn websocket_client_trait_and_batch() {
    run(|addr| async move {
        let client = WsClientBuilder::default()
            .build(format!("ws://{addr}"))
            .await
            .unwrap();
        assert_eq!(client.spdk_get_version().await.unwrap(), version());
        let mut batch = jsonrpsee::core::params::BatchRequestBuilder::new();
        batch.insert("deferred", rpc_params![]).unwrap();
        batch.insert("no_such_method", rpc_params![]).unwrap();
        let answers = client.batch_request::<Value>(batch).await.unwrap();
        let answers: Vec<Result<Value, i32>> = answers
            .into_iter()
            .map(|a| a.map_err(|e| e.code()))
            .collect();
        assert_eq!(answers, vec![Ok(json!("later")), Err(-32601)]);
    });
}
