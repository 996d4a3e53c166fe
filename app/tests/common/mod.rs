//! Shared helpers of the app integration tests: a running `nvmf_tgt` child process.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rpc::client::UnixClient;
use serde_json::Value;

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nvmf_tgt")
}

/// A running target with its own socket in a temporary directory; killed on drop.
pub struct Target {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub stderr_path: PathBuf,
}

impl Target {
    /// Starts `nvmf_tgt -r <sock> <args>` and waits (bounded) for the RPC socket.
    pub fn start(args: &[&str]) -> Target {
        Target::start_cmd(Command::new(bin()), args)
    }

    /// [`Target::start`] with at most `nofile` open file descriptors (`prlimit`, which execs
    /// the target: the child's pid is the target's).
    pub fn start_with_nofile(nofile: u32, args: &[&str]) -> Target {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}")).arg(bin());
        Target::start_cmd(cmd, args)
    }

    fn start_cmd(mut cmd: Command, args: &[&str]) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("spdk.sock");
        let stderr_path = dir.path().join("stderr.log");
        let child = cmd
            .arg("-r")
            .arg(&sock)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let t = Target {
            child: Some(child),
            dir,
            sock,
            stderr_path,
        };
        t.wait_socket();
        t
    }

    fn wait_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixClient::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("target socket never appeared; log:\n{}", self.log());
    }

    /// A fresh client.
    pub fn client(&self) -> UnixClient {
        let mut c = UnixClient::connect(&self.sock).unwrap();
        c.set_timeout(Duration::from_secs(20)).unwrap();
        c
    }

    /// One call on a fresh connection.
    pub fn call(&self, method: &str, params: Option<Value>) -> Result<Value, rpc::RpcError> {
        self.client().call(method, params)
    }

    /// Waits for `framework_wait_init` to answer (the subsystems are up).
    pub fn wait_init(&self) {
        self.call("framework_wait_init", None).unwrap();
    }

    /// The target's stderr so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends a signal with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the target to completion (it is expected to exit by itself), bounded.
pub fn run_to_exit(args: &[&str], sock: &Path) -> (ExitStatus, String) {
    let out = Command::new("timeout")
        .arg("30")
        .arg(bin())
        .arg("-r")
        .arg(sock)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `spdk-rpc` from SPDK's PyPI package, as installed by `cargo xtask setup` (env `SPDK_RPC`).
pub fn spdk_rpc() -> PathBuf {
    let p = std::env::var_os("SPDK_RPC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/xtask-venv/bin/spdk-rpc")
        });
    assert!(
        p.exists(),
        "spdk-rpc not found at {}: run `cargo xtask setup` or set SPDK_RPC",
        p.display()
    );
    p
}

/// Runs `spdk-rpc -s <sock> <args>` and returns its parsed stdout (or the error text).
pub fn spdk_rpc_call(sock: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(spdk_rpc())
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    }
    if stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    // spdk-rpc prints string results bare (e.g. a bdev name), everything else as JSON.
    Ok(serde_json::from_str(&stdout).unwrap_or_else(|_| Value::String(stdout.trim().to_owned())))
}
