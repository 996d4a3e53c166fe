//! `cargo xtask bench`: NVMe/TCP throughput of our target against the wire's limit on this machine.
//!
//! `nvmf_tgt` (malloc bdev, TCP, core 0) and `nvme_perf` (core 1) talk over loopback; beside each
//! case, a bare TCP echo with the same request and response sizes as the NVMe/TCP PDUs of that
//! case (CapsuleCmd 72 B + in-capsule data; C2HData 24 B + data with the SUCCESS flag, or a 24 B
//! CapsuleResp) shows what the wire and the kernel allow with no protocol work at all. Runs
//! alternate between the two so that machine noise hits both alike; the table gives medians and
//! the ratio to the wire limit, and the JSON keeps every run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

/// NVMe/TCP header sizes (NVMe/TCP 1.0, 3.6): CapsuleCmd, C2HData and CapsuleResp.
const CAPSULE_CMD: usize = 72;
const C2H_DATA_HDR: usize = 24;
const CAPSULE_RESP: usize = 24;

/// One benchmark case.
struct Case {
    name: &'static str,
    workload: &'static str,
    io_size: usize,
    depth: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "4 KiB randread qd1",
        workload: "randread",
        io_size: 4096,
        depth: 1,
    },
    Case {
        name: "4 KiB randread qd32",
        workload: "randread",
        io_size: 4096,
        depth: 32,
    },
    Case {
        name: "4 KiB randread qd128",
        workload: "randread",
        io_size: 4096,
        depth: 128,
    },
    Case {
        name: "4 KiB randwrite qd32",
        workload: "randwrite",
        io_size: 4096,
        depth: 32,
    },
    Case {
        name: "128 KiB read qd16",
        workload: "read",
        io_size: 131072,
        depth: 16,
    },
];

impl Case {
    /// Bytes host -> target and target -> host per I/O, as NVMe/TCP puts them on the wire
    /// (reads: C2HData with SUCCESS, no CapsuleResp; 4 KiB writes: in-capsule data).
    fn wire_sizes(&self) -> (usize, usize) {
        if self.workload.contains("write") {
            (CAPSULE_CMD + self.io_size, CAPSULE_RESP)
        } else {
            (CAPSULE_CMD, C2H_DATA_HDR + self.io_size)
        }
    }
}

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Rounds of every case (nvme_perf, then echo) to take medians over.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/bench.json")]
    pub out: PathBuf,
}

