//! End-to-end tests of the Unix-socket server: the server is polled on the test thread while
//! clients run on other threads (bounded in count and time).
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rpc::client::UnixClient;
use rpc::{Error, Request, RpcError, RpcRegistry, RpcState, ServerOpts, StateMask, UnixServer};
use serde::Deserialize;
use serde_json::{Value, json};

/// Upper bound for any one test's client side.
const TEST_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    name: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizedParams {
    size: usize,
}

/// Requests a handler kept to answer later, with the number of polls they have waited.
type Deferred = Rc<RefCell<Vec<(u32, Request)>>>;

fn registry(deferred: &Deferred) -> Rc<RpcRegistry> {
    let reg = RpcRegistry::new();
    reg.register("echo", StateMask::BOTH, |r| {
        let p = r.params().cloned().unwrap_or(Value::Null);
        r.ok(p)
    });
    reg.register_typed(
        "fake_create",
        StateMask::BOTH,
        |p: CreateParams, r: Request| r.ok(format!("{}:{}", p.name, p.size)),
    );
    reg.register("start_only", StateMask::STARTUP, |r| r.ok("s"));
    reg.register("run_only", StateMask::RUNTIME, |r| r.ok("r"));
    let weak = Rc::downgrade(&reg);
    reg.register("framework_start_init", StateMask::STARTUP, move |r| {
        if let Some(reg) = weak.upgrade() {
            reg.set_state(RpcState::Runtime);
        }
        r.ok(true)
    });
    reg.register("fail_errno", StateMask::BOTH, |r| {
        r.err(RpcError::errno(libc::EEXIST))
    });
    reg.register("drop_me", StateMask::BOTH, drop);
    reg.register_typed("sized", StateMask::BOTH, |p: SizedParams, r: Request| {
        r.ok("x".repeat(p.size))
    });
    let d = deferred.clone();
    reg.register("deferred", StateMask::BOTH, move |r| {
        d.borrow_mut().push((0, r))
    });
    reg
}

/// Runs `client` on another thread against a fresh server polled here until it ends.
fn run<F>(opts: ServerOpts, client: F)
where
    F: FnOnce(PathBuf) + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpc.sock");
    let deferred: Deferred = Rc::default();
    let mut server = UnixServer::listen(&path, registry(&deferred), opts).unwrap();
    let p = path.clone();
    let handle = thread::spawn(move || client(p));
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(
            start.elapsed() < TEST_DEADLINE,
            "test client did not finish"
        );
        if !server.poll() {
            thread::sleep(Duration::from_micros(200));
        }
        // Answer deferred requests on a later poll than the one that received them.
        let mut d = deferred.borrow_mut();
        for entry in d.iter_mut() {
            entry.0 += 1;
        }
        let ready: Vec<Request> = {
            let (ready, waiting): (Vec<_>, Vec<_>) = d.drain(..).partition(|(n, _)| *n >= 3);
            *d = waiting;
            ready.into_iter().map(|(_, r)| r).collect()
        };
        drop(d);
        for r in ready {
            r.ok("later");
        }
    }
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
    server.close();
    assert!(!path.exists(), "socket file removed on close");
}

fn client(path: &Path) -> UnixClient {
    let mut c = UnixClient::connect(path).unwrap();
    c.set_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// A second client still gets a correct answer.
fn second_client_works(path: &Path) {
    let mut c = client(path);
    assert_eq!(
        c.call("echo", Some(json!({"a": 1}))).unwrap(),
        json!({"a": 1})
    );
}

fn error(id: Value, code: i32, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

#[test]
fn call_returns_result_and_response_ends_with_newline() {
    run(ServerOpts::default(), |path| {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(br#"{"jsonrpc":"2.0","method":"echo","id":7,"params":{"x":[1,2]}}"#)
            .unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1);
            got.push(byte[0]);
        }
        let v: Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(v, result(json!(7), json!({"x": [1, 2]})));
        second_client_works(&path);
    });
}

#[test]
fn not_json_bytes_get_parse_error_then_close() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        c.send_raw(b"hello, this is not json").unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            error(Value::Null, -32700, "Parse error")
        );
        assert!(matches!(
            c.read_response(),
            Err(Error::Closed { partial: 0 })
        ));
        second_client_works(&path);
    });
}

