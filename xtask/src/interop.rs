//! `cargo xtask interop`: the kernel NVMe-oF hosts against a target, inside a QEMU guest.
//!
//! The host running CI has no NVMe-oF support of its own, so everything happens inside a
//! Debian 12 guest booted under QEMU (TCG; `-nic none`, every address is guest-local):
//!
//! ```text
//!  host: xtask interop ──► vm/build.sh target/interop   (apt-get, kernel .deb, initramfs; cached)
//!                     ──► cargo build --release -p app (nvmf_tgt unless --kernel-target, host tools)
//!                     ──► vm/run.sh  (QEMU) ─┐
//!  guest:  /init ─► snippet (kernel-target.sh | nvmf-tgt.sh) starts the target
//!                   └► interop.sh it_suite tcp 127.0.0.1 / rdma 10.123.0.1 (soft-RoCE)
//!                        nvme-cli + fio steps, then our host tools (nvme_identify, nvme_perf,
//!                        bdevperf over bdev_nvme; NVMe/TCP), one
//!                        `INTEROP-STEP <tr>/<step>: PASS|FAIL|SKIP` each (`--suite tools`:
//!                        discovery, then the tools only)
//!  host: parse the console log ─► per-step report; log kept in target/interop/logs/ on failure
//! ```
//!
//! The guest scripts live in `xtask/vm/` (`build.sh`, `run.sh`, `guest/`, `snippets/`).
//! The guest build is cached in `target/interop/build` and is redone only when `build.sh` changes;
//! the guest scripts and the target binary travel in a small per-run payload.
//!
//! `cargo xtask ci` runs `interop --transport all` at its end unless `RSPDK_INTEROP=0`. Which
//! target it drives is [`CI_AGAINST_KERNEL_TARGET`]: `false` runs our `nvmf_tgt` (the target
//! under test); the Linux kernel target (nvmet) stays available as the control with
//! `cargo xtask interop --kernel-target`. A second CI run ([`InteropArgs::for_ci_host_tools`])
//! drives our host tools against nvmet-tcp.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

/// What `cargo xtask ci` drives: `true` = the Linux kernel target (nvmet, the control),
/// `false` = our `nvmf_tgt` (every TCP step passes against it).
pub const CI_AGAINST_KERNEL_TARGET: bool = false;

/// Environment variable that disables the interop step of `cargo xtask ci` when set to `0`.
pub const CI_GUARD_ENV: &str = "RSPDK_INTEROP";

/// Marker printed by the guest for each step (`guest/interop.sh`, `it_step`).
const STEP_MARKER: &str = "INTEROP-STEP ";
/// Marker printed by the guest's `/init` with the overall verdict (`guest/lib.sh`).
const RESULT_MARKER: &str = "VMHARNESS-RESULT: ";

/// The transports the guest suites run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// NVMe/TCP on 127.0.0.1:4420.
    Tcp,
    /// NVMe/RDMA over soft-RoCE (rxe0 on a guest-only dummy netdev, 10.123.0.1:4420).
    Rdma,
    /// TCP, then RDMA, in one boot.
    All,
}

impl Transport {
    /// The list the guest reads from `vmh.tests=` on its kernel command line.
    fn guest_list(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rdma => "rdma",
            Transport::All => "tcp,rdma",
        }
    }
}

/// Which host-side steps the guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Every kernel-host step (nvme-cli, dd, fio, ...), then our host tools.
    Full,
    /// Discovery by the kernel host, then only our host tools (nvme_identify, nvme_perf,
    /// bdevperf over bdev_nvme).
    Tools,
}

impl Suite {
    fn guest_name(self) -> &'static str {
        match self {
            Suite::Full => "full",
            Suite::Tools => "tools",
        }
    }
}

/// Our host tools staged into the guest beside the target (NVMe/TCP host driver).
pub const HOST_TOOLS: &[&str] = &["nvme_identify", "nvme_perf", "bdevperf"];

/// Options of `cargo xtask interop`.
#[derive(Args, Debug, Clone)]
pub struct InteropArgs {
    /// Transports to test.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Keep the console log and the guest payload tree even when every step passes.
    #[arg(long)]
    pub keep: bool,
    /// Test this nvmf_tgt binary instead of building `-p app --bin nvmf_tgt` in release mode.
    #[arg(long, value_name = "PATH", conflicts_with = "kernel_target")]
    pub target_bin: Option<PathBuf>,
    /// Run the same host-side steps against the Linux kernel target (nvmet), as a control.
    #[arg(long)]
    pub kernel_target: bool,
    /// Host-side steps to run.
    #[arg(long, value_enum, default_value_t = Suite::Full)]
    pub suite: Suite,
    /// Seconds of the fio verify step.
    #[arg(long, default_value_t = 20)]
    pub fio_runtime: u32,
    /// Host-side bound on the whole QEMU run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u32,
    /// Stream the whole guest console instead of the step lines only.
    #[arg(long)]
    pub verbose: bool,
}

