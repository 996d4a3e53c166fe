//! `nvmf_tgt` as a user runs it: reactors, RPC states, config files, signals, interrupt mode.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Target, run_to_exit};
use serde_json::{Value, json};

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// Subsystem names in the order of the log lines containing `what`.
fn subsystem_order(log: &str, what: &str) -> Vec<String> {
    lines_with(log, what)
        .iter()
        .filter_map(|l| l.split("subsystem=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn core_mask_0x3_runs_two_reactors() {
    let t = Target::start(&["-m", "0x3"]);
    t.wait_init();
    let r = t.call("framework_get_reactors", None).unwrap();
    let cores: Vec<u64> = r["reactors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["lcore"].as_u64().unwrap())
        .collect();
    assert_eq!(cores, [0, 1]);
    assert_eq!(r["reactors"][0]["lw_threads"][0]["name"], "app_thread");
    assert_eq!(r["pid"].as_u64().unwrap(), u64::from(t.pid()));
    for k in ["tick_rate", "pid"] {
        assert!(r.get(k).is_some(), "{k}");
    }
    for k in [
        "lcore",
        "tid",
        "busy",
        "idle",
        "in_interrupt",
        "irq_mode",
        "lw_threads",
    ] {
        assert!(r["reactors"][1].get(k).is_some(), "{k}");
    }
}

#[test]
fn sigterm_finalises_subsystems_in_reverse_order_and_exits_0_within_2s() {
    let mut t = Target::start(&[]);
    t.wait_init();
    let sock = t.sock.clone();
    let start = Instant::now();
    t.signal("TERM");
    let st = t
        .wait_exit(Duration::from_secs(2))
        .expect("did not exit within 2 s");
    assert!(st.success(), "exit status {st}");
    assert!(start.elapsed() < Duration::from_secs(2));
    let log = t.log();
    let init = subsystem_order(&log, "initialising subsystem");
    let mut fini = subsystem_order(&log, "finalising subsystem");
    assert!(!init.is_empty(), "{log}");
    fini.reverse();
    assert_eq!(init, fini, "{log}");
    assert!(!sock.exists(), "RPC socket left behind");
}

#[test]
fn sigint_and_spdk_kill_instance_shut_down_cleanly() {
    let mut t = Target::start(&[]);
    t.wait_init();
    t.signal("INT");
    assert!(t.wait_exit(Duration::from_secs(2)).unwrap().success());

    let mut t = Target::start(&[]);
    t.wait_init();
    assert_eq!(
        t.call("spdk_kill_instance", Some(json!({"sig_name": "SIGTERM"})))
            .unwrap(),
        json!(true)
    );
    assert!(t.wait_exit(Duration::from_secs(2)).unwrap().success());
    assert!(t.log().contains("finalising subsystem"));
}

/// utime + stime of a process in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that closes the command name.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn idle_target_in_interrupt_mode_uses_under_2_percent_of_a_core() {
    let t = Target::start(&["--interrupt-mode", "-m", "0x3"]);
    t.wait_init();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(t.pid());
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let used = cpu_ticks(t.pid()) - before;
    // Clock ticks are 1/100 s on Linux: 2% of 3 s is 6 ticks.
    assert!(used < 6, "idle target used {used} ticks in 3 s");
    let r = t.call("framework_get_reactors", None).unwrap();
    assert_eq!(r["reactors"][0]["irq_mode"], json!(true));
}

#[test]
fn busy_polling_is_the_default() {
    let t = Target::start(&[]);
    t.wait_init();
    let r = t.call("framework_get_reactors", None).unwrap();
    assert_eq!(r["reactors"][0]["irq_mode"], json!(false));
}

fn bad_config(text: &str) -> (std::process::ExitStatus, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.json");
    std::fs::write(&cfg, text).unwrap();
    let sock = dir.path().join("s.sock");
    let (st, err) = run_to_exit(&["-c", cfg.to_str().unwrap()], &sock);
    assert!(!sock.exists(), "socket left behind after a failed start");
    (st, err, cfg)
}

fn fatal_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("nvmf_tgt: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one fatal message, got: {stderr}");
    lines[0].to_string()
}

#[test]
fn config_that_is_not_json_stops_startup_naming_the_file() {
    let (st, err, cfg) = bad_config("{ this is not json");
    assert_eq!(st.code(), Some(1));
    let l = fatal_line(&err);
    assert!(
        l.contains(&format!("config file {}: not valid JSON", cfg.display())),
        "{l}"
    );
}

#[test]
fn config_dev_zero_and_directory_stop_startup_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cfg.d");
    std::fs::create_dir(&sub).unwrap();
    for (path, kind) in [
        (std::path::PathBuf::from("/dev/zero"), "a character device"),
        (sub, "a directory"),
    ] {
        let sock = dir.path().join("s.sock");
        let (st, err) = run_to_exit(&["-c", path.to_str().unwrap()], &sock);
        assert_eq!(st.code(), Some(1), "{err}");
        assert_eq!(
            fatal_line(&err),
            format!(
                "nvmf_tgt: config file {}: not a regular file ({kind})",
                path.display()
            )
        );
        assert!(!sock.exists());
    }
}

