//! `nvmf_tgt`: the NVMe-oF target application (SPDK `app/nvmf_tgt`).
use clap::Parser;

fn main() {
    let opts = app::cli::AppOpts::parse();
    match app::run(opts) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("nvmf_tgt: {e:#}");
            std::process::exit(1);
        }
    }
}