impl InteropArgs {
    /// The run `cargo xtask ci` does: TCP then RDMA (soft-RoCE), against [`CI_AGAINST_KERNEL_TARGET`]'s choice.
    pub fn for_ci() -> Self {
        InteropArgs {
            transport: Transport::All,
            keep: false,
            target_bin: None,
            kernel_target: CI_AGAINST_KERNEL_TARGET,
            suite: Suite::Full,
            fio_runtime: 20,
            timeout: 600,
            verbose: false,
        }
    }

    /// The second run of `cargo xtask ci`: our host tools against the Linux kernel target
    /// (nvmet-tcp) in the guest.
    pub fn for_ci_host_tools() -> Self {
        InteropArgs {
            transport: Transport::Tcp,
            kernel_target: true,
            suite: Suite::Tools,
            timeout: 300,
            ..Self::for_ci()
        }
    }
}

/// Outcome of one step, host-side or guest-side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The step ran and its checks held.
    Pass,
    /// The step ran and a check failed.
    Fail,
    /// The step did not run (not applicable, or an earlier step it needs failed).
    Skip,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// `host/<name>` or `<transport>/<name>`.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
    /// Duration, reason or exit code, as printed by the step.
    pub detail: String,
}

/// Parses one console line: `INTEROP-STEP tcp/connect: PASS (1.2s)` (the marker may follow
/// other console output on the same line; carriage returns are ignored).
pub fn parse_step_line(line: &str) -> Option<Step> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = &line[line.find(STEP_MARKER)? + STEP_MARKER.len()..];
    let (name, verdict) = rest.split_once(": ")?;
    let (word, detail) = match verdict.split_once(' ') {
        Some((w, d)) => (w, d.trim().trim_start_matches('(').trim_end_matches(')')),
        None => (verdict, ""),
    };
    let outcome = match word {
        "PASS" => Outcome::Pass,
        "FAIL" => Outcome::Fail,
        "SKIP" => Outcome::Skip,
        _ => return None,
    };
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    Some(Step {
        name: name.to_string(),
        outcome,
        detail: detail.to_string(),
    })
}

/// The guest's overall verdict from its console log: `Some(0)` for PASS, `Some(n)` for
/// `FAIL rc=n`, `None` when the guest never printed one (crash, panic, timeout).
pub fn parse_verdict(log: &str) -> Option<i32> {
    let line = log
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix(RESULT_MARKER))
        .next_back()?;
    if line == "PASS" {
        return Some(0);
    }
    line.strip_prefix("FAIL rc=")?.trim().parse().ok()
}

/// The console lines of step `name`, from its `---- step` banner to its marker (at most `max`).
pub fn step_section(log: &str, name: &str, max: usize) -> Vec<String> {
    let banner = format!("---- step {name}");
    let marker = format!("{STEP_MARKER}{name}: ");
    let mut out = Vec::new();
    let mut inside = false;
    for l in log.lines() {
        let l = l.trim_end_matches('\r');
        if l.ends_with(&banner) {
            inside = true;
            out.clear();
        }
        if inside {
            out.push(l.to_string());
            if l.contains(&marker) {
                break;
            }
        }
    }
    if out.len() > max {
        out.drain(..out.len() - max);
    }
    out
}