#[test]
fn syntax_error_inside_object_gets_parse_error() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        c.send_raw(br#"{"jsonrpc":"2.0","method" "echo","id":1}"#)
            .unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            error(Value::Null, -32700, "Parse error")
        );
        assert!(matches!(c.read_response(), Err(Error::Closed { .. })));
        second_client_works(&path);
    });
}

#[test]
fn json_that_is_not_a_request_gets_invalid_request_and_connection_stays() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        let bad = [
            r#"{"jsonrpc":"1.0","method":"echo","id":1}"#,
            r#"{"jsonrpc":"2.0","method":5,"id":1}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","method":"echo","id":{"a":1}}"#,
            r#"{"jsonrpc":"2.0","method":"echo","id":1,"extra":true}"#,
            r#"{"jsonrpc":"2.0","method":"echo","id":1,"params":5}"#,
            r#""just a string""#,
            "[]",
            "42 ",
        ];
        for text in bad {
            c.send_raw(text.as_bytes()).unwrap();
            assert_eq!(
                c.read_response().unwrap(),
                error(Value::Null, -32600, "Invalid request"),
                "for {text}"
            );
        }
        assert_eq!(c.call("echo", Some(json!([1]))).unwrap(), json!([1]));
        second_client_works(&path);
    });
}

#[test]
fn request_without_jsonrpc_member_is_accepted_as_spdk_does() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        c.send_raw(br#"{"method":"echo","id":"a","params":[true]}"#)
            .unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            result(json!("a"), json!([true]))
        );
    });
}

#[test]
fn unknown_method_gets_method_not_found() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        assert_eq!(
            c.call("no_such_method", None).unwrap_err(),
            RpcError::new(-32601, "Method not found")
        );
        second_client_works(&path);
    });
}

#[test]
fn bad_params_get_invalid_params_naming_the_problem() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        let cases = [
            (None, "Invalid parameters: missing field `name`"),
            (
                Some(json!({"name": "m0"})),
                "Invalid parameters: missing field `size`",
            ),
            (
                Some(json!({"name": "m0", "size": 1, "colour": "red"})),
                "Invalid parameters: unknown field `colour`, expected `name` or `size`",
            ),
            (
                Some(json!({"name": "m0", "size": "big"})),
                "Invalid parameters: invalid type: string \"big\", expected u64",
            ),
        ];
        for (params, message) in cases {
            assert_eq!(
                c.call("fake_create", params).unwrap_err(),
                RpcError::new(-32602, message)
            );
        }
        assert_eq!(
            c.call("fake_create", Some(json!({"name": "m0", "size": 8})))
                .unwrap(),
            json!("m0:8")
        );
        second_client_works(&path);
    });
}

#[test]
fn handler_errno_error_reaches_client_in_spdk_form() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        assert_eq!(
            c.call("fail_errno", None).unwrap_err(),
            RpcError::new(-17, "File exists")
        );
    });
}

