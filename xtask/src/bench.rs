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
use serde_json::{Value, json};

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
    /// SPDK's `build/bin` directory: its `nvmf_tgt` is measured beside ours in the same
    /// rounds (same malloc bdev, same client), and with its `spdk_nvme_perf`, when present, as a
    /// second client against both targets. SPDK gets hugepages when 1.5 GiB of them are free
    /// (`-s 1024` target, `-s 512` perf), else `--no-huge -s 1024`.
    #[arg(long)]
    pub spdk_bin: Option<PathBuf>,
}

/// A target under test: started once, SIGSTOPped while another program has its core.
struct Target {
    name: &'static str,
    proc: KillOnDrop,
    port: u16,
}

impl Target {
    fn pid(&self) -> String {
        self.proc
            .0
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(c) = self.proc.0.as_mut() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
        self.proc.0 = None;
    }
}

/// A client program: ours (`nvme_perf`) or SPDK's (`spdk_nvme_perf` with its memory options).
struct Client {
    name: &'static str,
    bin: PathBuf,
    extra: Vec<String>,
}

/// Memory options for SPDK's target and perf: hugepages when enough are free.
fn spdk_mem_args() -> (Vec<String>, Vec<String>, bool) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let free_kib = field("HugePages_Free:") * field("Hugepagesize:");
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    if free_kib >= 1536 * 1024 {
        (v(&["-s", "1024"]), v(&["-s", "512"]), true)
    } else {
        (
            v(&["--no-huge", "-s", "1024"]),
            v(&["--no-huge", "-s", "1024"]),
            false,
        )
    }
}