/// Runs the benchmark.
pub fn bench(root: &Path, args: &BenchArgs) -> Result<()> {
    eprintln!("==> cargo build --release -p app --bin nvmf_tgt --bin nvme_perf");
    let st = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "app",
            "--bin",
            "nvmf_tgt",
            "--bin",
            "nvme_perf",
        ])
        .current_dir(root)
        .status()?;
    if !st.success() {
        bail!("release build failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = |n: &str| target_dir.join("release").join(n);
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let cfg = dir.join("bench-config.json");
    std::fs::write(&cfg, target_config(port).to_string())?;
    let sock = dir.join("bench.sock");
    let _ = std::fs::remove_file(&sock);
    let mut tgt = KillOnDrop(Some(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(bin("nvmf_tgt"))
            .args(["-m", "0x1", "-r"])
            .arg(&sock)
            .arg("-c")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nvmf_tgt")?,
    ));
    wait_port(port, Duration::from_secs(20))?;
    let trid = format!(
        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port} subnqn:nqn.2016-06.io.spdk:bench"
    );
    let xtask = std::env::current_exe()?;
    let mut rows = Vec::new();
    for case in CASES {
        let (req, resp) = case.wire_sizes();
        let mut perf = Vec::new();
        let mut echo = Vec::new();
        for run in 0..args.runs {
            let iops = run_perf(&bin("nvme_perf"), &trid, case, args.seconds)?;
            // The idle target busy-polls core 0: stop it while the echo server has the core.
            let pid = tgt
                .0
                .as_ref()
                .map(|c| c.id().to_string())
                .unwrap_or_default();
            signal(&pid, "-STOP")?;
            let ops = run_echo(&xtask, req, resp, case.depth, args.seconds);
            signal(&pid, "-CONT")?;
            let ops = ops?;
            eprintln!(
                "    {} run {}/{}: nvme_perf {:.0} IOPS, echo {:.0} ops/s",
                case.name,
                run + 1,
                args.runs,
                iops,
                ops
            );
            perf.push(iops);
            echo.push(ops);
        }
        rows.push((case, perf, echo));
    }
    if let Some(c) = tgt.0.as_mut() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let _ = c.wait();
    }
    tgt.0 = None;

    println!(
        "{:<24} {:>14} {:>16} {:>8} {:>12}",
        "case", "nvme_perf IOPS", "TCP echo ops/s", "ratio", "MiB/s"
    );
    let mut out = Vec::new();
    for (case, perf, echo) in &rows {
        let p = median(perf);
        let e = median(echo);
        let ratio = if e > 0.0 { p / e } else { 0.0 };
        let mib = p * case.io_size as f64 / (1024.0 * 1024.0);
        println!(
            "{:<24} {:>14.0} {:>16.0} {:>8.2} {:>12.1}",
            case.name, p, e, ratio, mib
        );
        let (req, resp) = case.wire_sizes();
        out.push(json!({
            "case": case.name, "workload": case.workload, "io_size": case.io_size,
            "queue_depth": case.depth, "wire_request_bytes": req, "wire_response_bytes": resp,
            "nvme_perf_iops": perf, "echo_ops": echo,
            "median_iops": p, "median_echo_ops": e, "ratio_to_wire": ratio,
        }));
    }
    let out_path = root.join(&args.out);
    if let Some(parent) = out_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let doc = json!({"seconds": args.seconds, "runs": args.runs, "cases": out});
    std::fs::write(&out_path, serde_json::to_vec_pretty(&doc)?)?;
    eprintln!("results written to {}", out_path.display());
    Ok(())
}

