//! The rspdk application framework (SPDK `lib/event`, `lib/init`) and the `nvmf_tgt` binary.
//!
//! Flow: parse options ([`cli`]) -> initialise the env layer and start one reactor per core ->
//! on the app thread: register the RPC methods, replay the STARTUP calls of the config file
//! ([`config`]), initialise the module subsystems in dependency order ([`subsystem`]), switch RPC to
//! RUNTIME and replay the remaining calls -> serve -> on SIGINT, SIGTERM or `spdk_kill_instance`,
//! finalise the subsystems in reverse order and exit.
#![forbid(unsafe_code)]

pub mod cli;
pub mod compat;
pub mod config;
pub mod env_rpc;
pub mod framework;
pub mod log;
pub mod modules;
pub mod run;
pub mod subsystem;

pub use run::{StartFn, run, run_with};
