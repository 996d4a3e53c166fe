//! bdevperf's command line (SPDK's option names) and its checks.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The I/O pattern of every job (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Random reads.
    #[value(name = "randread")]
    RandRead,
    /// Random writes.
    #[value(name = "randwrite")]
    RandWrite,
    /// Sequential mix of reads and writes (`-M` percent reads).
    Rw,
    /// Random mix of reads and writes (`-M` percent reads).
    #[value(name = "randrw")]
    RandRw,
    /// Write a pattern, read it back and compare every byte.
    Verify,
    /// Unmap `-o` bytes at a time.
    Unmap,
    /// Flush `-o` bytes at a time.
    Flush,
    /// Reset the bdev.
    Reset,
}

/// Options of `bdevperf`.
#[derive(Debug, Clone, Parser)]
#[command(name = "bdevperf", about = "rspdk bdev performance tool", long_about = None)]
pub struct PerfOpts {
    /// JSON config file creating the bdevs (as written by `spdk-rpc save_config`).
    #[arg(short = 'c', long = "json", value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// I/Os in flight per job.
    #[arg(short = 'q', long = "qd", value_name = "DEPTH")]
    pub queue_depth: u32,
    /// I/O size in bytes.
    #[arg(short = 'o', long = "io-size", value_name = "BYTES")]
    pub io_size: u64,
    /// Workload.
    #[arg(short = 'w', long = "workload", value_enum)]
    pub workload: Workload,
    /// Percentage of reads for rw and randrw.
    #[arg(short = 'M', long = "rwmixread", value_name = "PERCENT")]
    pub rwmixread: Option<u32>,
    /// Run time in seconds.
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: u64,
    /// Core mask.
    #[arg(
        short = 'm',
        long = "cpumask",
        value_name = "MASK",
        default_value = "0x1"
    )]
    pub cpumask: String,
    /// Serve JSON-RPC on this Unix socket (no RPC server without it).
    #[arg(short = 'r', long = "rpc-socket", value_name = "PATH")]
    pub rpc_socket: Option<PathBuf>,
    /// Enable a log flag (repeatable).
    #[arg(short = 'L', long = "logflag", value_name = "FLAG")]
    pub logflag: Vec<String>,
}

/// Checked options.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Options for the app framework.
    pub app: app::cli::AppOpts,
    /// I/Os in flight per job.
    pub queue_depth: u32,
    /// I/O size in bytes.
    pub io_size: u64,
    /// Workload.
    pub workload: Workload,
    /// Read percentage (100 for pure reads, 0 for pure writes).
    pub read_pct: u32,
    /// Run time.
    pub time: Duration,
}

impl PerfOpts {
    /// Refuses values SPDK refuses, with a message naming the option.
    pub fn check(&self) -> Result<Checked, String> {
        if self.queue_depth == 0 {
            return Err("-q (queue depth) must be at least 1".into());
        }
        if self.io_size == 0 {
            return Err("-o (I/O size) must be at least 1 byte".into());
        }
        if self.time == 0 {
            return Err("-t (run time) must be at least 1 second".into());
        }
        let read_pct = match (self.workload, self.rwmixread) {
            (Workload::Rw | Workload::RandRw, Some(m)) if m > 100 => {
                return Err(format!("-M {m}: read percentage must be 0..=100"));
            }
            (Workload::Rw | Workload::RandRw, Some(m)) => m,
            (Workload::Rw | Workload::RandRw, None) => {
                return Err("-M (read percentage) is required for rw and randrw".into());
            }
            (w, Some(_)) => {
                return Err(format!(
                    "-M is only valid with rw or randrw, not {}",
                    w.name()
                ));
            }
            (Workload::Read | Workload::RandRead, None) => 100,
            (_, None) => 0,
        };
        let mut app = app::cli::AppOpts::parse_from(["bdevperf"]);
        app.json = self.json.clone();
        app.cpumask = self.cpumask.clone();
        app.logflag = self.logflag.clone();
        match &self.rpc_socket {
            Some(p) => app.rpc_socket = p.clone(),
            None => app.no_rpc_server = true,
        }
        Ok(Checked {
            app,
            queue_depth: self.queue_depth,
            io_size: self.io_size,
            workload: self.workload,
            read_pct,
            time: Duration::from_secs(self.time),
        })
    }
}

/// Names of the bdevs the config's `bdev` subsystem creates by name (`*_create` calls).
pub fn expected_bdevs(f: &app::config::ConfigFile) -> Vec<String> {
    let mut out = Vec::new();
    for sub in f.subsystems.iter().filter(|s| s.name == "bdev") {
        for e in &sub.entries {
            for c in e.calls() {
                if !c.method.ends_with("_create") {
                    continue;
                }
                let name = c
                    .params
                    .as_ref()
                    .and_then(|p| p.get("name"))
                    .and_then(|n| n.as_str());
                if let Some(n) = name {
                    out.push(n.to_owned());
                }
            }
        }
    }
    out
}
