//! The JSON-RPC Unix-socket server (`rpc::UnixServer`: SPDK framing scanner, request parsing,
//! batch handling, typed parameters, deferred answers) on arbitrary client bytes.
//!
//! The server's framing is private, so the target drives the public path: a `UnixServer` (one
//! per fuzzing process, in a temporary directory) with a registry holding an echo method, a
//! typed method (`deny_unknown_fields`), a method answered later, a method whose handler drops
//! the request, and a deprecated alias. Per input a client connects, writes the bytes (in chunks
//! chosen by the first four bytes) with server polls in between, closes its write side and
//! reads until the server closes the connection.
//!
//! Checks: no panic; the server closes the connection within 5 s after the client's EOF (no hang,
//! no leaked connection); every answer is a JSON object or array of objects with `"jsonrpc":
//! "2.0"`, and each answer is one JSON text followed by a newline.
#![no_main]

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rpc::{Request, RpcRegistry, ServerOpts, StateMask, UnixServer};
use rspdk_fuzz::{Input, Splitter};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TypedParams {
    name: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    flags: Vec<bool>,
}

struct Fixture {
    server: UnixServer,
    deferred: Rc<RefCell<Vec<Request>>>,
    _dir: PathBuf,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("rspdk-fuzz-rpc-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let reg = RpcRegistry::new();
    reg.register("echo", StateMask::BOTH, |req: Request| {
        let p = req.params().cloned().unwrap_or(Value::Null);
        req.ok(p);
    });
    reg.register_typed("typed", StateMask::BOTH, |p: TypedParams, req: Request| {
        req.ok(p.name.len() as u64 + p.size.unwrap_or(0) % 7 + p.flags.len() as u64);
    });
    let deferred = Rc::new(RefCell::new(Vec::new()));
    let d2 = deferred.clone();
    reg.register("later", StateMask::BOTH, move |req: Request| {
        d2.borrow_mut().push(req);
    });
    reg.register("drop", StateMask::BOTH, drop);
    reg.register("runtime_only", StateMask::RUNTIME, |req: Request| {
        req.ok(true)
    });
    reg.register_alias_deprecated("echo_old", "echo");
    let opts = ServerOpts {
        max_request_size: 16 * 1024,
        idle_timeout: Duration::from_secs(2),
        max_connections: 8,
    };
    let server = match UnixServer::listen(&dir.join("rpc.sock"), reg, opts) {
        Ok(s) => s,
        Err(e) => panic!("cannot start the RPC server: {e}"),
    };
    Fixture {
        server,
        deferred,
        _dir: dir,
    }
}

fn check_answer(v: &Value) {
    match v {
        Value::Object(m) => {
            assert_eq!(
                m.get("jsonrpc"),
                Some(&Value::String("2.0".into())),
                "answer {v}"
            );
            assert!(m.contains_key("id"), "answer without id: {v}");
            assert!(
                m.contains_key("result") != m.contains_key("error"),
                "answer needs exactly one of result/error: {v}"
            );
        }
        Value::Array(a) => {
            assert!(!a.is_empty(), "empty batch answer");
            for x in a {
                assert!(x.is_object(), "batch answer element {x}");
                check_answer(x);
            }
        }
        other => panic!("answer is not an object or array: {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let seed = inp.u32();
    let body = inp.rest();
    FIXTURE.with(|f| {
        let mut f = f.borrow_mut();
        let fx = f.get_or_insert_with(fixture);
        let Ok(mut client) = UnixStream::connect(fx.server.path()) else {
            panic!("cannot connect to the RPC server");
        };
        if client.set_nonblocking(true).is_err() {
            panic!("set_nonblocking");
        }
        let mut answers = Vec::new();
        let read_some = |client: &mut UnixStream, answers: &mut Vec<u8>| -> bool {
            let mut buf = [0u8; 4096];
            loop {
                match client.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(n) => answers.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // Reset by the server after it closed on a parse error.
                    Err(_) => return true,
                }
            }
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut closed = false;
        'write: for chunk in Splitter::new(seed, 64).split(body) {
            let mut rest = chunk;
            while !rest.is_empty() {
                match client.write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // The server closed (parse error, request too big): stop writing.
                    Err(_) => break 'write,
                }
                fx.server.poll();
                closed |= read_some(&mut client, &mut answers);
                if closed {
                    break 'write;
                }
                assert!(Instant::now() < deadline, "server stopped reading");
            }
            fx.server.poll();
        }
        let _ = client.shutdown(std::net::Shutdown::Write);
        while !closed {
            fx.server.poll();
            for req in fx.deferred.borrow_mut().drain(..) {
                req.ok("later");
            }
            closed = read_some(&mut client, &mut answers);
            if !closed {
                assert!(
                    Instant::now() < deadline,
                    "server neither answered nor closed the connection 5 s after EOF"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // Let the server reap the connection.
        for _ in 0..3 {
            fx.server.poll();
        }
        assert!(
            fx.server.connections() <= 1,
            "connections leak: {}",
            fx.server.connections()
        );
        fx.deferred.borrow_mut().clear();
        // Every answer: one JSON text then "\n".
        let mut stream = serde_json::Deserializer::from_slice(&answers).into_iter::<Value>();
        let mut last_end = 0;
        while let Some(v) = stream.next() {
            let v = match v {
                Ok(v) => v,
                Err(e) => panic!(
                    "server wrote invalid JSON ({e}): {:?}",
                    String::from_utf8_lossy(&answers)
                ),
            };
            check_answer(&v);
            let end = stream.byte_offset();
            assert_eq!(
                answers.get(end),
                Some(&b'\n'),
                "answer not followed by a newline"
            );
            last_end = end + 1;
        }
        assert_eq!(
            last_end,
            answers.len(),
            "trailing bytes after the last answer"
        );
    });
});
