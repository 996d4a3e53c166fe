//! SPDK's JSON config file (`lib/init/json_config.c`): a list of RPC calls per subsystem.
//!
//! ```text
//! { "subsystems": [ { "subsystem": "bdev", "config": [ { "method": "...", "params": {...} }, ... ] } ] }
//! ```
//!
//! An entry of `config` is one call or (SPDK 26.x) an array of calls sent as a batch. Anything else
//! at the root is ignored, as in SPDK. The file is only parsed and checked here; the framework
//! replays the calls through the RPC registry, so a config file and RPC share one code path.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest config file read, a guard against a file that is not a config at all.
pub const MAX_CONFIG_FILE_SIZE: u64 = 64 << 20;

/// One RPC call of a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigCall {
    /// Method name.
    pub method: String,
    /// Parameters, as written in the file (`None` when absent).
    pub params: Option<Value>,
}

/// One entry of a subsystem's `config` array.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigEntry {
    /// A single call.
    Call(ConfigCall),
    /// Calls sent together as a JSON-RPC batch.
    Batch(Vec<ConfigCall>),
}

impl ConfigEntry {
    /// The calls of this entry, in order.
    pub fn calls(&self) -> &[ConfigCall] {
        match self {
            ConfigEntry::Call(c) => std::slice::from_ref(c),
            ConfigEntry::Batch(b) => b,
        }
    }
}

/// The configuration of one subsystem.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsystemConfig {
    /// Subsystem name (`bdev`, `nvmf`, ...).
    pub name: String,
    /// Its calls, in file order.
    pub entries: Vec<ConfigEntry>,
}

/// A parsed config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Subsystems in file order.
    pub subsystems: Vec<SubsystemConfig>,
}