#[test]
fn oversize_request_is_rejected_and_connection_closed() {
    let opts = ServerOpts {
        max_request_size: 1024,
        ..ServerOpts::default()
    };
    run(opts, |path| {
        let expected = error(
            Value::Null,
            -32600,
            "Invalid request: larger than max_request_size (1024 bytes)",
        );
        // A complete request over the limit.
        let mut c = client(&path);
        let big =
            json!({"jsonrpc": "2.0", "method": "echo", "id": 1, "params": {"x": "a".repeat(2000)}});
        c.send_raw(big.to_string().as_bytes()).unwrap();
        assert_eq!(c.read_response().unwrap(), expected);
        assert!(matches!(c.read_response(), Err(Error::Closed { .. })));
        // An unfinished one that is already over the limit.
        let mut c = client(&path);
        let mut partial = br#"{"jsonrpc":"2.0","method":"echo","params":{"x":""#.to_vec();
        partial.extend(std::iter::repeat_n(b'b', 3000));
        c.send_raw(&partial).unwrap();
        assert_eq!(c.read_response().unwrap(), expected);
        assert!(matches!(c.read_response(), Err(Error::Closed { .. })));
        // Just under the limit is fine.
        let mut c = client(&path);
        let fits = "c".repeat(900);
        assert_eq!(
            c.call("echo", Some(json!({"x": fits}))).unwrap(),
            json!({"x": fits})
        );
    });
}

#[test]
fn silent_half_request_is_closed_after_idle_timeout() {
    let opts = ServerOpts {
        idle_timeout: Duration::from_millis(300),
        ..ServerOpts::default()
    };
    run(opts, |path| {
        let mut c = client(&path);
        let start = Instant::now();
        c.send_raw(br#"{"jsonrpc":"2.0","method":"ec"#).unwrap();
        assert!(matches!(
            c.read_response(),
            Err(Error::Closed { partial: 0 })
        ));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "closed after {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
        second_client_works(&path);
    });
}

#[test]
fn idle_connection_without_partial_request_stays_open() {
    let opts = ServerOpts {
        idle_timeout: Duration::from_millis(100),
        ..ServerOpts::default()
    };
    run(opts, |path| {
        let mut c = client(&path);
        assert_eq!(c.call("echo", Some(json!([1]))).unwrap(), json!([1]));
        thread::sleep(Duration::from_millis(400));
        assert_eq!(c.call("echo", Some(json!([2]))).unwrap(), json!([2]));
    });
}

#[test]
fn hundred_concurrent_clients_each_get_their_answer() {
    run(ServerOpts::default(), |path| {
        let clients: Vec<_> = (0..100)
            .map(|i| {
                let path = path.clone();
                thread::spawn(move || {
                    let mut c = client(&path);
                    for round in 0..3 {
                        let v = json!({"client": i, "round": round});
                        assert_eq!(c.call("echo", Some(v.clone())).unwrap(), v);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    });
}

#[test]
fn batch_gets_array_of_answers_without_notifications() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        let batch = json!([
            {"jsonrpc": "2.0", "method": "echo", "id": 1, "params": [1]},
            {"jsonrpc": "2.0", "method": "echo", "params": [2]},
            {"jsonrpc": "2.0", "method": "nope", "id": 3},
            5,
            {"jsonrpc": "2.0", "method": "deferred", "id": 4}
        ]);
        c.send_raw(batch.to_string().as_bytes()).unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            json!([
                result(json!(1), json!([1])),
                error(json!(3), -32601, "Method not found"),
                error(Value::Null, -32600, "Invalid request"),
                result(json!(4), json!("later")),
            ])
        );
        // A batch of notifications only is answered with nothing.
        let quiet = json!([
            {"jsonrpc": "2.0", "method": "echo", "params": [1]},
            {"jsonrpc": "2.0", "method": "nope"}
        ]);
        c.send_raw(quiet.to_string().as_bytes()).unwrap();
        assert_eq!(
            c.call("echo", Some(json!(["after"]))).unwrap(),
            json!(["after"])
        );
    });
}

#[test]
fn notifications_get_no_answer() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        c.send_raw(br#"{"jsonrpc":"2.0","method":"echo","params":{"n":1}}"#)
            .unwrap();
        c.send_raw(br#"{"jsonrpc":"2.0","method":"fail_errno"}"#)
            .unwrap();
        c.send_raw(br#"{"jsonrpc":"2.0","method":"echo","id":2,"params":{"n":2}}"#)
            .unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            result(json!(2), json!({"n": 2}))
        );
    });
}

#[test]
fn deferred_answer_arrives_and_keeps_request_order() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        // Pipelined, no separator: the deferred one is answered polls later, yet first.
        c.send_raw(
            br#"{"jsonrpc":"2.0","method":"deferred","id":1}{"jsonrpc":"2.0","method":"echo","id":2,"params":[2]}"#,
        )
        .unwrap();
        assert_eq!(c.read_response().unwrap(), result(json!(1), json!("later")));
        assert_eq!(c.read_response().unwrap(), result(json!(2), json!([2])));
    });
}