#[test]
fn rpc_http_on_a_non_loopback_address_needs_the_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let (st, err) = run_to_exit(&["--rpc-http", "0.0.0.0:0"], &sock);
    assert_eq!(st.code(), Some(1), "{err}");
    let l = fatal_line(&err);
    assert!(
        l.contains("refusing to serve RPC over HTTP on non-loopback address 0.0.0.0:0"),
        "{l}"
    );
}

#[test]
fn config_with_unknown_method_stops_startup_naming_subsystem_and_method() {
    let (st, err, cfg) = bad_config(
        r#"{"subsystems":[{"subsystem":"iobuf","config":[{"method":"no_such_method","params":{}}]}]}"#,
    );
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        fatal_line(&err),
        format!(
            "nvmf_tgt: config file {}: subsystem \"iobuf\": method \"no_such_method\": unknown method",
            cfg.display()
        )
    );
}

#[test]
fn config_with_bad_params_stops_startup_with_the_rpc_error() {
    let (st, err, cfg) = bad_config(
        r#"{"subsystems":[{"subsystem":"iobuf","config":[{"method":"iobuf_set_options","params":{"small_pool_count":"many"}}]}]}"#,
    );
    assert_eq!(st.code(), Some(1));
    let l = fatal_line(&err);
    let prefix = format!(
        "nvmf_tgt: config file {}: subsystem \"iobuf\": method \"iobuf_set_options\": Invalid parameters",
        cfg.display()
    );
    assert!(l.starts_with(&prefix), "{l}");
    assert!(l.ends_with("(code -32602)"), "{l}");
}

#[test]
fn config_with_unknown_subsystem_stops_startup() {
    let (st, err, _) = bad_config(
        r#"{"subsystems":[{"subsystem":"frobnicator","config":[{"method":"spdk_get_version"}]}]}"#,
    );
    assert_eq!(st.code(), Some(1));
    assert!(fatal_line(&err).contains("subsystem \"frobnicator\": unknown subsystem"));
}

#[test]
fn unknown_subsystem_with_empty_config_is_skipped_as_spdk_saves_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"subsystems":[{"subsystem":"vmd","config":[]},{"subsystem":"iobuf","config":[{"method":"iobuf_set_options","params":{"small_pool_count":4096}}]}]}"#,
    )
    .unwrap();
    let t = Target::start(&["-c", cfg.to_str().unwrap()]);
    t.wait_init();
    let c = t
        .call("framework_get_config", Some(json!({"name": "iobuf"})))
        .unwrap();
    assert_eq!(c[0]["params"]["small_pool_count"], json!(4096));
}