/// Runs `cargo xtask interop`; fails when any step failed.
pub fn interop(root: &Path, args: &InteropArgs) -> Result<()> {
    let t = Instant::now();
    let vm = root.join("xtask/vm");
    let work = root.join("target/interop");
    fs::create_dir_all(work.join("logs")).context("cannot create target/interop/logs")?;
    let mut report: Vec<Step> = Vec::new();

    host_step(&mut report, "host/debian-12", check_debian12)?;
    host_step(&mut report, "host/build-guest", || build_guest(&vm, &work))?;
    // With RDMA in the run, our target needs the verbs transport (feature `rdma`).
    let rdma = !args.kernel_target && args.transport != Transport::Tcp;
    let mut extra = host_step(&mut report, "host/binaries", || {
        stage_binaries(root, &work, args, rdma)
    })?;
    let (kind, snippet) = if args.kernel_target {
        ("kernel-target", vm.join("snippets/kernel-target.sh"))
    } else {
        if let Some(given) = &args.target_bin {
            extra.push(stage_one(&work, given)?);
        }
        ("nvmf-tgt", vm.join("snippets/nvmf-tgt.sh"))
    };

    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tag = format!(
        "{kind}-{}-{}-{stamp}",
        args.transport.guest_list().replace(',', "+"),
        args.suite.guest_name()
    );
    let log = work.join("logs").join(format!("{tag}.log"));
    let keep_dir = work.join("logs").join(format!("{tag}-payload"));
    let rc = run_guest(
        &vm,
        &work,
        &snippet,
        &log,
        &extra,
        args,
        args.keep.then_some(&keep_dir),
    )?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    let guest_steps: Vec<Step> = text.lines().filter_map(parse_step_line).collect();
    let verdict = parse_verdict(&text);
    let boot = match (rc, verdict) {
        (0, Some(0)) => Step {
            name: "guest/verdict".into(),
            outcome: Outcome::Pass,
            detail: String::new(),
        },
        (124, _) => fail(
            "guest/verdict",
            format!("QEMU timed out after {} s", args.timeout),
        ),
        (_, None) => fail(
            "guest/verdict",
            format!("no verdict from the guest (run.sh exit {rc})"),
        ),
        (_, Some(n)) => fail("guest/verdict", format!("guest snippet exit {n}")),
    };
    report.extend(guest_steps);
    report.push(boot);

    print_report(&report, &text);
    let failed = report.iter().filter(|s| s.outcome == Outcome::Fail).count();
    let passed = report.iter().filter(|s| s.outcome == Outcome::Pass).count();
    if failed == 0 && !args.keep {
        let _ = fs::remove_file(&log);
    } else {
        eprintln!("interop: guest console log kept: {}", log.display());
    }
    eprintln!(
        "interop ({kind}, {}): {passed} passed, {failed} failed, {} skipped in {:.0?}",
        args.transport.guest_list(),
        report.len() - passed - failed,
        t.elapsed()
    );
    if failed > 0 {
        bail!("interop: {failed} step(s) failed (log: {})", log.display());
    }
    Ok(())
}

fn fail(name: &str, detail: String) -> Step {
    Step {
        name: name.to_string(),
        outcome: Outcome::Fail,
        detail,
    }
}

/// Runs a host-side step, records it, and stops the run (printing the report) when it fails.
fn host_step<T>(report: &mut Vec<Step>, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    eprintln!("interop: {name} ...");
    match f() {
        Ok(v) => {
            report.push(Step {
                name: name.to_string(),
                outcome: Outcome::Pass,
                detail: format!("{:.1}s", t.elapsed().as_secs_f64()),
            });
            Ok(v)
        }
        Err(e) => {
            report.push(fail(name, format!("{e:#}")));
            print_report(report, "");
            Err(e.context(format!("interop: {name} failed")))
        }
    }
}

/// The guest userland is copied from the host, so the host must be Debian 12 (glibc 2.36).
fn check_debian12() -> Result<()> {
    let os = fs::read_to_string("/etc/os-release").context("cannot read /etc/os-release")?;
    let kv: BTreeMap<&str, &str> = os
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    match (kv.get("ID"), kv.get("VERSION_ID")) {
        (Some(&"debian"), Some(&"12")) => Ok(()),
        (id, ver) => bail!(
            "the interop guest is built from the host's Debian 12 packages; this host is {} {}",
            id.unwrap_or(&"?"),
            ver.unwrap_or(&"?")
        ),
    }
}

/// `vm/build.sh target/interop`: apt-get installs the host tools when missing, downloads the
/// kernel .deb, builds the initramfs; returns at once when the cached build is current.
fn build_guest(vm: &Path, work: &Path) -> Result<()> {
    let status = Command::new("bash")
        .arg(vm.join("build.sh"))
        .arg(work)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("cannot start bash vm/build.sh")?;
    if !status.success() {
        bail!("vm/build.sh failed with {status}");
    }
    Ok(())
}

