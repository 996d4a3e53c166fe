//! `nvmf_tgt`'s main flow on the main OS thread: options, logging, config file, signals, reactors.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use env::{CpuMask, PollStatus, ReactorOpts, Reactors};
use rpc::RpcRegistry;

use crate::cli::AppOpts;
use crate::config::ConfigFile;
use crate::framework::{ExitCode, Framework};
use crate::log::LogControl;
use crate::modules;
use crate::subsystem::SubsystemGraph;

/// Runs the target until it is told to stop; returns the process exit code.
pub fn run(opts: AppOpts) -> Result<i32> {
    run_with(opts, None)
}

/// A tool's start function: made on the main thread, run on the app thread once the framework is
/// up (SPDK's `spdk_app_start` start_fn).
pub type StartFn = Box<dyn FnOnce() -> crate::framework::OnRunning + Send>;

/// [`run`], with `start` called on the app thread once every subsystem is up.
pub fn run_with(opts: AppOpts, start: Option<StartFn>) -> Result<i32> {
    let log = LogControl::init(&opts.logflag).map_err(|_| {
        anyhow!(
            "unknown log flag in {:?}; known: {}",
            opts.logflag,
            known_flags()
        )
    })?;
    // The config file is read before anything starts, as SPDK does, so that a bad file fails fast.
    let config = match &opts.json {
        Some(p) => Some(ConfigFile::load(p)?),
        None => None,
    };
    let cpumask = CpuMask::parse(&opts.cpumask)
        .and_then(|m| m.validate().map(|()| m))
        .with_context(|| format!("invalid core mask {:?}", opts.cpumask))?;
    let prog = program_name();
    tracing::info!(cpumask = %cpumask, interrupt_mode = opts.interrupt_mode, "starting {prog}");

    // Signals arrive as bytes on a socket pair that the app thread polls (no unsafe handler code).
    let (sig_rx, sig_tx) = UnixStream::pair().context("socketpair for signals")?;
    sig_rx
        .set_nonblocking(true)
        .context("non-blocking signal socket")?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(sig, sig_tx.try_clone()?)
            .with_context(|| format!("cannot handle signal {sig}"))?;
    }

    let exit_code: ExitCode = Arc::new(Mutex::new(None));
    let exit2 = exit_code.clone();
    let opts2 = opts.clone();
    let reactors = Reactors::start(
        ReactorOpts {
            cpumask,
            interrupt_mode: opts.interrupt_mode,
        },
        move || {
            let reactors = match env::reactors() {
                Some(r) => r,
                None => {
                    // Cannot happen on a reactor thread; refuse cleanly rather than panic.
                    tracing::error!("app_init ran outside a reactor");
                    *exit2.lock().unwrap_or_else(|e| e.into_inner()) = Some(1);
                    return;
                }
            };
            app_main(opts2, config, log, reactors, exit2, sig_rx, start);
        },
    )
    .context("cannot start the reactors")?;
    reactors.wait().context("reactor failure")?;
    let code = exit_code
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(0);
    tracing::info!(code, "{prog} exited");
    Ok(code)
}

/// The running binary's name for log lines (nvmf_tgt, bdevperf, ...).
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "nvmf_tgt".to_owned())
}

fn known_flags() -> String {
    crate::log::LOG_FLAGS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// On the app thread: builds the framework and starts it.
fn app_main(
    opts: AppOpts,
    config: Option<ConfigFile>,
    log: LogControl,
    reactors: Reactors,
    exit_code: ExitCode,
    mut sig_rx: UnixStream,
    start: Option<StartFn>,
) {
    let registry = RpcRegistry::new();
    let subsystems = modules::subsystems(&registry, &reactors);
    let graph = match SubsystemGraph::new(subsystems) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("{e}");
            *exit_code.lock().unwrap_or_else(|e| e.into_inner()) = Some(1);
            reactors.stop();
            return;
        }
    };
    let fw = Framework::new(opts, registry, graph, config, reactors, log, exit_code);
    if let Some(start) = start {
        fw.set_on_running(start());
    }
    // The signal poller owns the framework: it lives until shutdown clears the pollers.
    let owner = fw.clone();
    let sig_poller = env::poller_register_periodic(
        move || {
            let mut buf = [0u8; 16];
            match sig_rx.read(&mut buf) {
                Ok(n) if n > 0 => {
                    tracing::info!("signal received: shutting down");
                    owner.request_shutdown();
                    PollStatus::Busy
                }
                _ => PollStatus::Idle,
            }
        },
        std::time::Duration::from_millis(10),
    );
    match sig_poller {
        Ok(p) => fw.keep_poller(p),
        Err(e) => tracing::error!(error = %e, "cannot watch for signals"),
    }
    fw.start();
}