#[test]
fn wait_for_rpc_holds_init_until_framework_start_init() {
    let t = Target::start(&["--wait-for-rpc"]);
    // RUNTIME methods are refused before init, with SPDK's state error.
    let e = t.call("framework_get_subsystems", None).unwrap_err();
    assert_eq!(e.code, -1);
    assert!(
        e.message.contains("after framework is initialized"),
        "{}",
        e.message
    );
    // Pools beyond the count limit or the machine's memory are refused (nothing allocated),
    // and the target goes on.
    let e = t
        .call(
            "iobuf_set_options",
            Some(json!({"small_pool_count": 4194305})),
        )
        .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-22, "Invalid argument"));
    let e = t
        .call(
            "iobuf_set_options",
            Some(json!({"small_pool_count": 4194304, "small_bufsize": 4294963200u64})),
        )
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-12, "Cannot allocate memory")
    );
    let log = t.log();
    assert!(
        log.contains("iobuf pools: 18014381535150080 bytes of DMA memory requested"),
        "{log}"
    );
    // STARTUP methods work now.
    assert_eq!(
        t.call("iobuf_set_options", Some(json!({"large_pool_count": 512})))
            .unwrap(),
        json!(true)
    );
    assert_eq!(t.call("framework_start_init", None).unwrap(), json!(true));
    // ... and now RUNTIME ones do, STARTUP ones do not.
    let subs = t.call("framework_get_subsystems", None).unwrap();
    assert!(
        subs.as_array()
            .unwrap()
            .iter()
            .any(|s| s["subsystem"] == "iobuf")
    );
    let e = t.call("iobuf_set_options", Some(json!({}))).unwrap_err();
    assert_eq!(e.code, -1);
    assert!(
        e.message.contains("before framework is initialized"),
        "{}",
        e.message
    );
    let c = t
        .call("framework_get_config", Some(json!({"name": "iobuf"})))
        .unwrap();
    assert_eq!(c[0]["params"]["large_pool_count"], json!(512));
    let e = t.call("framework_start_init", None).unwrap_err();
    assert_eq!(e.code, -1);
}

#[test]
fn framework_methods_answer_with_spdk_shapes_and_errors() {
    let t = Target::start(&[]);
    t.wait_init();
    let v = t.call("spdk_get_version", None).unwrap();
    assert!(v["version"].is_string());
    assert!(v["fields"]["major"].is_u64());
    let e = t
        .call("spdk_get_version", Some(json!({"x": 1})))
        .unwrap_err();
    assert_eq!(e.code, -32602);
    let e = t
        .call("framework_get_config", Some(json!({"name": "nope"})))
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32602, "Subsystem 'nope' not found")
    );
    let m = t.call("rpc_get_methods", None).unwrap();
    let names: Vec<&str> = m
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for needed in [
        "rpc_get_methods",
        "spdk_get_version",
        "framework_start_init",
        "framework_wait_init",
        "framework_get_subsystems",
        "framework_get_config",
        "framework_get_reactors",
        "save_config",
        "spdk_kill_instance",
        "log_set_flag",
        "log_clear_flag",
        "log_get_flags",
        "log_set_level",
        "thread_get_stats",
        "iobuf_set_options",
        "iobuf_get_stats",
    ] {
        assert!(names.contains(&needed), "{needed} missing");
    }
    let current = t
        .call("rpc_get_methods", Some(json!({"current": true})))
        .unwrap();
    assert!(
        !current
            .as_array()
            .unwrap()
            .contains(&json!("framework_start_init"))
    );
    assert_eq!(
        t.call("log_set_flag", Some(json!({"flag": "nvmf"})))
            .unwrap(),
        json!(true)
    );
    assert_eq!(t.call("log_get_flags", None).unwrap()["nvmf"], json!(true));
    let e = t
        .call("log_set_flag", Some(json!({"flag": "nope"})))
        .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (-32602, "invalid log flag"));
    assert_eq!(
        t.call("log_set_level", Some(json!({"level": "DEBUG"})))
            .unwrap(),
        json!(true)
    );
    assert_eq!(t.call("log_get_level", None).unwrap(), json!("DEBUG"));
    let s = t.call("thread_get_stats", None).unwrap();
    assert_eq!(s["threads"][0]["name"], "app_thread");
    let st = t.call("iobuf_get_stats", None).unwrap();
    assert!(st.as_array().is_some());
}