/// Why a config file was refused: names the file, and the subsystem and method where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The subsystem, where the problem is inside one.
    pub subsystem: Option<String>,
    /// The method, where the problem is inside one call.
    pub method: Option<String>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(s) = &self.subsystem {
            write!(f, ": subsystem \"{s}\"")?;
        }
        if let Some(m) = &self.method {
            write!(f, ": method \"{m}\"")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// How long [`ConfigFile::load`] waits for a pipe's writer in all.
pub const PIPE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl ConfigFile {
    /// Reads and checks a config file: a regular file, or a FIFO/pipe (SPDK's test scripts pass
    /// `--json <(gen_config)`); a device such as `/dev/zero` or a directory is refused without
    /// reading. At most [`MAX_CONFIG_FILE_SIZE`] bytes are read: a longer file (even one still
    /// growing) is refused as "config file too large". A pipe whose writer is gone or never
    /// came gives what was written (nothing: "not valid JSON"); one whose writer stays silent
    /// for [`PIPE_READ_TIMEOUT`] is refused.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;

        let err = |problem: String| {
            tracing::error!(file = %path.display(), "cannot load the JSON configuration: {problem}");
            ConfigError {
                path: path.to_path_buf(),
                subsystem: None,
                method: None,
                problem,
            }
        };
        // Non-blocking so that opening a FIFO without a writer returns at once instead of
        // waiting for one; the type is then checked on the open file (no check-then-open race).
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| err(format!("cannot read: {e}")))?;
        let fifo = {
            use std::os::unix::fs::FileTypeExt;
            meta.file_type().is_fifo()
        };
        if !meta.is_file() && !fifo {
            return Err(err(format!(
                "not a regular file ({})",
                file_kind(&meta.file_type())
            )));
        }
        let too_large = || {
            err(format!(
                "config file too large (more than {MAX_CONFIG_FILE_SIZE} bytes)"
            ))
        };
        if meta.len() > MAX_CONFIG_FILE_SIZE {
            return Err(too_large());
        }
        let mut text = Vec::new();
        let started = std::time::Instant::now();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    text.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if text.len() as u64 > MAX_CONFIG_FILE_SIZE {
                        return Err(too_large());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A pipe whose writer has not written yet.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if started.elapsed() >= PIPE_READ_TIMEOUT {
                        return Err(err(format!(
                            "nothing more written to the pipe for {} s",
                            PIPE_READ_TIMEOUT.as_secs()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(err(format!("cannot read: {e}"))),
            }
        }
        Self::parse(path, &text)
    }

    /// Parses and checks the text of a config file; `path` is only used in messages.
    pub fn parse(path: &Path, text: &[u8]) -> Result<ConfigFile, ConfigError> {
        let mk = |subsystem: Option<&str>, method: Option<&str>, problem: String| ConfigError {
            path: path.to_path_buf(),
            subsystem: subsystem.map(str::to_owned),
            method: method.map(str::to_owned),
            problem,
        };
        let root: Value = serde_json::from_slice(text)
            .map_err(|e| mk(None, None, format!("not valid JSON: {e}")))?;
        let Value::Object(root) = root else {
            return Err(mk(None, None, "the root is not a JSON object".into()));
        };
        let list = match root.get("subsystems") {
            None => {
                tracing::warn!(file = %path.display(), "no 'subsystems' key in the JSON configuration");
                return Ok(ConfigFile {
                    path: path.to_path_buf(),
                    subsystems: Vec::new(),
                });
            }
            Some(Value::Array(a)) => a,
            Some(_) => return Err(mk(None, None, "\"subsystems\" is not an array".into())),
        };
        let mut subsystems = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let Value::Object(s) = s else {
                return Err(mk(
                    None,
                    None,
                    format!("entry {i} of \"subsystems\" is not an object"),
                ));
            };
            let name = match s.get("subsystem") {
                Some(Value::String(n)) => n.clone(),
                _ => {
                    return Err(mk(
                        None,
                        None,
                        format!("entry {i} of \"subsystems\" has no \"subsystem\" name string"),
                    ));
                }
            };
            let entries = match s.get("config") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(j, e)| {
                        parse_entry(e).map_err(|(m, p)| {
                            mk(Some(&name), m.as_deref(), format!("config entry {j}: {p}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => {
                    return Err(mk(Some(&name), None, "\"config\" is not an array".into()));
                }
            };
            subsystems.push(SubsystemConfig { name, entries });
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            subsystems,
        })
    }
}

/// A word for a file type that is not a regular file.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

fn parse_entry(e: &Value) -> Result<ConfigEntry, (Option<String>, String)> {
    match e {
        Value::Array(batch) => batch
            .iter()
            .map(parse_call)
            .collect::<Result<Vec<_>, _>>()
            .map(ConfigEntry::Batch),
        other => parse_call(other).map(ConfigEntry::Call),
    }
}

fn parse_call(e: &Value) -> Result<ConfigCall, (Option<String>, String)> {
    let Value::Object(o) = e else {
        return Err((None, "not an object with \"method\" and \"params\"".into()));
    };
    let method = match o.get("method") {
        Some(Value::String(m)) => m.clone(),
        _ => return Err((None, "no \"method\" string".into())),
    };
    let params = match o.get("params") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) | Some(p @ Value::Array(_)) => Some(p.clone()),
        Some(_) => {
            return Err((Some(method), "\"params\" is not an object".into()));
        }
    };
    Ok(ConfigCall { method, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("t.json"), v.as_bytes())
    }

    fn load_problem(path: &Path) -> String {
        let e = ConfigFile::load(path).unwrap_err();
        assert_eq!((e.subsystem.as_deref(), e.method.as_deref()), (None, None));
        e.problem
    }

    #[test]
    fn dev_zero_is_refused_without_reading() {
        assert_eq!(
            load_problem(Path::new("/dev/zero")),
            "not a regular file (a character device)"
        );
    }

    #[test]
    fn directory_is_refused_and_fifo_without_writer_does_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("cfg.fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        // No writer ever opens it: a blocking open or read would hang this test; it reads
        // as empty.
        assert!(
            load_problem(&fifo).starts_with("not valid JSON: EOF"),
            "{}",
            load_problem(&fifo)
        );
        assert_eq!(load_problem(dir.path()), "not a regular file (a directory)");
    }

    #[test]
    fn fifo_with_a_slow_writer_is_read_like_spdk_json_process_substitution() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("cfg.fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let text = r#"{"subsystems":[{"subsystem":"bdev","config":[{"method":"bdev_wait_for_examine"}]}]}"#;
        // The writer opens first (the reader then sees it), and writes in two parts later.
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let w = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&fifo)
                    .unwrap();
                opened_tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
                f.write_all(&text.as_bytes()[..10]).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
                f.write_all(&text.as_bytes()[10..]).unwrap();
                // Dropping the only write end ends the reader's input.
            })
        };
        opened_rx.recv().unwrap();
        // The writer holds a read end too (so its open does not wait): the reader sees EOF
        // only once the writer's handle closes.
        let c = ConfigFile::load(&fifo).unwrap();
        w.join().unwrap();
        assert_eq!(c.subsystems.len(), 1);
        assert_eq!(c.subsystems[0].name, "bdev");
    }

    #[test]
    fn file_over_64_mib_is_too_large_and_64_mib_plus_one_is_the_first_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        // Sparse: no disk blocks and no read (the size check comes first).
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_CONFIG_FILE_SIZE + 1).unwrap();
        assert_eq!(
            load_problem(&big),
            "config file too large (more than 67108864 bytes)"
        );
        let e = ConfigFile::load(&big).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "config file {}: config file too large (more than 67108864 bytes)",
                big.display()
            )
        );
        // A small regular file still loads.
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, r#"{"subsystems":[]}"#).unwrap();
        assert!(ConfigFile::load(&ok).unwrap().subsystems.is_empty());
    }

    #[test]
    fn spdk_saved_config_parses_in_order() {
        let c = parse(
            r#"{"subsystems":[
              {"subsystem":"vmd","config":[]},
              {"subsystem":"bdev","config":[
                {"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":64,"block_size":512}},
                {"method":"bdev_wait_for_examine"}]},
              {"subsystem":"nvmf","config":[[{"method":"a"},{"method":"b","params":{"x":1}}]]},
              {"subsystem":"nbd","config":null}]}"#,
        )
        .unwrap();
        let names: Vec<_> = c.subsystems.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["vmd", "bdev", "nvmf", "nbd"]);
        assert_eq!(
            c.subsystems[1].entries[0],
            ConfigEntry::Call(ConfigCall {
                method: "bdev_malloc_create".into(),
                params: Some(json!({"name":"Malloc0","num_blocks":64,"block_size":512})),
            })
        );
        assert_eq!(c.subsystems[1].entries[1].calls()[0].params, None);
        assert_eq!(c.subsystems[2].entries[0].calls().len(), 2);
        assert!(c.subsystems[3].entries.is_empty());
    }

    #[test]
    fn not_json_names_the_file() {
        let e = parse("{ nope").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config file t.json: not valid JSON"),
            "{e}"
        );
    }

    #[test]
    fn call_without_method_names_the_subsystem() {
        let e =
            parse(r#"{"subsystems":[{"subsystem":"bdev","config":[{"params":{}}]}]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config file t.json: subsystem \"bdev\": config entry 0: no \"method\" string"
        );
    }

    #[test]
    fn scalar_params_name_the_method() {
        let e =
            parse(r#"{"subsystems":[{"subsystem":"bdev","config":[{"method":"m","params":3}]}]}"#)
                .unwrap_err();
        assert_eq!(e.subsystem.as_deref(), Some("bdev"));
        assert_eq!(e.method.as_deref(), Some("m"));
    }

    #[test]
    fn root_shapes_are_checked() {
        assert!(parse("[]").is_err());
        assert!(parse(r#"{"subsystems":{}}"#).is_err());
        assert!(parse(r#"{"subsystems":[{"config":[]}]}"#).is_err());
        assert_eq!(parse(r#"{"other":1}"#).unwrap().subsystems.len(), 0);
    }
}
