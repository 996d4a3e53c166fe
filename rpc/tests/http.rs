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
    run_with(HttpOpts::default(), client)
}

/// [`run`] with the given options.
fn run_with<F, Fut>(opts: HttpOpts, client: F)
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
    reg.register_typed("text", StateMask::BOTH, |p: SizeParams, r: Request| {
        r.ok("x".repeat(p.size as usize))
    });

    let (server, bridge) = HttpServer::start("127.0.0.1:0".parse().unwrap(), opts).unwrap();
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
                "deferred",
                "text"
            ]
        );
        assert_eq!(
            client.rpc_get_methods(true, false).await.unwrap(),
            vec![
                "rpc_get_methods",
                "spdk_get_version",
                "sized",
                "deferred",
                "text"
            ]
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

/// Posts `body` as one HTTP request (blocking, loopback) and returns the JSON answer.
fn post(addr: std::net::SocketAddr, body: &str) -> Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, json) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(json).unwrap()
}

fn error(id: Value, code: i32, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

#[test]
fn http_batch_longer_than_max_batch_len_gets_invalid_request() {
    assert_eq!(HttpOpts::default().max_batch_len, 1024);
    run(|addr| async move {
        let batch = |n: usize| {
            Value::Array(
                (0..n)
                    .map(|i| {
                        json!({"jsonrpc": "2.0", "method": "sized", "id": i,
                                     "params": {"size": i}})
                    })
                    .collect(),
            )
            .to_string()
        };
        assert_eq!(
            post(addr, &batch(1025)),
            error(
                Value::Null,
                -32600,
                "Invalid request: batch longer than max_batch_len (1024 calls)"
            )
        );
        let answers = post(addr, &batch(1024));
        let answers = answers.as_array().unwrap();
        assert_eq!(answers.len(), 1024);
        assert_eq!(answers[1023], result(json!(1023), json!(2046)));
    });
}

#[test]
fn http_answer_larger_than_max_answer_size_gets_error() {
    assert_eq!(HttpOpts::default().max_answer_size, 32 << 20);
    let opts = HttpOpts {
        max_answer_size: 1024,
        ..HttpOpts::default()
    };
    run_with(opts, |addr| async move {
        let call = |id: u32, size: u32| json!({"jsonrpc": "2.0", "method": "text", "id": id, "params": {"size": size}});
        assert_eq!(
            post(addr, &call(1, 2000).to_string()),
            error(json!(1), -32603, "Send buf exceeded maximum size (1024)")
        );
        // A batch's whole array counts: the second answer no longer fits.
        assert_eq!(
            post(addr, &json!([call(2, 600), call(3, 600)]).to_string()),
            json!([
                result(json!(2), json!("x".repeat(600))),
                error(json!(3), -32603, "Send buf exceeded maximum size (1024)")
            ])
        );
        assert_eq!(
            post(addr, &call(4, 900).to_string()),
            result(json!(4), json!("x".repeat(900)))
        );
    });
}

#[test]
fn http_refuses_non_loopback_address_unless_allowed() {
    for addr in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0"] {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        match HttpServer::start(addr, HttpOpts::default()) {
            Err(e @ rpc::Error::RemoteHttpRefused(_)) => assert_eq!(
                e.to_string(),
                format!(
                    "refusing to serve RPC over HTTP on non-loopback address {addr}: it has no \
                     authentication; remote access must be allowed explicitly"
                )
            ),
            other => panic!("expected RemoteHttpRefused for {addr}, got {other:?}"),
        }
    }
    // Allowed explicitly, the address gets as far as bind (192.0.2.1 is TEST-NET-1, not on
    // this host, so nothing is exposed).
    let opts = HttpOpts {
        allow_remote: true,
        ..HttpOpts::default()
    };
    match HttpServer::start("192.0.2.1:0".parse().unwrap(), opts) {
        Err(e @ rpc::Error::Io { .. }) => {
            assert!(
                e.to_string().starts_with("cannot bind 192.0.2.1:0: "),
                "{e}"
            )
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    // Loopback needs no permission, IPv6 included.
    let (server, _bridge) = HttpServer::start("[::1]:0".parse().unwrap(), HttpOpts::default())
        .or_else(|_| HttpServer::start("127.0.0.2:0".parse().unwrap(), HttpOpts::default()))
        .unwrap();
    assert!(server.local_addr().ip().is_loopback());
    server.stop();
}