#[test]
fn saved_config_starts_a_target_with_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"subsystems":[{"subsystem":"iobuf","config":[{"method":"iobuf_set_options","params":{"small_pool_count":2048,"large_pool_count":256}}]}]}"#,
    )
    .unwrap();
    let t = Target::start(&["-c", cfg.to_str().unwrap()]);
    t.wait_init();
    let saved = t.call("save_config", None).unwrap();
    drop(t);
    let cfg2 = dir.path().join("saved.json");
    std::fs::write(&cfg2, serde_json::to_vec_pretty(&saved).unwrap()).unwrap();
    let t2 = Target::start(&["-c", cfg2.to_str().unwrap()]);
    t2.wait_init();
    assert_eq!(t2.call("save_config", None).unwrap(), saved);
    let iobuf = saved["subsystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subsystem"] == "iobuf")
        .unwrap();
    assert_eq!(
        iobuf["config"][0]["params"]["small_pool_count"],
        json!(2048)
    );
}

#[test]
fn rpc_server_survives_garbage_and_answers_next_client() {
    let t = Target::start(&[]);
    t.wait_init();
    let mut c = t.client();
    c.send_raw(b"{\"jsonrpc\": nope}").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r["error"]["code"], json!(-32700));
    let v: Value = t.call("spdk_get_version", None).unwrap();
    assert!(v["version"].is_string());
}

#[test]
fn http_rpc_serves_the_same_methods() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let t = Target::start(&["--rpc-http", &addr]);
    t.wait_init();
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"spdk_get_version"}"#;
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
        .arg(format!("http://{addr}/"))
        .output();
    let Ok(out) = out else {
        // No curl on this machine: use the HTTP client through a raw request instead.
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.contains("rspdk v"), "{resp}");
        return;
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], json!(7));
    assert!(
        v["result"]["version"]
            .as_str()
            .unwrap()
            .starts_with("rspdk v")
    );
}

#[test]
#[ignore = "needs SPDK's spdk-rpc: run through `cargo xtask ci` (or `cargo xtask setup`)"]
fn spdk_rpc_client_drives_the_target_with_spdk_shapes() {
    let t = Target::start(&["-m", "0x3"]);
    t.wait_init();
    let s = &t.sock;
    let methods = common::spdk_rpc_call(s, &["rpc_get_methods"]).unwrap();
    assert!(
        methods
            .as_array()
            .unwrap()
            .contains(&json!("nvmf_create_subsystem"))
    );
    let v = common::spdk_rpc_call(s, &["spdk_get_version"]).unwrap();
    assert!(v["fields"]["major"].is_u64());
    let subs = common::spdk_rpc_call(s, &["framework_get_subsystems"]).unwrap();
    let names: Vec<&str> = subs
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["subsystem"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "scheduler",
            "sock",
            "iobuf",
            "keyring",
            "accel",
            "bdev",
            "nvmf"
        ]
    );
    let r = common::spdk_rpc_call(s, &["framework_get_reactors"]).unwrap();
    assert_eq!(r["reactors"].as_array().unwrap().len(), 2);
    let name = common::spdk_rpc_call(s, &["bdev_malloc_create", "-b", "Malloc0", "64", "512"]);
    assert_eq!(name.unwrap(), json!("Malloc0"));
    let b = common::spdk_rpc_call(s, &["bdev_get_bdevs", "-b", "Malloc0"]).unwrap();
    assert_eq!(b[0]["num_blocks"], json!(131072));
    assert_eq!(b[0]["block_size"], json!(512));
    let e = common::spdk_rpc_call(s, &["bdev_malloc_create", "-b", "Malloc0", "64", "512"])
        .unwrap_err();
    assert!(e.contains("File exists"), "{e}");
    let saved = common::spdk_rpc_call(s, &["save_config"]).unwrap();
    let saved_subs: Vec<&str> = saved["subsystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["subsystem"].as_str().unwrap())
        .collect();
    assert_eq!(
        saved_subs,
        [
            "scheduler",
            "sock",
            "iobuf",
            "keyring",
            "accel",
            "bdev",
            "nvmf"
        ]
    );
    // What spdk-rpc saved starts a new target with the same bdev.
    drop(t);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("saved.json");
    std::fs::write(&cfg, serde_json::to_vec(&saved).unwrap()).unwrap();
    let t2 = Target::start(&["-c", cfg.to_str().unwrap()]);
    t2.wait_init();
    let b2 = common::spdk_rpc_call(&t2.sock, &["bdev_get_bdevs", "-b", "Malloc0"]).unwrap();
    assert_eq!(b2[0]["uuid"], b[0]["uuid"]);
}

