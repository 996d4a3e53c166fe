//! Command-line options of `nvmf_tgt`, with SPDK's names (`lib/event/app.c` getopt table).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Default path of the JSON-RPC Unix socket, as SPDK (`SPDK_DEFAULT_RPC_ADDR`).
pub const DEFAULT_RPC_SOCKET: &str = "/var/tmp/spdk.sock";

/// Options of the `nvmf_tgt` application.
#[derive(Debug, Clone, Parser)]
#[command(name = "nvmf_tgt", version, about = "rspdk NVMe-oF target", long_about = None)]
pub struct AppOpts {
    /// JSON config file: a list of RPC calls per subsystem, as written by `spdk-rpc save_config`.
    #[arg(short = 'c', long = "json", alias = "config", value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Core mask for the reactors: hex (`0x3`) or a list (`[0-3,7]`).
    #[arg(
        short = 'm',
        long = "cpumask",
        value_name = "MASK",
        default_value = "0x1"
    )]
    pub cpumask: String,

    /// Path of the JSON-RPC Unix socket.
    #[arg(short = 'r', long = "rpc-socket", value_name = "PATH", default_value = DEFAULT_RPC_SOCKET)]
    pub rpc_socket: PathBuf,

    /// Also serve the RPC methods over HTTP and WebSocket (jsonrpsee) at this address.
    #[arg(long = "rpc-http", value_name = "ADDR:PORT")]
    pub rpc_http: Option<SocketAddr>,

    /// Allow `--rpc-http` on an address other than loopback. The HTTP/WebSocket RPC has no
    /// authentication: anyone who reaches the port controls the target.
    #[arg(long = "rpc-http-allow-remote")]
    pub rpc_http_allow_remote: bool,

    /// Do not serve RPC on a Unix socket at all.
    #[arg(long = "no-rpc-server")]
    pub no_rpc_server: bool,

    /// Wait for `framework_start_init` over RPC before initialising the subsystems.
    #[arg(long = "wait-for-rpc")]
    pub wait_for_rpc: bool,

    /// Enable a log flag (repeatable); the flag names the component (`nvmf`, `nvmf_tcp`, `bdev`, `rpc`...).
    #[arg(short = 'L', long = "logflag", value_name = "FLAG")]
    pub logflag: Vec<String>,

    /// Sleep in the kernel when every poller is idle instead of busy polling.
    #[arg(long = "interrupt-mode")]
    pub interrupt_mode: bool,

    /// Go on with start-up when a call of the JSON config fails.
    #[arg(long = "json-ignore-init-errors")]
    pub json_ignore_init_errors: bool,

    /// Largest JSON-RPC request accepted, in bytes.
    #[arg(long = "rpc-max-request-size", value_name = "BYTES", default_value_t = 1 << 20)]
    pub rpc_max_request_size: usize,

    /// Memory size in MiB (accepted for compatibility; memory is allocated on demand).
    #[arg(short = 's', long = "mem-size", value_name = "MB")]
    pub mem_size: Option<u64>,

    /// Shared memory id (accepted for compatibility; ignored).
    #[arg(short = 'i', long = "shm-id", value_name = "ID")]
    pub shm_id: Option<i32>,

    /// Do not use hugepages (accepted for compatibility: hugepages are used only when present).
    #[arg(long = "no-huge")]
    pub no_huge: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spdk() {
        let o = AppOpts::parse_from(["nvmf_tgt"]);
        assert_eq!(o.cpumask, "0x1");
        assert_eq!(o.rpc_socket, PathBuf::from("/var/tmp/spdk.sock"));
        assert!(!o.wait_for_rpc && !o.interrupt_mode && o.json.is_none());
        assert_eq!(o.rpc_max_request_size, 1 << 20);
    }

    #[test]
    fn spdk_short_and_long_flags_parse() {
        let o = AppOpts::parse_from([
            "nvmf_tgt",
            "-c",
            "a.json",
            "-m",
            "[0-1]",
            "-r",
            "/tmp/x.sock",
            "-L",
            "nvmf",
            "-L",
            "bdev",
            "--wait-for-rpc",
            "--interrupt-mode",
            "--json-ignore-init-errors",
        ]);
        assert_eq!(o.json, Some(PathBuf::from("a.json")));
        assert_eq!(o.cpumask, "[0-1]");
        assert_eq!(o.logflag, vec!["nvmf".to_string(), "bdev".to_string()]);
        assert!(o.wait_for_rpc && o.interrupt_mode && o.json_ignore_init_errors);
        let o = AppOpts::parse_from(["nvmf_tgt", "--json", "b.json", "--cpumask", "0x3"]);
        assert_eq!(o.json, Some(PathBuf::from("b.json")));
        assert_eq!(o.cpumask, "0x3");
    }
}
