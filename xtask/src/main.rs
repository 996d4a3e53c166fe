//! `cargo xtask`: project automation for rspdk.
//!
//! - `cargo xtask ci`: everything CI checks, installing what it needs (the `spdk` Python client in
//!   a virtualenv): fmt, clippy `-D warnings`, unit and integration tests, loom tests, the tests that
//!   drive `nvmf_tgt` with SPDK's own `spdk-rpc`.
//! - `cargo xtask setup`: only the installation part (virtualenv with `spdk-rpc`).
//! - `cargo xtask loom`: the loom model-checking tests of the env crate.
//! - `cargo xtask interop [--transport tcp|rdma|all] [--kernel-target] [--suite full|tools]
//!   [--target-bin PATH] [--keep]`: the Linux NVMe/TCP and NVMe/RDMA hosts (nvme-cli, fio), then
//!   our own host tools (nvme_identify, nvme_perf, bdevperf over bdev_nvme), against `nvmf_tgt`
//!   or the Linux kernel target inside a QEMU guest; see [`interop`]. `ci` runs it at its end
//!   unless `RSPDK_INTEROP=0`: TCP and RDMA against our `nvmf_tgt`
//!   ([`interop::CI_AGAINST_KERNEL_TARGET`]), then our host tools against the kernel target.

mod bench;
mod interop;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Version of SPDK's Python client that CI tests against (`pip install spdk`).
const SPDK_PY_VERSION: &str = "26.9";

#[derive(Parser)]
#[command(name = "xtask", about = "rspdk project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every CI check (installs the test tools first).
    Ci,
    /// Install the test tools (a Python virtualenv with SPDK's `spdk-rpc` client).
    Setup,
    /// Run the loom model-checking tests.
    Loom,
    /// Boot a QEMU guest and drive the target with the kernel NVMe-oF hosts, nvme-cli and fio.
    Interop(interop::InteropArgs),
    /// NVMe/TCP throughput of nvmf_tgt + nvme_perf against a bare TCP echo (the wire's limit).
    Bench(bench::BenchArgs),
    /// Build every cargo-fuzz target (fuzz/) and run each for SECONDS (installs cargo-fuzz).
    Fuzz {
        /// Seconds per target.
        #[arg(default_value_t = 15)]
        seconds: u64,
    },
    /// (used by `bench`) TCP echo server: answers each `request`-byte message with `response` bytes.
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        request: usize,
        #[arg(long)]
        response: usize,
    },
    /// (used by `bench`) TCP echo client: prints operations per second.
    #[command(hide = true)]
    EchoClient {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        request: usize,
        #[arg(long)]
        response: usize,
        #[arg(long)]
        depth: usize,
        #[arg(long)]
        seconds: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Ci => ci(&root),
        Cmd::Setup => setup(&root).map(|_| ()),
        Cmd::Loom => loom(&root),
        Cmd::Interop(args) => interop::interop(&root, &args),
        Cmd::Bench(args) => bench::bench(&root, &args),
        Cmd::Fuzz { seconds } => fuzz(&root, seconds),
        Cmd::EchoServer {
            port,
            request,
            response,
        } => bench::echo_server(port, request, response),
        Cmd::EchoClient {
            port,
            request,
            response,
            depth,
            seconds,
        } => bench::echo_client(port, request, response, depth, seconds),
    }
}

fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// Runs a command in `dir`, echoing it, failing with context when it fails.
/// Environment of CI's debug builds: a clean build gains nothing from incremental state, which
/// roughly doubles the target directory.
const NO_INCREMENTAL: &[(&str, &str)] = &[("CARGO_INCREMENTAL", "0")];

/// Prints the size of `target/` and the space left on its file system: CI once failed on a full
/// disk, and this shows which stage used it.
fn disk_report(root: &Path) {
    let target = root.join("target");
    let _ = std::fs::create_dir_all(&target);
    let _ = Command::new("du").arg("-sh").arg(&target).status();
    let _ = Command::new("df").arg("-h").arg(&target).status();
}

fn run(dir: &Path, prog: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let t = Instant::now();
    eprintln!("==> {prog} {}", args.join(" "));
    let status = Command::new(prog)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot start {prog}"))?;
    if !status.success() {
        bail!("`{prog} {}` failed with {status}", args.join(" "));
    }
    eprintln!("<== {prog} {} ({:.0?})", args.join(" "), t.elapsed());
    Ok(())
}