/// Every key of `reference` (recursively, first element of arrays) is in `ours`.
fn assert_shape(reference: &Value, ours: &Value, path: &str) {
    match (reference, ours) {
        (Value::Object(r), Value::Object(o)) => {
            for (k, rv) in r {
                let ov = o
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {ours}"));
                assert_shape(rv, ov, &format!("{path}.{k}"));
            }
        }
        (Value::Array(r), Value::Array(o)) => {
            if let (Some(r0), Some(o0)) = (r.first(), o.first()) {
                assert_shape(r0, o0, &format!("{path}[0]"));
            }
        }
        (r, o) => assert_eq!(
            std::mem::discriminant(r),
            std::mem::discriminant(o),
            "{path}: {r} vs {o}"
        ),
    }
}

#[test]
#[ignore = "needs SPDK's spdk-rpc: run through `cargo xtask ci` (or `cargo xtask setup`)"]
fn spdk_rpc_builds_the_reference_subsystem_with_spdk_shapes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let t = Target::start(&[]);
    t.wait_init();
    let s = &t.sock;
    let rpc = |args: &[&str]| common::spdk_rpc_call(s, args).unwrap();
    // What SPDK's own test setup runs (shared/reference/spdk-25.09/README.md).
    rpc(&["bdev_malloc_create", "-b", "Malloc0", "256", "512"]);
    rpc(&["nvmf_create_transport", "-t", "TCP"]);
    let nqn = "nqn.2016-06.io.spdk:cnode1";
    rpc(&[
        "nvmf_create_subsystem",
        nqn,
        "-a",
        "-s",
        "SPDK001",
        "-m",
        "32",
    ]);
    rpc(&["nvmf_subsystem_add_ns", nqn, "Malloc0"]);
    rpc(&[
        "nvmf_subsystem_add_listener",
        nqn,
        "-t",
        "tcp",
        "-a",
        "127.0.0.1",
        "-s",
        &port,
    ]);
    let disc = "nqn.2014-08.org.nvmexpress.discovery";
    rpc(&[
        "nvmf_subsystem_add_listener",
        disc,
        "-t",
        "tcp",
        "-a",
        "127.0.0.1",
        "-s",
        &port,
    ]);
    let ours = rpc(&["nvmf_get_subsystems"]);
    let reference: Value =
        serde_json::from_str(include_str!("fixtures/spdk-25.09-nvmf_get_subsystems.json")).unwrap();
    assert_eq!(ours.as_array().unwrap().len(), 2);
    for (r, o) in reference
        .as_array()
        .unwrap()
        .iter()
        .zip(ours.as_array().unwrap())
    {
        assert_eq!(r["nqn"], o["nqn"]);
        assert_eq!(r["subtype"], o["subtype"]);
        assert_shape(r, o, r["nqn"].as_str().unwrap());
    }
    assert_eq!(ours[1]["serial_number"], "SPDK001");
    assert_eq!(ours[1]["namespaces"][0]["bdev_name"], "Malloc0");
    assert_eq!(ours[1]["listen_addresses"][0]["trsvcid"], json!(port));
    // The state saved by spdk-rpc starts a new target with the same subsystems.
    let saved = rpc(&["save_config"]);
    drop(t);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("saved.json");
    std::fs::write(&cfg, serde_json::to_vec(&saved).unwrap()).unwrap();
    let t2 = Target::start(&["-c", cfg.to_str().unwrap()]);
    t2.wait_init();
    let again = common::spdk_rpc_call(&t2.sock, &["nvmf_get_subsystems"]).unwrap();
    assert_eq!(again, ours);
}
