//! Logging: `tracing` with a filter that the SPDK log RPCs change at run time.
//!
//! `RUST_LOG` (EnvFilter syntax) gives the base filter, default `info`. SPDK's log flags
//! (`-L nvmf`, `log_set_flag`) turn on debug output of one component, mapped to tracing targets;
//! `log_set_level` sets the level of everything else, with SPDK's level names.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// SPDK log flags this application knows, and the tracing targets each one enables.
pub const LOG_FLAGS: &[(&str, &[&str])] = &[
    ("app", &["app", "nvmf_tgt"]),
    ("app_config", &["app::framework"]),
    ("reactor", &["env::reactor"]),
    ("thread", &["env::thread"]),
    ("iobuf", &["env::iobuf"]),
    ("rpc", &["rpc"]),
    ("bdev", &["bdev"]),
    ("bdev_malloc", &["bdev_malloc"]),
    ("bdev_nvme", &["bdev_nvme"]),
    ("nvme", &["nvme"]),
    ("nvmf", &["nvmf"]),
    ("nvmf_tcp", &["nvmf_tcp"]),
    ("nvmf_rdma", &["nvmf_rdma"]),
];

/// SPDK's log level names (`log_set_level`), most severe first, with the tracing level each maps to.
pub const LOG_LEVELS: &[(&str, &str)] = &[
    ("DISABLED", "off"),
    ("ERROR", "error"),
    ("WARN", "warn"),
    ("WARNING", "warn"),
    ("NOTICE", "info"),
    ("INFO", "info"),
    ("DEBUG", "debug"),
];

/// Why a log call was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LogError {
    /// Not one of [`LOG_FLAGS`].
    UnknownFlag,
    /// Not one of [`LOG_LEVELS`].
    UnknownLevel,
}

struct LogState {
    base: String,
    level: &'static str,
    flags: BTreeMap<&'static str, bool>,
}

/// Handle to the process's log filter. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct LogControl {
    reload: Option<reload::Handle<EnvFilter, Registry>>,
    state: Arc<Mutex<LogState>>,
}

impl LogControl {
    /// Installs the global subscriber (stderr), with `RUST_LOG` as the base filter and `flags`
    /// enabled. A second call in the same process (tests) returns a working control that does not
    /// own the subscriber.
    pub fn init(flags: &[String]) -> Result<LogControl, LogError> {
        let base = std::env::var("RUST_LOG").unwrap_or_default();
        let mut ctl = LogControl::detached(base);
        for f in flags {
            ctl.set_flag(f, true)?;
        }
        let (filter, handle) = reload::Layer::new(ctl.filter());
        let installed = tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init()
            .is_ok();
        if installed {
            ctl.reload = Some(handle);
        }
        Ok(ctl)
    }

    /// A control that changes no subscriber (for tests).
    pub fn detached(base: String) -> LogControl {
        let flags = LOG_FLAGS.iter().map(|(n, _)| (*n, false)).collect();
        LogControl {
            reload: None,
            state: Arc::new(Mutex::new(LogState {
                base,
                level: "NOTICE",
                flags,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The filter directives currently in force.
    pub fn directives(&self) -> String {
        let st = self.lock();
        let level = LOG_LEVELS
            .iter()
            .find(|(n, _)| *n == st.level)
            .map(|(_, l)| *l)
            .unwrap_or("info");
        let mut d = if st.base.is_empty() {
            level.to_string()
        } else {
            st.base.clone()
        };
        for (flag, on) in &st.flags {
            if !on {
                continue;
            }
            if let Some((_, targets)) = LOG_FLAGS.iter().find(|(n, _)| n == flag) {
                for t in *targets {
                    d.push_str(&format!(",{t}=debug"));
                }
            }
        }
        d
    }

    fn filter(&self) -> EnvFilter {
        EnvFilter::try_new(self.directives()).unwrap_or_else(|_| EnvFilter::new("info"))
    }

    fn apply(&self) {
        if let Some(h) = &self.reload
            && let Err(e) = h.reload(self.filter())
        {
            tracing::warn!(error = %e, "cannot change the log filter");
        }
    }

    /// `log_set_flag` / `log_clear_flag`.
    pub fn set_flag(&mut self, flag: &str, on: bool) -> Result<(), LogError> {
        {
            let mut st = self.lock();
            let Some(v) = st
                .flags
                .iter_mut()
                .find(|(n, _)| **n == flag)
                .map(|(_, v)| v)
            else {
                return Err(LogError::UnknownFlag);
            };
            *v = on;
        }
        self.apply();
        Ok(())
    }

    /// `log_get_flags`: every flag with its state.
    pub fn flags(&self) -> BTreeMap<String, bool> {
        self.lock()
            .flags
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect()
    }

    /// `log_set_level`: takes SPDK's names, case-insensitively.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let up = level.to_ascii_uppercase();
        let Some((name, _)) = LOG_LEVELS.iter().find(|(n, _)| *n == up) else {
            return Err(LogError::UnknownLevel);
        };
        self.lock().level = name;
        self.apply();
        Ok(())
    }

    /// `log_get_level`.
    pub fn level(&self) -> &'static str {
        self.lock().level
    }
}

/// Logging for the standalone tools (`nvme_perf`, `nvme_identify`): stderr, `RUST_LOG` or
/// `default` as the filter. Quiet by default so the tools' own output stays readable.
pub fn init_tool_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_turn_on_debug_for_their_targets() {
        let mut c = LogControl::detached(String::new());
        assert_eq!(c.directives(), "info");
        c.set_flag("nvmf_tcp", true).unwrap();
        assert_eq!(c.directives(), "info,nvmf_tcp=debug");
        assert_eq!(c.flags().get("nvmf_tcp"), Some(&true));
        c.set_flag("nvmf_tcp", false).unwrap();
        assert_eq!(c.directives(), "info");
        assert_eq!(c.set_flag("nope", true), Err(LogError::UnknownFlag));
    }

    #[test]
    fn levels_use_spdk_names() {
        let c = LogControl::detached(String::new());
        c.set_level("debug").unwrap();
        assert_eq!(c.level(), "DEBUG");
        assert_eq!(c.directives(), "debug");
        c.set_level("ERROR").unwrap();
        assert_eq!(c.directives(), "error");
        assert_eq!(c.set_level("LOUD"), Err(LogError::UnknownLevel));
    }

    #[test]
    fn rust_log_is_the_base() {
        let mut c = LogControl::detached("warn,rpc=trace".into());
        c.set_flag("bdev", true).unwrap();
        assert_eq!(c.directives(), "warn,rpc=trace,bdev=debug");
    }
}
