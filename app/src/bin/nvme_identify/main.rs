//! `nvme_identify`: print a controller's and its namespaces' Identify data, log pages and
//! features the way SPDK's `spdk_nvme_identify` does, field for field; for the discovery
//! subsystem, also the discovery log page.
//!
//! `nvme_identify -r 'trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn...'`

mod print;

use std::process::ExitCode;

use clap::Parser;
use nvme::host::{Controller, ControllerOpts, TransportId};

/// Command line (SPDK spdk_nvme_identify's options that apply to NVMe-oF).
#[derive(Parser, Debug)]
#[command(
    name = "nvme_identify",
    about = "Print NVMe controller and namespace data"
)]
struct Args {
    /// Transport ID: 'trtype:TCP adrfam:IPv4 traddr:<ip> trsvcid:<port> subnqn:<nqn>
    /// [hostnqn:<nqn>]'.
    #[arg(short = 'r', long = "transport-id")]
    trid: String,
    /// Print a hex dump of the raw Identify data too.
    #[arg(short = 'x')]
    hex_dump: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    app::log::init_tool_logging("warn");
    let trid = match TransportId::parse(&args.trid) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "nvme_identify: error parsing transport address {:?}: {e}",
                args.trid
            );
            return ExitCode::from(1);
        }
    };
    let mut ctrlr = match Controller::connect(&trid, ControllerOpts::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "nvme_identify: no NVMe controller found at {} {}:{} ({}): {e}",
                trid.trtype.as_str(),
                trid.traddr,
                trid.trsvcid,
                trid.subnqn
            );
            return ExitCode::from(1);
        }
    };
    let r = print::controller(&mut ctrlr, args.hex_dump);
    // Detach as SPDK does: normal shutdown notification (CC.SHN), bounded by the driver.
    if let Err(e) = ctrlr.shutdown() {
        tracing::warn!(error = %e, "controller shutdown failed");
    }
    match r {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nvme_identify: {e}");
            ExitCode::from(1)
        }
    }
}
