//! The application framework (SPDK `lib/event/app.c` + `lib/init/json_config.c`), run on the app
//! thread.
//!
//! Called in this order: [`Framework::start`] (on the app thread, from the reactors' init
//! message) registers the RPC methods, opens the RPC server, replays the STARTUP calls of the config
//! file, then either waits for `framework_start_init` or initialises the subsystems at once; when
//! they are up, the RPC state becomes RUNTIME and the remaining config calls are replayed. A
//! shutdown request (signal, `spdk_kill_instance`) finalises the subsystems in reverse order, stops
//! the reactors and hands the exit code to the main thread.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use env::{PollStatus, Poller, Reactors};
use rpc::{Request, RpcError, RpcRegistry, RpcState, StateMask, UnixServer};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::AppOpts;
use crate::config::{ConfigCall, ConfigFile};
use crate::log::LogControl;
use crate::subsystem::SubsystemGraph;

/// Where the framework is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwState {
    /// Replaying STARTUP calls or waiting for `framework_start_init`.
    Startup,
    /// Subsystems are being initialised.
    Initializing,
    /// Serving.
    Running,
    /// Finalising subsystems.
    ShuttingDown,
}

/// How often the RPC servers are polled (SPDK `RPC_SELECT_INTERVAL`).
const RPC_POLL_PERIOD: std::time::Duration = std::time::Duration::from_millis(4);

/// The exit code the app thread hands to the main thread (shared, `Send`).
pub type ExitCode = Arc<Mutex<Option<i32>>>;

/// State owned by the app thread.
pub struct Framework {
    opts: AppOpts,
    /// The RPC method registry every module registers into.
    pub registry: Rc<RpcRegistry>,
    graph: SubsystemGraph,
    config: Option<ConfigFile>,
    state: Cell<FwState>,
    shutdown_requested: Cell<bool>,
    exit_code: ExitCode,
    reactors: Reactors,
    log: RefCell<LogControl>,
    server: RefCell<Option<Rc<RefCell<UnixServer>>>>,
    http: RefCell<Option<rpc::HttpServer>>,
    pollers: RefCell<Vec<Poller>>,
    /// Indices (subsystem, entry, call) of config calls already replayed.
    replayed: RefCell<HashSet<(usize, usize, usize)>>,
    /// `framework_wait_init` callers waiting for RUNTIME.
    init_waiters: RefCell<Vec<Request>>,
    /// `framework_start_init` caller waiting for the end of init.
    start_init_req: RefCell<Option<Request>>,
    /// Called once when the framework is running (tools such as bdevperf start their work here).
    on_running: RefCell<Option<OnRunning>>,
}

/// What a tool runs on the app thread once every subsystem is up.
pub type OnRunning = Box<dyn FnOnce(&Rc<Framework>)>;

impl Framework {
    /// Builds the framework; nothing runs until [`Framework::start`].
    pub fn new(
        opts: AppOpts,
        registry: Rc<RpcRegistry>,
        graph: SubsystemGraph,
        config: Option<ConfigFile>,
        reactors: Reactors,
        log: LogControl,
        exit_code: ExitCode,
    ) -> Rc<Framework> {
        let fw = Rc::new(Framework {
            opts,
            registry,
            graph,
            config,
            state: Cell::new(FwState::Startup),
            shutdown_requested: Cell::new(false),
            exit_code,
            reactors,
            log: RefCell::new(log),
            server: RefCell::new(None),
            http: RefCell::new(None),
            pollers: RefCell::new(Vec::new()),
            replayed: RefCell::new(HashSet::new()),
            init_waiters: RefCell::new(Vec::new()),
            start_init_req: RefCell::new(None),
            on_running: RefCell::new(None),
        });
        register_framework_rpcs(&fw);
        fw
    }

    /// Keeps a poller registered for as long as the framework serves.
    pub fn keep_poller(&self, p: Poller) {
        self.pollers.borrow_mut().push(p);
    }

    /// Current state.
    pub fn state(&self) -> FwState {
        self.state.get()
    }

    /// The subsystem graph.
    pub fn graph(&self) -> &SubsystemGraph {
        &self.graph
    }