/// Builds, in release mode, our host tools ([`HOST_TOOLS`]) and, unless the run is against the
/// kernel target or `--target-bin` names one, nvmf_tgt; copies them without debug info to
/// `work/payload/`. Returns the staged paths.
fn stage_binaries(
    root: &Path,
    work: &Path,
    args: &InteropArgs,
    rdma: bool,
) -> Result<Vec<PathBuf>> {
    let mut bins: Vec<&str> = HOST_TOOLS.to_vec();
    if !args.kernel_target && args.target_bin.is_none() {
        bins.push("nvmf_tgt");
    }
    let mut cargo_args = vec!["build", "--release", "-p", "app"];
    for b in &bins {
        cargo_args.extend(["--bin", b]);
    }
    if rdma {
        crate::install_rdma_build_deps(root)?;
        cargo_args.extend(["--features", "rdma"]);
    }
    let status = Command::new("cargo")
        .args(&cargo_args)
        .current_dir(root)
        .status()
        .context("cannot start cargo")?;
    if !status.success() {
        bail!("cargo {} failed with {status}", cargo_args.join(" "));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    bins.iter()
        .map(|b| stage_one(work, &target_dir.join("release").join(b)))
        .collect()
}

/// Copies `src` to `work/payload/<name>` without debug info (it only slows the guest's
/// initramfs unpacking; symbols stay for backtraces).
fn stage_one(work: &Path, src: &Path) -> Result<PathBuf> {
    let dir = work.join("payload");
    fs::create_dir_all(&dir).context("cannot create target/interop/payload")?;
    let name = src
        .file_name()
        .with_context(|| format!("{} has no file name", src.display()))?;
    // The guest snippet runs /opt/user/nvmf_tgt whatever the given binary is called.
    let dst = if HOST_TOOLS.iter().any(|t| name == *t) {
        dir.join(name)
    } else {
        dir.join("nvmf_tgt")
    };
    fs::copy(src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg(&dst)
        .status()
        .context("cannot start strip")?;
    if !status.success() {
        bail!("strip --strip-debug {} failed with {status}", dst.display());
    }
    Ok(dst)
}

/// Boots the guest with `vm/run.sh`, echoing step lines (or everything with `--verbose`)
/// while the console log is written to `log`. Returns run.sh's exit status.
fn run_guest(
    vm: &Path,
    work: &Path,
    snippet: &Path,
    log: &Path,
    extra: &[PathBuf],
    args: &InteropArgs,
    keep_dir: Option<&PathBuf>,
) -> Result<i32> {
    let mut cmd = Command::new("bash");
    cmd.arg(vm.join("run.sh"))
        .arg("-w")
        .arg(work)
        .arg("-s")
        .arg(snippet)
        .arg("-l")
        .arg(log)
        .args(["-T", args.transport.guest_list()])
        .args(["-t", &args.timeout.to_string()])
        .args([
            "-k",
            &format!(
                "vmh.fio_runtime={} vmh.suite={}",
                args.fio_runtime,
                args.suite.guest_name()
            ),
        ]);
    for f in extra {
        cmd.arg("-b").arg(f);
    }
    if let Some(d) = keep_dir {
        cmd.arg("-K").arg(d);
    }
    eprintln!(
        "interop: booting the guest (QEMU TCG, bound {} s); console log {}",
        args.timeout,
        log.display()
    );
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start bash vm/run.sh")?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).split(b'\n') {
            let line =
                String::from_utf8_lossy(&line.context("reading the guest console")?).into_owned();
            let line = line.trim_end_matches('\r');
            if args.verbose
                || line.contains(STEP_MARKER)
                || line.contains("---- step ")
                || line.contains("ERROR:")
            {
                println!("{line}");
            }
        }
    }
    let status = child.wait().context("waiting for vm/run.sh")?;
    Ok(status.code().unwrap_or(125))
}