/// Debian packages the `rdma` feature builds against (rdma-sys runs bindgen over the verbs headers).
const RDMA_BUILD_PACKAGES: &[&str] = &[
    "libibverbs-dev",
    "librdmacm-dev",
    "clang",
    "libclang-dev",
    "pkg-config",
];

/// Installs the Debian packages the `rdma` feature needs, when missing (CI runs as root).
pub(crate) fn install_rdma_build_deps(root: &Path) -> Result<()> {
    let missing: Vec<&str> = RDMA_BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    run(root, "apt-get", &["update", "-q"], &env)?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing);
    run(root, "apt-get", &args, &env)
}

/// Creates `target/xtask-venv` with SPDK's Python client and returns the path of `spdk-rpc`;
/// installs the RDMA build dependencies.
fn setup(root: &Path) -> Result<PathBuf> {
    install_rdma_build_deps(root)?;
    let venv = root.join("target/xtask-venv");
    let spdk_rpc = venv.join("bin/spdk-rpc");
    if spdk_rpc.exists() {
        return Ok(spdk_rpc);
    }
    let venv_s = venv.to_string_lossy().to_string();
    run(root, "python3", &["-m", "venv", &venv_s], &[])?;
    let pip = venv.join("bin/pip").to_string_lossy().to_string();
    let spec = format!("spdk=={SPDK_PY_VERSION}");
    run(root, &pip, &["install", "--quiet", &spec], &[])?;
    if !spdk_rpc.exists() {
        bail!("pip installed spdk but {} is missing", spdk_rpc.display());
    }
    Ok(spdk_rpc)
}

/// Installs cargo-fuzz when missing and runs `fuzz/run-all.sh` (stable toolchain with
/// `RUSTC_BOOTSTRAP=1`, as fuzz/README.md explains).
fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        run(root, "cargo", &["install", "--locked", "cargo-fuzz"], &[])?;
    }
    let secs = seconds.to_string();
    run(&root.join("fuzz"), "bash", &["run-all.sh", &secs], &[])
}

fn loom(root: &Path) -> Result<()> {
    let dir = root.join("target/loom").to_string_lossy().to_string();
    run(
        root,
        "cargo",
        &["test", "-p", "rspdk-env", "--release", "--lib", "loom"],
        &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", &dir)],
    )
}

fn ci(root: &Path) -> Result<()> {
    let t = Instant::now();
    let spdk_rpc = setup(root)?;
    let spdk_rpc_s = spdk_rpc.to_string_lossy().to_string();
    disk_report(root);
    run(root, "cargo", &["fmt", "--all", "--", "--check"], &[])?;
    run(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        NO_INCREMENTAL,
    )?;
    run(
        root,
        "cargo",
        &["build", "--workspace", "--bins"],
        NO_INCREMENTAL,
    )?;
    // All tests, including those marked #[ignore] because they need tools that `setup` installs.
    run(
        root,
        "cargo",
        &["test", "--workspace", "--", "--include-ignored"],
        &[("SPDK_RPC", &spdk_rpc_s), NO_INCREMENTAL[0]],
    )?;
    disk_report(root);
    // The NVMe/RDMA transport with its verbs layer (feature `rdma`; no RDMA device needed).
    run(
        root,
        "cargo",
        &[
            "clippy",
            "-p",
            "rspdk-nvmf-rdma",
            "-p",
            "app",
            "--features",
            "rspdk-nvmf-rdma/rdma,app/rdma",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        NO_INCREMENTAL,
    )?;
    run(
        root,
        "cargo",
        &["test", "-p", "rspdk-nvmf-rdma", "--features", "rdma"],
        NO_INCREMENTAL,
    )?;
    loom(root)?;
    // The loom build (its own cfg, so its own copy of every dependency) is not needed again.
    let _ = std::fs::remove_dir_all(root.join("target/loom"));
    disk_report(root);
    if std::env::var(interop::CI_GUARD_ENV).as_deref() == Ok("0") {
        eprintln!("xtask ci: interop skipped ({}=0)", interop::CI_GUARD_ENV);
    } else {
        interop::interop(root, &interop::InteropArgs::for_ci())?;
        interop::interop(root, &interop::InteropArgs::for_ci_host_tools())?;
        disk_report(root);
    }
    eprintln!("xtask ci: all checks passed in {:.0?}", t.elapsed());
    Ok(())
}