    /// Starts serving: RPC server, STARTUP replay, then subsystem init (unless `--wait-for-rpc`).
    pub fn start(self: &Rc<Self>) {
        if let Err(e) = self.check_config() {
            self.fail(&e);
            return;
        }
        if !self.opts.no_rpc_server
            && let Err(e) = self.open_rpc_server()
        {
            self.fail(&e);
            return;
        }
        if let Some(addr) = self.opts.rpc_http
            && let Err(e) = self.open_http_server(addr)
        {
            self.fail(&e);
            return;
        }
        let fw = self.clone();
        self.replay(
            RpcState::Startup,
            Box::new(move |r| match r {
                Err(e) => fw.fail(&e),
                Ok(()) if fw.opts.wait_for_rpc => {
                    tracing::info!("waiting for framework_start_init over RPC");
                }
                Ok(()) => fw.start_init(),
            }),
        );
    }

    /// Records a fatal start-up error, tears down what started and exits with code 1.
    fn fail(self: &Rc<Self>, msg: &str) {
        tracing::error!("{msg}");
        eprintln!("nvmf_tgt: {msg}");
        self.shutdown_with(1);
    }

    /// Refuses a config that names an unknown method, or an unknown subsystem with calls in it,
    /// before anything runs (as `spdk-rpc load_config` checks methods up front).
    fn check_config(&self) -> Result<(), String> {
        let Some(cfg) = &self.config else {
            return Ok(());
        };
        for sub in &cfg.subsystems {
            if self.graph.get(&sub.name).is_none() {
                if sub.entries.is_empty() {
                    tracing::debug!(subsystem = %sub.name, "skipping unknown subsystem with empty config");
                    continue;
                }
                return Err(format!(
                    "config file {}: subsystem \"{}\": unknown subsystem (known: {})",
                    cfg.path.display(),
                    sub.name,
                    self.graph
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for e in &sub.entries {
                for c in e.calls() {
                    if self.registry.state_mask(&c.method).is_none() {
                        return Err(format!(
                            "config file {}: subsystem \"{}\": method \"{}\": unknown method",
                            cfg.path.display(),
                            sub.name,
                            c.method
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn open_rpc_server(self: &Rc<Self>) -> Result<(), String> {
        let opts = rpc::ServerOpts {
            max_request_size: self.opts.rpc_max_request_size,
            ..rpc::ServerOpts::default()
        };
        let server = UnixServer::listen(&self.opts.rpc_socket, self.registry.clone(), opts)
            .map_err(|e| {
                format!(
                    "cannot serve RPC on {}: {e}",
                    self.opts.rpc_socket.display()
                )
            })?;
        tracing::info!(socket = %self.opts.rpc_socket.display(), "RPC server listening");
        let server = Rc::new(RefCell::new(server));
        *self.server.borrow_mut() = Some(server.clone());
        let s = server.clone();
        // As SPDK (`RPC_SELECT_INTERVAL`, lib/init/rpc.c): the RPC sockets are polled every 4 ms,
        // so the app thread's core does no socket syscalls on the I/O path between polls.
        let poller = env::poller_register_periodic(
            move || {
                if s.borrow_mut().poll() {
                    PollStatus::Busy
                } else {
                    PollStatus::Idle
                }
            },
            RPC_POLL_PERIOD,
        )
        .map_err(|e| format!("cannot register the RPC poller: {e}"))?;
        self.pollers.borrow_mut().push(poller);
        Ok(())
    }

    /// Serves the same registry over HTTP and WebSocket (jsonrpsee); calls run on this thread.
    fn open_http_server(self: &Rc<Self>, addr: std::net::SocketAddr) -> Result<(), String> {
        let opts = rpc::HttpOpts {
            max_request_size: u32::try_from(self.opts.rpc_max_request_size).unwrap_or(u32::MAX),
            allow_remote: self.opts.rpc_http_allow_remote,
            ..rpc::HttpOpts::default()
        };
        let (server, bridge) = rpc::HttpServer::start(addr, opts)
            .map_err(|e| format!("cannot serve RPC over HTTP on {addr}: {e}"))?;
        tracing::info!(addr = %server.local_addr(), "RPC over HTTP/WebSocket listening");
        *self.http.borrow_mut() = Some(server);
        let reg = self.registry.clone();
        let poller = env::poller_register_periodic(
            move || PollStatus::from_busy(bridge.poll(&reg)),
            RPC_POLL_PERIOD,
        )
        .map_err(|e| format!("cannot register the HTTP RPC poller: {e}"))?;
        self.pollers.borrow_mut().push(poller);
        Ok(())
    }

    /// Replays, in file order, every config call allowed in `state` that has not run yet.
    fn replay(self: &Rc<Self>, state: RpcState, done: Box<dyn FnOnce(Result<(), String>)>) {
        let Some(cfg) = &self.config else {
            done(Ok(()));
            return;
        };
        let mut todo: Vec<(String, usize, usize, usize, ConfigCall)> = Vec::new();
        for (si, sub) in cfg.subsystems.iter().enumerate() {
            if self.graph.get(&sub.name).is_none() {
                continue;
            }
            for (ei, e) in sub.entries.iter().enumerate() {
                for (ci, c) in e.calls().iter().enumerate() {
                    let allowed = self
                        .registry
                        .state_mask(&c.method)
                        .is_some_and(|m| m.allows(state));
                    if allowed && !self.replayed.borrow().contains(&(si, ei, ci)) {
                        todo.push((sub.name.clone(), si, ei, ci, c.clone()));
                    }
                }
            }
        }
        todo.reverse();
        self.replay_next(todo, done);
    }

    fn replay_next(
        self: &Rc<Self>,
        mut todo: Vec<(String, usize, usize, usize, ConfigCall)>,
        done: Box<dyn FnOnce(Result<(), String>)>,
    ) {
        let Some((sub, si, ei, ci, call)) = todo.pop() else {
            done(Ok(()));
            return;
        };
        self.replayed.borrow_mut().insert((si, ei, ci));
        tracing::debug!(target: "app::framework", subsystem = %sub, method = %call.method, "replaying config call");
        let fw = self.clone();
        let path = self
            .config
            .as_ref()
            .map(|c| c.path.display().to_string())
            .unwrap_or_default();
        let method = call.method.clone();
        self.registry
            .call_local(&call.method, call.params.clone(), move |r| match r {
                Ok(_) => fw.replay_next(todo, done),
                Err(e) => {
                    let msg = format!(
                        "config file {path}: subsystem \"{sub}\": method \"{method}\": {} (code {})",
                        e.message, e.code
                    );
                    if fw.opts.json_ignore_init_errors {
                        tracing::warn!("{msg}; going on (--json-ignore-init-errors)");
                        fw.replay_next(todo, done);
                    } else {
                        done(Err(msg));
                    }
                }
            });
    }

    /// Initialises the subsystems, then switches RPC to RUNTIME and replays the rest.
    fn start_init(self: &Rc<Self>) {
        self.state.set(FwState::Initializing);
        let fw = self.clone();
        self.graph.init_all(Box::new(move |r| {
            if let Err(e) = r {
                if let Some(req) = fw.start_init_req.borrow_mut().take() {
                    req.err(RpcError::internal("framework_initialization failed"));
                }
                // init_all has already finalised what it had started.
                fw.state.set(FwState::Startup);
                fw.fail(&format!("subsystem initialisation failed: {e}"));
                return;
            }
            fw.registry.set_state(RpcState::Runtime);
            let fw2 = fw.clone();
            fw.replay(
                RpcState::Runtime,
                Box::new(move |r| {
                    if let Err(e) = r {
                        fw2.fail(&e);
                        return;
                    }
                    fw2.state.set(FwState::Running);
                    tracing::info!("nvmf_tgt started: all subsystems initialised");
                    if let Some(req) = fw2.start_init_req.borrow_mut().take() {
                        req.ok(true);
                    }
                    for w in fw2.init_waiters.borrow_mut().drain(..) {
                        w.ok(true);
                    }
                    if fw2.shutdown_requested.get() {
                        fw2.shutdown_with(0);
                        return;
                    }
                    let hook = fw2.on_running.borrow_mut().take();
                    if let Some(f) = hook {
                        f(&fw2);
                    }
                }),
            );
        }));
    }

    /// Asks for an orderly shutdown with exit code 0 (signal or `spdk_kill_instance`).
    pub fn request_shutdown(self: &Rc<Self>) {
        self.shutdown_with(0);
    }

    /// Asks for an orderly shutdown with `code` as the process exit code (tools that failed).
    pub fn shutdown_with_code(self: &Rc<Self>, code: i32) {
        self.shutdown_with(code);
    }

    /// Sets what runs once the framework is up (before [`Framework::start`]).
    pub fn set_on_running(&self, f: OnRunning) {
        *self.on_running.borrow_mut() = Some(f);
    }

    /// The reactors.
    pub fn reactors(&self) -> &Reactors {
        &self.reactors
    }

    fn shutdown_with(self: &Rc<Self>, code: i32) {
        match self.state.get() {
            FwState::ShuttingDown => return,
            // As SPDK: a shutdown during init waits for init to end.
            FwState::Initializing if code == 0 => {
                self.shutdown_requested.set(true);
                return;
            }
            _ => {}
        }
        let was = self.state.replace(FwState::ShuttingDown);
        {
            let mut ec = self.exit_code.lock().unwrap_or_else(|e| e.into_inner());
            ec.get_or_insert(code);
        }
        tracing::info!(code, "shutting down");
        for w in self.init_waiters.borrow_mut().drain(..) {
            w.err(RpcError::internal("framework is shutting down"));
        }
        let fw = self.clone();
        let finish = move || {
            // Stop serving RPC last so that a client waiting on spdk_kill_instance got its answer.
            fw.pollers.borrow_mut().clear();
            if let Some(h) = fw.http.borrow_mut().take() {
                h.stop();
            }
            if let Some(s) = fw.server.borrow_mut().take()
                && let Ok(s) = Rc::try_unwrap(s)
            {
                s.into_inner().close();
            }
            tracing::info!("all subsystems finalised; stopping reactors");
            fw.reactors.stop();
        };
        if was == FwState::Startup {
            // Nothing was initialised.
            finish();
        } else {
            self.graph.fini_all(Box::new(finish));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetConfigParams {
    name: String,
    #[serde(default)]
    with_batches: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillParams {
    sig_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagParams {
    flag: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelParams {
    level: String,
}

/// Fails a request that must carry no parameters (`{}` is accepted: `spdk-rpc` may send it).
fn no_params(req: &Request, msg: &str) -> Result<(), RpcError> {
    match req.params() {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(o)) if o.is_empty() => Ok(()),
        Some(_) => Err(RpcError::invalid_params(msg)),
    }
}

/// The version this build reports in `spdk_get_version`.
pub fn version_json() -> Value {
    let v = env!("CARGO_PKG_VERSION");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    json!({
        "version": format!("rspdk v{v}"),
        "fields": {"major": major, "minor": minor, "patch": patch, "suffix": "", "commit": ""}
    })
}

fn register_framework_rpcs(fw: &Rc<Framework>) {
    let reg = &fw.registry;
    let both = StateMask::BOTH;
    let runtime = StateMask::RUNTIME;
    let startup = StateMask::STARTUP;
    let weak = Rc::downgrade(fw);

    reg.register("spdk_get_version", both, |req| {
        match no_params(&req, "spdk_get_version method requires no parameters") {
            Ok(()) => req.ok(version_json()),
            Err(e) => req.err(e),
        }
    });

    let w = weak.clone();
    reg.register("framework_start_init", startup, move |req| {
        if let Err(e) = no_params(&req, "framework_start_init requires no parameters") {
            return req.err(e);
        }
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        if fw.state.get() != FwState::Startup {
            return req.err(RpcError::state(fw.registry.state()));
        }
        *fw.start_init_req.borrow_mut() = Some(req);
        fw.start_init();
    });

    let w = weak.clone();
    reg.register("framework_wait_init", both, move |req| {
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        if fw.state.get() == FwState::Running {
            req.ok(true);
        } else {
            fw.init_waiters.borrow_mut().push(req);
        }
    });

    let w = weak.clone();
    reg.register("framework_get_subsystems", runtime, move |req| {
        if let Err(e) = no_params(&req, "'framework_get_subsystems' requires no arguments") {
            return req.err(e);
        }
        match w.upgrade() {
            Some(fw) => req.ok(fw.graph.describe()),
            None => req.err(RpcError::internal("framework is gone")),
        }
    });

    let w = weak.clone();
    reg.register("framework_get_config", runtime, move |req| {
        let p: GetConfigParams = match req.parse() {
            Ok(p) => p,
            Err(_) => return req.err(RpcError::invalid_params("Invalid arguments")),
        };
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        match fw.graph.get(&p.name) {
            Some(s) => req.ok(Value::Array(flatten(
                s.config_json(p.with_batches),
                p.with_batches,
            ))),
            None => req.err(RpcError::invalid_params(format!(
                "Subsystem '{}' not found",
                p.name
            ))),
        }
    });

    let w = weak.clone();
    reg.register("save_config", runtime, move |req| {
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        req.ok(fw.config_document(false));
    });

    let w = weak.clone();
    reg.register("spdk_kill_instance", runtime, move |req| {
        let p: KillParams = match req.parse() {
            Ok(p) => p,
            Err(_) => return req.err(RpcError::invalid_params("Invalid parameters")),
        };
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        match p.sig_name.as_str() {
            "SIGINT" | "SIGTERM" | "SIGQUIT" | "SIGHUP" => {
                tracing::info!(signal = %p.sig_name, "spdk_kill_instance");
                req.ok(true);
                fw.request_shutdown();
            }
            "SIGKILL" => {
                req.ok(true);
                tracing::warn!("spdk_kill_instance SIGKILL: exiting at once");
                std::process::exit(137);
            }
            "SIGUSR1" => req.ok(true),
            _ => req.err(RpcError::invalid_params("Invalid parameters")),
        }
    });

    let w = weak.clone();
    reg.register("log_set_flag", both, move |req| {
        let Ok(p) = req.parse::<FlagParams>() else {
            return req.err(RpcError::internal("spdk_json_decode_object failed"));
        };
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        let r = fw.log.borrow_mut().set_flag(&p.flag, true);
        match r {
            Ok(()) => req.ok(true),
            Err(_) => req.err(RpcError::invalid_params("invalid log flag")),
        }
    });
    let w = weak.clone();
    reg.register("log_clear_flag", both, move |req| {
        let Ok(p) = req.parse::<FlagParams>() else {
            return req.err(RpcError::internal("spdk_json_decode_object failed"));
        };
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        let r = fw.log.borrow_mut().set_flag(&p.flag, false);
        match r {
            Ok(()) => req.ok(true),
            Err(_) => req.err(RpcError::invalid_params("invalid log flag")),
        }
    });
    let w = weak.clone();
    reg.register("log_get_flags", both, move |req| {
        if let Err(e) = no_params(&req, "log_get_flags requires no parameters") {
            return req.err(e);
        }
        match w.upgrade() {
            Some(fw) => req.ok(fw.log.borrow().flags()),
            None => req.err(RpcError::internal("framework is gone")),
        }
    });
    let w = weak.clone();
    reg.register("log_set_level", both, move |req| {
        let Ok(p) = req.parse::<LevelParams>() else {
            return req.err(RpcError::internal("spdk_json_decode_object failed"));
        };
        let Some(fw) = w.upgrade() else {
            return req.err(RpcError::internal("framework is gone"));
        };
        let r = fw.log.borrow().set_level(&p.level);
        match r {
            Ok(()) => req.ok(true),
            Err(_) => req.err(RpcError::internal("spdk_json_decode_object failed")),
        }
    });
    let w = weak.clone();
    reg.register("log_get_level", both, move |req| {
        if let Err(e) = no_params(&req, "log_get_level requires no parameters") {
            return req.err(e);
        }
        match w.upgrade() {
            Some(fw) => req.ok(fw.log.borrow().level()),
            None => req.err(RpcError::internal("framework is gone")),
        }
    });

    crate::env_rpc::register(reg, &fw.reactors);
}

impl Framework {
    /// The whole config document (`save_config`): every subsystem in init order.
    pub fn config_document(&self, with_batches: bool) -> Value {
        let subs: Vec<Value> = self
            .graph
            .iter()
            .map(|s| {
                json!({
                    "subsystem": s.name(),
                    "config": flatten(s.config_json(with_batches), with_batches),
                })
            })
            .collect();
        json!({ "subsystems": subs })
    }
}

/// Flattens batch arrays into single calls unless `with_batches` (SPDK's
/// `SPDK_JSON_WRITE_FLAG_FLATTEN_BATCHES`).
fn flatten(calls: Vec<Value>, with_batches: bool) -> Vec<Value> {
    if with_batches {
        return calls;
    }
    let mut out = Vec::with_capacity(calls.len());
    for c in calls {
        match c {
            Value::Array(items) => out.extend(items),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_flattened_unless_asked_for() {
        let calls = vec![
            json!({"method":"a"}),
            json!([{"method":"b"},{"method":"c"}]),
        ];
        assert_eq!(flatten(calls.clone(), true), calls);
        assert_eq!(
            flatten(calls, false),
            vec![
                json!({"method":"a"}),
                json!({"method":"b"}),
                json!({"method":"c"})
            ]
        );
    }

    #[test]
    fn version_has_spdk_shape() {
        let v = version_json();
        assert!(v["version"].as_str().unwrap().starts_with("rspdk v"));
        for k in ["major", "minor", "patch", "suffix", "commit"] {
            assert!(v["fields"].get(k).is_some(), "{k}");
        }
    }
}