fn print_report(report: &[Step], log: &str) {
    for s in report
        .iter()
        .filter(|s| s.outcome == Outcome::Fail && !s.name.starts_with("host/"))
    {
        let section = step_section(log, &s.name, 60);
        if !section.is_empty() {
            eprintln!("---- console of failed step {} ----", s.name);
            for l in section {
                eprintln!("    {l}");
            }
        }
    }
    eprintln!("==== interop report ====");
    for s in report {
        let word = match s.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        };
        eprintln!("{word}  {:<40} {}", s.name, s.detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_line_with_pass_and_duration_parses() {
        let s = parse_step_line("INTEROP-STEP tcp/connect: PASS (1.2s)\r").unwrap();
        assert_eq!(
            s,
            Step {
                name: "tcp/connect".into(),
                outcome: Outcome::Pass,
                detail: "1.2s".into()
            }
        );
    }

    #[test]
    fn step_line_after_kernel_noise_and_fail_detail_parses() {
        let s = parse_step_line(
            "[  12.3] nvme nvme0: x INTEROP-STEP rdma/fio-verify: FAIL (rc=1, 25.0s)",
        )
        .unwrap();
        assert_eq!(s.name, "rdma/fio-verify");
        assert_eq!(s.outcome, Outcome::Fail);
        assert_eq!(s.detail, "rc=1, 25.0s");
    }

    #[test]
    fn step_line_skip_keeps_reason() {
        let s = parse_step_line("INTEROP-STEP rdma/connect-digest: SKIP (NVMe/TCP only)").unwrap();
        assert_eq!(s.outcome, Outcome::Skip);
        assert_eq!(s.detail, "NVMe/TCP only");
    }

    #[test]
    fn step_line_with_unknown_word_or_no_marker_is_ignored() {
        assert_eq!(parse_step_line("INTEROP-STEP tcp/x: MAYBE"), None);
        assert_eq!(parse_step_line("+ nvme connect -t tcp"), None);
        assert_eq!(parse_step_line("INTEROP-STEP : PASS"), None);
    }

    #[test]
    fn verdict_is_the_last_result_line() {
        assert_eq!(
            parse_verdict("VMHARNESS-RESULT: FAIL rc=3\r\nVMHARNESS-RESULT: PASS\r\n"),
            Some(0)
        );
        assert_eq!(parse_verdict("a\nVMHARNESS-RESULT: FAIL rc=7\n"), Some(7));
        assert_eq!(parse_verdict("Kernel panic - not syncing\n"), None);
        assert_eq!(parse_verdict("VMHARNESS-RESULT: FAIL rc=x\n"), None);
    }

    #[test]
    fn step_section_spans_banner_to_marker_and_is_capped() {
        let log = "[vmh 1.0s] ---- step tcp/a\nx\nINTEROP-STEP tcp/a: PASS (0.1s)\n\
                   [vmh 2.0s] ---- step tcp/b\nl1\nl2\nl3\nINTEROP-STEP tcp/b: FAIL (rc=1, 0.2s)\nafter\n";
        assert_eq!(
            step_section(log, "tcp/b", 10),
            vec![
                "[vmh 2.0s] ---- step tcp/b",
                "l1",
                "l2",
                "l3",
                "INTEROP-STEP tcp/b: FAIL (rc=1, 0.2s)"
            ]
        );
        assert_eq!(
            step_section(log, "tcp/b", 2),
            vec!["l3", "INTEROP-STEP tcp/b: FAIL (rc=1, 0.2s)"]
        );
        assert!(step_section(log, "tcp/c", 10).is_empty());
    }

    #[test]
    fn vm_scripts_have_valid_shell_syntax() {
        let vm = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm");
        let scripts = [
            ("bash", "build.sh"),
            ("bash", "run.sh"),
            ("sh", "guest/init"),
            ("sh", "guest/lib.sh"),
            ("sh", "guest/interop.sh"),
            ("sh", "snippets/kernel-target.sh"),
            ("sh", "snippets/nvmf-tgt.sh"),
        ];
        for (shell, script) in scripts {
            let out = Command::new(shell)
                .arg("-n")
                .arg(vm.join(script))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{shell} -n {script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn ci_runs_tcp_and_rdma_against_our_target_with_the_issue_fio_runtime() {
        let a = InteropArgs::for_ci();
        assert_eq!(a.transport, Transport::All);
        assert!(!a.kernel_target, "CI drives nvmf_tgt, not nvmet");
        assert_eq!(a.target_bin, None);
        assert_eq!(a.fio_runtime, 20);
        assert_eq!(a.timeout, 600);
        assert_eq!(a.suite, Suite::Full);
    }

    #[test]
    fn ci_runs_our_host_tools_against_the_kernel_target_over_tcp() {
        let a = InteropArgs::for_ci_host_tools();
        assert!(a.kernel_target);
        assert_eq!(a.transport, Transport::Tcp);
        assert_eq!(a.suite, Suite::Tools);
    }

    #[test]
    fn guest_suite_runs_every_staged_tool() {
        let sh = include_str!("../vm/guest/interop.sh");
        for t in HOST_TOOLS {
            assert!(
                sh.contains(&format!("$IT_TOOLS/{t}")),
                "interop.sh never runs {t}"
            );
        }
        assert!(sh.contains("vmh_cmdline suite full"));
    }

    #[test]
    fn transport_lists_match_the_guest_suites() {
        assert_eq!(Transport::Tcp.guest_list(), "tcp");
        assert_eq!(Transport::Rdma.guest_list(), "rdma");
        assert_eq!(Transport::All.guest_list(), "tcp,rdma");
    }
}