/// Starts a target on core 0 and waits for its listener.
fn start_target(
    name: &'static str,
    bin: &Path,
    args: &[String],
    cfg: &Path,
    sock: &Path,
    port: u16,
    log: &Path,
) -> Result<Target> {
    let _ = std::fs::remove_file(sock);
    let log_file = std::fs::File::create(log)?;
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(bin)
        .args(["-m", "0x1"])
        .args(args)
        .arg("-r")
        .arg(sock)
        .arg("-c")
        .arg(cfg)
        .env("RUST_LOG", "warn")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let t = Target {
        name,
        proc: KillOnDrop(Some(child)),
        port,
    };
    wait_port(port, Duration::from_secs(30))
        .with_context(|| format!("{name} target (log: {})", log.display()))?;
    Ok(t)
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

    let mut targets = Vec::new();
    let port = free_port()?;
    let cfg = dir.join("bench-config.json");
    std::fs::write(&cfg, target_config(port).to_string())?;
    targets.push(start_target(
        "rspdk",
        &bin("nvmf_tgt"),
        &[],
        &cfg,
        &dir.join("bench.sock"),
        port,
        &dir.join("rspdk-nvmf_tgt.log"),
    )?);
    signal(&targets[0].pid(), "-STOP")?;
    let mut clients = vec![Client {
        name: "nvme_perf",
        bin: bin("nvme_perf"),
        extra: Vec::new(),
    }];
    let mut hugepages = None;
    if let Some(spdk) = &args.spdk_bin {
        let (tgt_mem, perf_mem, huge) = spdk_mem_args();
        hugepages = Some(huge);
        let port = free_port()?;
        let cfg = dir.join("spdk-config.json");
        std::fs::write(&cfg, target_config(port).to_string())?;
        targets.push(start_target(
            "SPDK",
            &spdk.join("nvmf_tgt"),
            &tgt_mem,
            &cfg,
            &dir.join("spdk.sock"),
            port,
            &dir.join("spdk-nvmf_tgt.log"),
        )?);
        signal(&targets[1].pid(), "-STOP")?;
        let perf = spdk.join("spdk_nvme_perf");
        if perf.exists() {
            clients.push(Client {
                name: "spdk_nvme_perf",
                bin: perf,
                extra: perf_mem,
            });
        }
    }
    let xtask = std::env::current_exe()?;
    // results[case][client][target] = IOPS of every run.
    let mut results = vec![vec![vec![Vec::new(); targets.len()]; clients.len()]; CASES.len()];
    let mut echoes = vec![Vec::new(); CASES.len()];
    for (ci, case) in CASES.iter().enumerate() {
        let (req, resp) = case.wire_sizes();
        for run in 0..args.runs {
            let mut line = format!("    {} run {}/{}:", case.name, run + 1, args.runs);
            for (cl, client) in clients.iter().enumerate() {
                for (ti, t) in targets.iter().enumerate() {
                    // Only the target under test runs: an idle one busy-polls core 0.
                    signal(&t.pid(), "-CONT")?;
                    let trid = format!(
                        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{} subnqn:nqn.2016-06.io.spdk:bench",
                        t.port
                    );
                    let iops = run_perf(client, &trid, case, args.seconds);
                    signal(&t.pid(), "-STOP")?;
                    let iops = iops.with_context(|| format!("{} -> {}", client.name, t.name))?;
                    line += &format!(" {}->{} {:.0} IOPS,", client.name, t.name, iops);
                    results[ci][cl][ti].push(iops);
                }
            }
            // Every target is stopped while the echo server has core 0.
            let ops = run_echo(&xtask, req, resp, case.depth, args.seconds)?;
            eprintln!("{line} echo {ops:.0} ops/s");
            echoes[ci].push(ops);
        }
    }
    for t in &mut targets {
        signal(&t.pid(), "-CONT")?;
        t.stop();
    }

    println!(
        "{:<24} {:>14} {:>16} {:>8} {:>12}",
        "case", "nvme_perf IOPS", "TCP echo ops/s", "ratio", "MiB/s"
    );
    let mut out = Vec::new();
    for (ci, case) in CASES.iter().enumerate() {
        let perf = &results[ci][0][0];
        let echo = &echoes[ci];
        let p = median(perf);
        let e = median(echo);
        let ratio = if e > 0.0 { p / e } else { 0.0 };
        let mib = p * case.io_size as f64 / (1024.0 * 1024.0);
        println!(
            "{:<24} {:>14.0} {:>16.0} {:>8.2} {:>12.1}",
            case.name, p, e, ratio, mib
        );
        let (req, resp) = case.wire_sizes();
        let mut row = json!({
            "case": case.name, "workload": case.workload, "io_size": case.io_size,
            "queue_depth": case.depth, "wire_request_bytes": req, "wire_response_bytes": resp,
            "nvme_perf_iops": perf, "echo_ops": echo,
            "median_iops": p, "median_echo_ops": e, "ratio_to_wire": ratio,
        });
        if targets.len() > 1 {
            let mut cmp = Vec::new();
            for (cl, client) in clients.iter().enumerate() {
                let ours = median(&results[ci][cl][0]);
                let spdk = median(&results[ci][cl][1]);
                cmp.push(json!({
                    "client": client.name,
                    "rspdk_iops": results[ci][cl][0], "spdk_iops": results[ci][cl][1],
                    "median_rspdk_iops": ours, "median_spdk_iops": spdk,
                    "ratio_rspdk_to_spdk": if spdk > 0.0 { ours / spdk } else { 0.0 },
                }));
            }
            row["spdk_comparison"] = Value::Array(cmp);
        }
        out.push(row);
    }
    if targets.len() > 1 {
        println!();
        println!(
            "rspdk nvmf_tgt vs SPDK nvmf_tgt (SPDK with{} hugepages), medians, same rounds:",
            if hugepages == Some(true) { "" } else { "out" }
        );
        println!(
            "{:<24} {:<16} {:>12} {:>12} {:>8}",
            "case", "client", "rspdk IOPS", "SPDK IOPS", "ratio"
        );
        for (ci, case) in CASES.iter().enumerate() {
            for (cl, client) in clients.iter().enumerate() {
                let ours = median(&results[ci][cl][0]);
                let spdk = median(&results[ci][cl][1]);
                let ratio = if spdk > 0.0 { ours / spdk } else { 0.0 };
                println!(
                    "{:<24} {:<16} {:>12.0} {:>12.0} {:>8.2}",
                    case.name, client.name, ours, spdk, ratio
                );
            }
        }
    }
    let out_path = root.join(&args.out);
    if let Some(parent) = out_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let doc = json!({"seconds": args.seconds, "runs": args.runs, "spdk_hugepages": hugepages,
        "cases": out});
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

/// Runs a perf client on core 1 and returns its total IOPS (ours and SPDK's print the same
/// `Total` line).
fn run_perf(client: &Client, trid: &str, case: &Case, seconds: u64) -> Result<f64> {
    let out = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&client.bin)
        .args(&client.extra)
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
        .with_context(|| format!("cannot run {}", client.name))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed: {}{}",
            client.name,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_total_iops(&text)
        .with_context(|| format!("no Total line in {} output:\n{text}", client.name))
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