/// `kill SIG PID`.
fn signal(pid: &str, sig: &str) -> Result<()> {
    let st = Command::new("kill").args([sig, pid]).status()?;
    if !st.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn target_config(port: u16) -> serde_json::Value {
    json!({"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 262144, "block_size": 512}},
            {"method": "bdev_wait_for_examine"}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {"nqn": "nqn.2016-06.io.spdk:bench", "allow_any_host": true}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": "nqn.2016-06.io.spdk:bench",
                "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": port.to_string()}}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "nqn.2016-06.io.spdk:bench", "namespace": {"bdev_name": "Malloc0"}}}]}
    ]})
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16, limit: Duration) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nvmf_tgt did not listen on port {port} within {limit:?}")
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Runs nvme_perf on core 1 and returns its total IOPS.
fn run_perf(perf: &Path, trid: &str, case: &Case, seconds: u64) -> Result<f64> {
    let out = Command::new("taskset")
        .args(["-c", "1"])
        .arg(perf)
        .args([
            "-r",
            trid,
            "-q",
            &case.depth.to_string(),
            "-o",
            &case.io_size.to_string(),
        ])
        .args(["-w", case.workload, "-t", &seconds.to_string(), "-c", "0x2"])
        .output()
        .context("cannot run nvme_perf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "nvme_perf failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_total_iops(&text).with_context(|| format!("no Total line in nvme_perf output:\n{text}"))
}

/// The IOPS column of nvme_perf's `Total  :  IOPS  MiB/s ...` line.
fn parse_total_iops(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Total"))?;
    line.split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the echo server on core 0 and the echo client on core 1 (both this binary); returns the
/// client's operations per second.
fn run_echo(xtask: &Path, req: usize, resp: usize, depth: usize, seconds: u64) -> Result<f64> {
    let port = free_port()?;
    let _server = KillOnDrop(Some(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(xtask)
            .args([
                "echo-server",
                "--port",
                &port.to_string(),
                "--request",
                &req.to_string(),
            ])
            .args(["--response", &resp.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the echo server")?,
    ));
    wait_port_quiet(port)?;
    let out = Command::new("taskset")
        .args(["-c", "1"])
        .arg(xtask)
        .args([
            "echo-client",
            "--port",
            &port.to_string(),
            "--request",
            &req.to_string(),
        ])
        .args([
            "--response",
            &resp.to_string(),
            "--depth",
            &depth.to_string(),
        ])
        .args(["--seconds", &seconds.to_string()])
        .output()
        .context("cannot run the echo client")?;
    if !out.status.success() {
        bail!(
            "echo client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("echo client printed no rate")
}

fn wait_port_quiet(port: u16) -> Result<()> {
    wait_port(port, Duration::from_secs(10))
}

/// Moves bytes between a non-blocking socket and counters, the way a polled target does:
/// read everything the socket has, owe one answer per whole message, write what is owed in as
/// few calls as the socket takes. Spins (never sleeps), like `nvmf_tgt` and `nvme_perf`.
struct Pump {
    stream: TcpStream,
    /// Bytes received towards the next whole message.
    partial: usize,
    /// Bytes still to write.
    owed: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl Pump {
    fn new(stream: TcpStream, out_msg: usize) -> Result<Pump> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Pump {
            stream,
            partial: 0,
            owed: 0,
            rx: vec![0u8; 256 * 1024],
            // Content does not matter to the wire; one large buffer serves any batch.
            tx: vec![0x5au8; (256 * 1024).max(out_msg)],
        })
    }

    /// Reads what is there; returns the number of whole `in_msg`-byte messages completed, or
    /// `None` when the peer closed.
    fn receive(&mut self, in_msg: usize) -> Result<Option<usize>> {
        let mut whole = 0;
        loop {
            match self.stream.read(&mut self.rx) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    self.partial += n;
                    whole += self.partial / in_msg;
                    self.partial %= in_msg;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Some(whole)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes as much of what is owed as the socket takes.
    fn send(&mut self) -> Result<()> {
        while self.owed > 0 {
            let n = self.owed.min(self.tx.len());
            match self.stream.write(&self.tx[..n]) {
                Ok(0) => bail!("peer closed"),
                Ok(w) => self.owed -= w,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Hidden subcommand: answers every `request`-byte message with `response` bytes, one
/// connection at a time, until killed.
pub fn echo_server(port: u16, request: usize, response: usize) -> Result<()> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    for conn in l.incoming() {
        let mut p = Pump::new(conn?, response)?;
        loop {
            match p.receive(request) {
                Ok(Some(n)) => p.owed += n * response,
                Ok(None) | Err(_) => break,
            }
            if p.send().is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// Hidden subcommand: keeps `depth` requests in flight for `seconds` and prints operations/s.
pub fn echo_client(
    port: u16,
    request: usize,
    response: usize,
    depth: usize,
    seconds: u64,
) -> Result<()> {
    let mut p = Pump::new(TcpStream::connect(("127.0.0.1", port))?, request)?;
    p.owed = depth * request;
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut done = 0u64;
    let mut polls = 0u32;
    loop {
        p.send()?;
        let n = p.receive(response)?.context("the echo server closed")?;
        done += n as u64;
        p.owed += n * request;
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(64) && start.elapsed() >= limit {
            break;
        }
    }
    println!("{:.1}", done as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_sizes_follow_nvme_tcp_pdus() {
        assert_eq!(CASES[0].wire_sizes(), (72, 24 + 4096));
        assert_eq!(CASES[3].wire_sizes(), (72 + 4096, 24));
        assert_eq!(CASES[4].wire_sizes(), (72, 24 + 131072));
    }

    #[test]
    fn total_line_is_parsed() {
        let t = "x\nTotal                       :    1502.23       5.87   22503.81\n";
        assert_eq!(parse_total_iops(t), Some(1502.23));
        assert_eq!(parse_total_iops("no total"), None);
    }

    #[test]
    fn median_of_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