#[test]
fn request_split_across_writes_is_reassembled() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        let text = br#"{"jsonrpc":"2.0","method":"echo","id":9,"params":{"s":"a}]{[\"b"}}"#;
        for chunk in text.chunks(7) {
            c.send_raw(chunk).unwrap();
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            c.read_response().unwrap(),
            result(json!(9), json!({"s": "a}]{[\"b"}))
        );
    });
}

#[test]
fn client_that_shuts_its_write_side_still_gets_answers() {
    run(ServerOpts::default(), |path| {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(br#"{"jsonrpc":"2.0","method":"deferred","id":1}"#)
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        assert_eq!(all, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"later\"}\n");
    });
}

#[test]
fn wrong_state_gets_spdk_state_error() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        assert_eq!(
            c.call("run_only", None).unwrap_err(),
            RpcError::new(
                -1,
                "Method may only be called after framework is initialized using \
                 framework_start_init RPC."
            )
        );
        assert_eq!(c.call("start_only", None).unwrap(), json!("s"));
        assert_eq!(c.call("framework_start_init", None).unwrap(), json!(true));
        assert_eq!(
            c.call("start_only", None).unwrap_err(),
            RpcError::new(
                -1,
                "Method may only be called before framework is initialized. Use --wait-for-rpc \
                 command line parameter and then issue this RPC before the framework_start_init \
                 RPC."
            )
        );
        assert_eq!(c.call("run_only", None).unwrap(), json!("r"));
        let current = c
            .call("rpc_get_methods", Some(json!({"current": true})))
            .unwrap();
        assert_eq!(
            current,
            json!([
                "rpc_get_methods",
                "echo",
                "fake_create",
                "run_only",
                "fail_errno",
                "drop_me",
                "sized",
                "deferred"
            ])
        );
    });
}

#[test]
fn dropped_request_is_answered_with_internal_error() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        assert_eq!(
            c.call("drop_me", None).unwrap_err(),
            RpcError::new(
                -32603,
                "Internal error: the method dropped the request without answering"
            )
        );
        second_client_works(&path);
    });
}

#[test]
fn listen_refuses_a_served_path_and_replaces_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // A stale socket file left by a dead process.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let reg = RpcRegistry::new();
    let server = UnixServer::listen(&path, reg.clone(), ServerOpts::default()).unwrap();
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    assert!(Path::new(&lock).exists());
    match UnixServer::listen(&path, reg.clone(), ServerOpts::default()) {
        Err(Error::AddressInUse(p)) => assert_eq!(p, path),
        other => panic!("expected AddressInUse, got {other:?}"),
    }
    server.close();
    assert!(!path.exists());
    assert!(!Path::new(&lock).exists());
    // Free again after close.
    UnixServer::listen(&path, reg, ServerOpts::default())
        .unwrap()
        .close();
}

#[test]
fn max_connections_defers_extra_clients_until_a_slot_frees() {
    let opts = ServerOpts {
        max_connections: 2,
        ..ServerOpts::default()
    };
    run(opts, |path| {
        let mut a = client(&path);
        let mut b = client(&path);
        assert_eq!(a.call("echo", Some(json!([1]))).unwrap(), json!([1]));
        assert_eq!(b.call("echo", Some(json!([2]))).unwrap(), json!([2]));
        // The third waits in the backlog; it is served once `a` leaves.
        let waiting = {
            let path = path.clone();
            thread::spawn(move || {
                let mut c = client(&path);
                c.call("echo", Some(json!([3]))).unwrap()
            })
        };
        thread::sleep(Duration::from_millis(200));
        assert!(!waiting.is_finished());
        drop(a);
        assert_eq!(waiting.join().unwrap(), json!([3]));
    });
}

#[test]
fn deep_nesting_and_invalid_utf8_get_parse_error_without_crash() {
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        let mut deep = "[".repeat(100_000);
        deep.push_str(&"]".repeat(100_000));
        c.send_raw(deep.as_bytes()).unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            error(Value::Null, -32700, "Parse error")
        );
        assert!(matches!(c.read_response(), Err(Error::Closed { .. })));
        let mut c = client(&path);
        c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"ech\xff\",\"id\":1}")
            .unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            error(Value::Null, -32700, "Parse error")
        );
        second_client_works(&path);
    });
}

/// Polls `server` for `span`.
fn poll_for(server: &mut UnixServer, span: Duration) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        if !server.poll() {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Polls `server` until `handle` ends (bounded by TEST_DEADLINE), then joins it.
fn poll_until_done(server: &mut UnixServer, handle: thread::JoinHandle<()>) {
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(
            start.elapsed() < TEST_DEADLINE,
            "test client did not finish"
        );
        if !server.poll() {
            thread::sleep(Duration::from_micros(200));
        }
    }
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Polls `server` until `rx` gets a message (bounded by TEST_DEADLINE).
fn poll_until_signal(server: &mut UnixServer, rx: &mpsc::Receiver<()>) {
    let start = Instant::now();
    while rx.try_recv().is_err() {
        assert!(
            start.elapsed() < TEST_DEADLINE,
            "test client did not signal"
        );
        if !server.poll() {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

#[test]
fn client_that_does_not_read_has_its_requests_held_until_it_reads() {
    const N: usize = 2000;
    const ANSWER: usize = 4096;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpc.sock");
    let deferred: Deferred = Rc::default();
    let reg = registry(&deferred);
    let calls = Rc::new(std::cell::Cell::new(0usize));
    let counter = calls.clone();
    reg.register("counted", StateMask::BOTH, move |r| {
        counter.set(counter.get() + 1);
        r.ok("x".repeat(ANSWER))
    });
    let opts = ServerOpts {
        max_unsent: 64 << 10,
        ..ServerOpts::default()
    };
    let mut server = UnixServer::listen(&path, reg, opts).unwrap();
    let (written_tx, written_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let p = path.clone();
    let flooder = thread::spawn(move || {
        let mut s = UnixStream::connect(&p).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        for id in 0..N {
            all.extend_from_slice(
                format!(r#"{{"jsonrpc":"2.0","method":"counted","id":{id}}}"#).as_bytes(),
            );
        }
        // About 90 KB: within the socket buffer, so the server may read it all at once.
        s.write_all(&all).unwrap();
        written_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let mut r = std::io::BufReader::new(s);
        let big = json!("x".repeat(ANSWER));
        for id in 0..N {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v, result(json!(id), big.clone()));
        }
    });
    poll_until_signal(&mut server, &written_rx);
    poll_for(&mut server, Duration::from_millis(300));
    let held = calls.get();
    // 64 KiB of unsent answers plus what the socket buffer took (about 200 KiB on Linux) is
    // some 70 answers of 4 KiB; without the bound all 2000 would run.
    assert!(
        held > 0 && held < 300,
        "ran {held} of {N} calls for a client not reading"
    );
    poll_for(&mut server, Duration::from_millis(200));
    assert_eq!(
        calls.get(),
        held,
        "more calls ran while the client read nothing"
    );
    // Another connection is served meanwhile.
    let p = path.clone();
    poll_until_done(&mut server, thread::spawn(move || second_client_works(&p)));
    go_tx.send(()).unwrap();
    poll_until_done(&mut server, flooder);
    assert_eq!(calls.get(), N);
    server.close();
}

#[test]
fn slow_reader_with_half_a_request_unread_is_not_closed_as_idle() {
    const N: usize = 20;
    const ANSWER: usize = 32 << 10;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpc.sock");
    let deferred: Deferred = Rc::default();
    let reg = registry(&deferred);
    reg.register("big", StateMask::BOTH, move |r| r.ok("y".repeat(ANSWER)));
    let opts = ServerOpts {
        max_unsent: 64 << 10,
        idle_timeout: Duration::from_millis(200),
        ..ServerOpts::default()
    };
    let mut server = UnixServer::listen(&path, reg, opts).unwrap();
    let (written_tx, written_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let p = path.clone();
    let client = thread::spawn(move || {
        let mut s = UnixStream::connect(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        for id in 0..N {
            all.extend_from_slice(
                format!(r#"{{"jsonrpc":"2.0","method":"deferred","id":{id}}}"#).as_bytes(),
            );
        }
        let last = format!(r#"{{"jsonrpc":"2.0","method":"big","id":{N}}}"#);
        let (head, tail) = last.split_at(10);
        all.extend_from_slice(head.as_bytes());
        s.write_all(&all).unwrap();
        written_tx.send(()).unwrap();
        // Reads nothing for longer than the idle timeout.
        go_rx.recv().unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let big = json!("y".repeat(ANSWER));
        for id in 0..N {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut r, &mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v, result(json!(id), big.clone()));
        }
        // The half request is still there: its rest completes it.
        s.write_all(tail.as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v, result(json!(N), big));
    });
    poll_until_signal(&mut server, &written_rx);
    // All 20 calls run (their answers come later) and the half request waits in the buffer.
    let t = std::time::Instant::now();
    while deferred.borrow().len() < N {
        server.poll();
        assert!(t.elapsed() < Duration::from_secs(10), "calls did not run");
    }
    // Their answers, 640 KiB, come after the framing: the connection stalls at 64 KiB unsent
    // with nothing left to run, only the half request unread.
    for (_, r) in deferred.borrow_mut().drain(..) {
        r.ok("y".repeat(ANSWER));
    }
    poll_for(&mut server, Duration::from_millis(600));
    go_tx.send(()).unwrap();
    poll_until_done(&mut server, client);
    server.close();
}

#[test]
fn unanswered_calls_stop_reading_at_max_pending_calls() {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpc.sock");
    let deferred: Deferred = Rc::default();
    let reg = registry(&deferred);
    let kept: Rc<RefCell<Vec<Request>>> = Rc::default();
    let k = kept.clone();
    reg.register("keep", StateMask::BOTH, move |r| k.borrow_mut().push(r));
    let opts = ServerOpts {
        max_pending_calls: 4,
        ..ServerOpts::default()
    };
    let mut server = UnixServer::listen(&path, reg, opts).unwrap();
    let (written_tx, written_rx) = mpsc::channel();
    let p = path.clone();
    let handle = thread::spawn(move || {
        let mut c = client(&p);
        let mut all = String::new();
        for id in 0..N {
            all.push_str(&format!(r#"{{"jsonrpc":"2.0","method":"keep","id":{id}}}"#));
        }
        c.send_raw(all.as_bytes()).unwrap();
        written_tx.send(()).unwrap();
        for id in 0..N {
            assert_eq!(c.read_response().unwrap(), result(json!(id), json!(id)));
        }
    });
    poll_until_signal(&mut server, &written_rx);
    poll_for(&mut server, Duration::from_millis(200));
    assert_eq!(kept.borrow().len(), 4, "calls run while 4 are unanswered");
    let p = path.clone();
    poll_until_done(&mut server, thread::spawn(move || second_client_works(&p)));
    // Answering lets the rest in, never more than 4 unanswered at once.
    let mut answered = 0;
    let start = Instant::now();
    while answered < N {
        assert!(start.elapsed() < TEST_DEADLINE, "calls did not resume");
        poll_for(&mut server, Duration::from_millis(5));
        let ready: Vec<Request> = kept.borrow_mut().drain(..).collect();
        assert!(ready.len() <= 4, "{} calls unanswered at once", ready.len());
        for r in ready {
            r.ok(answered);
            answered += 1;
        }
    }
    poll_until_done(&mut server, handle);
    server.close();
}

#[test]
fn batch_longer_than_max_batch_len_gets_invalid_request_and_connection_stays() {
    assert_eq!(ServerOpts::default().max_batch_len, 1024);
    run(ServerOpts::default(), |path| {
        let mut c = client(&path);
        let batch = |n: usize| {
            Value::Array(
                (0..n)
                    .map(|i| json!({"jsonrpc": "2.0", "method": "echo", "id": i, "params": [i]}))
                    .collect(),
            )
            .to_string()
        };
        c.send_raw(batch(1025).as_bytes()).unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            error(
                Value::Null,
                -32600,
                "Invalid request: batch longer than max_batch_len (1024 calls)"
            )
        );
        c.send_raw(batch(1024).as_bytes()).unwrap();
        let answers = c.read_response().unwrap();
        let answers = answers.as_array().unwrap();
        assert_eq!(answers.len(), 1024);
        assert_eq!(answers[1023], result(json!(1023), json!([1023])));
        assert_eq!(
            c.call("echo", Some(json!(["after"]))).unwrap(),
            json!(["after"])
        );
        second_client_works(&path);
    });
}

#[test]
fn answer_larger_than_max_answer_size_gets_error_and_connection_stays() {
    assert_eq!(ServerOpts::default().max_answer_size, 32 << 20);
    let opts = ServerOpts {
        max_answer_size: 1024,
        ..ServerOpts::default()
    };
    run(opts, |path| {
        let mut c = client(&path);
        c.send_raw(br#"{"jsonrpc":"2.0","method":"sized","id":1,"params":{"size":2000}}"#)
            .unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            error(json!(1), -32603, "Send buf exceeded maximum size (1024)")
        );
        // A batch's whole array counts: the second answer no longer fits.
        c.send_raw(
            br#"[{"jsonrpc":"2.0","method":"sized","id":2,"params":{"size":600}},
                 {"jsonrpc":"2.0","method":"sized","id":3,"params":{"size":600}}]"#,
        )
        .unwrap();
        assert_eq!(
            c.read_response().unwrap(),
            json!([
                result(json!(2), json!("x".repeat(600))),
                error(json!(3), -32603, "Send buf exceeded maximum size (1024)")
            ])
        );
        assert_eq!(
            c.call("sized", Some(json!({"size": 900}))).unwrap(),
            json!("x".repeat(900))
        );
        second_client_works(&path);
    });
}

#[test]
fn listen_refuses_and_keeps_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"keep me").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let reg = RpcRegistry::new();
    for p in [&path, &link, &dir.path().to_path_buf()] {
        match UnixServer::listen(p, reg.clone(), ServerOpts::default()) {
            Err(e @ Error::NotASocket(_)) => assert_eq!(
                e.to_string(),
                format!(
                    "RPC Unix domain socket path {} exists and is not a socket; not removing \
                     it. Specify another.",
                    p.display()
                )
            ),
            other => panic!("expected NotASocket for {}, got {other:?}", p.display()),
        }
        let mut lock = p.as_os_str().to_owned();
        lock.push(".lock");
        assert!(!Path::new(&lock).exists(), "no lock file made beside it");
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    // Once the file is gone, the same path serves.
    std::fs::remove_file(&link).unwrap();
    let server = UnixServer::listen(&link, reg, ServerOpts::default()).unwrap();
    let p = link.clone();
    let t = thread::spawn(move || {
        let mut c = client(&p);
        assert_eq!(
            c.call("rpc_get_methods", None).unwrap(),
            json!(["rpc_get_methods"])
        );
    });
    let mut server = server;
    poll_until_done(&mut server, t);
    server.close();
}
