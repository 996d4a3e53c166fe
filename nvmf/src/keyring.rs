//! The key ring (SPDK `lib/keyring` + `module/keyring/file`): named keys kept in files, and
//! the NVMe DH-HMAC-CHAP secret format they hold.
//!
//! The ring is process-global, as SPDK's: `keyring_file_add_key {name, path}` checks the file
//! (absolute path, exists, owned by this user, no group/other permission bits) and records
//! only its path; the key bytes are read from the file each time a key is used, so a key file
//! rewritten in place takes effect at the next authentication. A key still referenced (by a
//! subsystem host) when it is removed stays alive for its users, marked `removed`.
//!
//! The secret format is the one of nvme-cli `gen-dhchap-key` and the Linux kernel
//! (`nvme_auth_extract_key`): `DHHC-1:<hh>:<base64(secret || crc32(secret) LE)>:` with `hh`
//! the hash used to transform the secret (00 none, 01 SHA-256, 02 SHA-384, 03 SHA-512),
//! a 32, 48 or 64 byte secret and the IEEE CRC-32 of the secret.

use crate::NvmfError;
use base64::Engine;
use rpc::{RpcError, RpcRegistry, StateMask};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A named key of the ring whose material lives in a file (SPDK `keyring_file` module).
#[derive(Debug)]
pub struct Key {
    name: String,
    path: String,
    removed: AtomicBool,
}

impl Key {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the key is read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// True once `keyring_file_remove_key` removed it (it can no longer be read).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Reads the key file again and parses it as a DH-HMAC-CHAP secret.
    pub fn dhchap(&self) -> Result<DhchapKey, NvmfError> {
        if self.is_removed() {
            return Err(NvmfError::NotFound(format!(
                "key '{}' was removed",
                self.name
            )));
        }
        let text = read_key_file(&self.path).map_err(|e| {
            NvmfError::InvalidParam(format!(
                "could not load key '{}': {}",
                self.name,
                errno_text(e)
            ))
        })?;
        DhchapKey::parse(&text)
            .map_err(|e| NvmfError::InvalidParam(format!("key '{}': {e}", self.name)))
    }
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// A DH-HMAC-CHAP secret (NVMe Base 2.0, 8.13.5.8; the `DHHC-1` text representation).
#[derive(Clone, PartialEq, Eq)]
pub struct DhchapKey {
    /// Hash identifier of the key transformation: 0 none, 1 SHA-256, 2 SHA-384, 3 SHA-512.
    pub hmac: u8,
    /// The secret (32, 48 or 64 bytes).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for DhchapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("DhchapKey")
            .field("hmac", &self.hmac)
            .field("len", &self.secret.len())
            .finish()
    }
}

/// Why a `DHHC-1` secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFormatError {
    /// The text does not start with `DHHC-1:`.
    #[error("not a DHHC-1 secret (expected 'DHHC-1:<hh>:<base64>:')")]
    Prefix,
    /// The hash identifier is not 00, 01, 02 or 03 (the text is not echoed: a malformed
    /// file may hold key material there).
    #[error("invalid key hash identifier (expected 00, 01, 02 or 03)")]
    HashId,
    /// The base64 part is missing its closing ':' or has text after it.
    #[error("key is not terminated by ':'")]
    Terminator,
    /// The base64 part does not decode.
    #[error("key is not valid base64")]
    Base64,
    /// The decoded secret is not 32, 48 or 64 bytes (plus the 4 byte CRC).
    #[error("invalid key length {0} (expected 32, 48 or 64 bytes)")]
    Length(usize),
    /// The CRC-32 after the secret does not match it.
    #[error("key CRC mismatch")]
    Crc,
}

impl DhchapKey {
    /// Parses `DHHC-1:<hh>:<base64(secret || crc32 LE)>:` (trailing whitespace, such as the
    /// newline of a key file, is ignored).
    pub fn parse(text: &str) -> Result<DhchapKey, KeyFormatError> {
        let t = text.trim_end();
        let rest = t.strip_prefix("DHHC-1:").ok_or(KeyFormatError::Prefix)?;
        let (hh, rest) = rest.split_once(':').ok_or(KeyFormatError::Prefix)?;
        let hmac = match hh {
            "00" => 0,
            "01" => 1,
            "02" => 2,
            "03" => 3,
            _ => return Err(KeyFormatError::HashId),
        };
        let b64 = rest.strip_suffix(':').ok_or(KeyFormatError::Terminator)?;
        if b64.contains(':') {
            return Err(KeyFormatError::Terminator);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| KeyFormatError::Base64)?;
        let len = raw.len().saturating_sub(4);
        if raw.len() < 4 || !matches!(len, 32 | 48 | 64) {
            return Err(KeyFormatError::Length(len));
        }
        let (secret, crc) = raw.split_at(len);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(secret) != want {
            return Err(KeyFormatError::Crc);
        }
        Ok(DhchapKey {
            hmac,
            secret: secret.to_vec(),
        })
    }

    /// The `DHHC-1` text of this key (as nvme-cli `gen-dhchap-key` prints it).
    pub fn to_text(&self) -> String {
        let mut raw = self.secret.clone();
        raw.extend_from_slice(&crc32fast::hash(&self.secret).to_le_bytes());
        format!(
            "DHHC-1:{:02x}:{}:",
            self.hmac,
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

static KEYRING: Mutex<BTreeMap<String, Arc<Key>>> = Mutex::new(BTreeMap::new());

fn ring() -> std::sync::MutexGuard<'static, BTreeMap<String, Arc<Key>>> {
    match KEYRING.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// SPDK `keyring_file_check_path`: absolute, exists, owned by us, mode without 077 bits.
/// Like SPDK's `stat`, a symbolic link is followed (its target is checked).
/// Returns the errno SPDK answers.
fn check_path(path: &str) -> Result<(), i32> {
    check_absolute(path)?;
    let md = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(path, error = %e, "Could not stat key file");
            return Err(e.raw_os_error().unwrap_or(EIO));
        }
    };
    check_metadata(path, &md)
}

fn check_absolute(path: &str) -> Result<(), i32> {
    if !path.starts_with('/') {
        tracing::error!(path, "Non-absolute paths are not allowed");
        return Err(libc_eperm());
    }
    Ok(())
}

/// Regular file, owned by the process's real user, no group/other permission bits
/// (fails closed: the owner is compared with `getuid()`, never skipped).
fn check_metadata(path: &str, md: &std::fs::Metadata) -> Result<(), i32> {
    let uid = rustix::process::getuid().as_raw();
    if md.mode() & 0o077 != 0 || !md.is_file() || md.uid() != uid {
        tracing::error!(
            path,
            mode = format!("0{:o}", md.mode()),
            owner = md.uid(),
            "Invalid permissions for key file"
        );
        return Err(libc_eperm());
    }
    Ok(())
}

/// Largest key file read (SPDK's key buffers are far smaller; a DHHC-1 secret is < 100 bytes).
pub const MAX_KEY_FILE_SIZE: u64 = 4096;

/// Opens `path` once (non-blocking, so a FIFO cannot stall the reactor), checks the opened
/// file itself (`fstat`: no window between check and read) and reads at most
/// [`MAX_KEY_FILE_SIZE`] bytes. Errors are errno values (EPERM bad file, EFBIG too large,
/// EILSEQ not UTF-8, or the errno of open/read).
fn read_key_file(path: &str) -> Result<String, i32> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    check_absolute(path)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            tracing::error!(path, error = %e, "Could not open key file");
            e.raw_os_error().unwrap_or(EIO)
        })?;
    let md = f.metadata().map_err(|e| {
        tracing::error!(path, error = %e, "Could not stat key file");
        e.raw_os_error().unwrap_or(EIO)
    })?;
    check_metadata(path, &md)?;
    let mut buf = Vec::new();
    f.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            tracing::error!(path, error = %e, "Could not read key file");
            e.raw_os_error().unwrap_or(EIO)
        })?;
    if buf.len() as u64 > MAX_KEY_FILE_SIZE {
        tracing::error!(path, max = MAX_KEY_FILE_SIZE, "Key file too large");
        return Err(EFBIG);
    }
    String::from_utf8(buf).map_err(|_| {
        tracing::error!(path, "Key file is not text");
        EILSEQ
    })
}

const fn libc_eperm() -> i32 {
    1
}
const ENOKEY: i32 = 126;
const EEXIST: i32 = 17;
const EINVAL: i32 = 22;
const EIO: i32 = 5;
const EFBIG: i32 = 27;
const EILSEQ: i32 = 84;

/// Adds key `name` read from file `path` (SPDK `spdk_keyring_file_add_key`). Errors are SPDK's
/// errno values: EPERM (relative path, bad permissions or owner, not a regular file), the
/// errno of `stat`, EEXIST (name taken), EINVAL (a `keyring:` prefixed name).
pub fn add_file_key(name: &str, path: &str) -> Result<(), i32> {
    if let Some(pos) = name.find(':')
        && pos != 0
    {
        tracing::error!(
            name,
            "Couldn't add key to the keyring: keyring doesn't exist"
        );
        return Err(EINVAL);
    }
    check_path(path)?;
    let mut r = ring();
    if r.contains_key(name) {
        tracing::error!(name, "Key already exists");
        return Err(EEXIST);
    }
    r.insert(
        name.to_string(),
        Arc::new(Key {
            name: name.to_string(),
            path: path.to_string(),
            removed: AtomicBool::new(false),
        }),
    );
    tracing::info!(name, path, "key added to the keyring");
    Ok(())
}

/// Removes key `name` (SPDK `spdk_keyring_file_remove_key`); ENOKEY when it does not exist.
/// Holders of the key see it as removed.
pub fn remove_key(name: &str) -> Result<(), i32> {
    let Some(k) = ring().remove(name) else {
        tracing::error!(name, "Key does not exist");
        return Err(ENOKEY);
    };
    k.removed.store(true, Ordering::Release);
    tracing::info!(name, "key removed from the keyring");
    Ok(())
}

/// Key `name`, for a user that keeps it (SPDK `spdk_keyring_get_key`).
pub fn get_key(name: &str) -> Option<Arc<Key>> {
    ring().get(name).cloned()
}

fn key_json(k: &Arc<Key>) -> Value {
    // The ring holds one reference, as SPDK's; every user holds one more.
    let mut o = json!({
        "name": k.name,
        "module": "keyring_file",
        "removed": k.is_removed(),
        "probed": false,
        "refcnt": Arc::strong_count(k),
    });
    if !k.is_removed() {
        o["path"] = json!(k.path);
    }
    o
}

/// `keyring_get_keys` result: one object per key, by name.
pub fn keys_json() -> Vec<Value> {
    ring().values().map(key_json).collect()
}

/// The keyring subsystem's save_config entries (`keyring_file_add_key` per key).
pub fn config_json() -> Vec<Value> {
    ring()
        .values()
        .map(|k| {
            json!({
                "method": "keyring_file_add_key",
                "params": {"name": k.name, "path": k.path},
            })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddKeyParams {
    name: String,
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

/// Registers `keyring_file_add_key`, `keyring_file_remove_key` and `keyring_get_keys`.
pub fn register_rpcs(reg: &RpcRegistry) {
    reg.register_typed(
        "keyring_file_add_key",
        StateMask::BOTH,
        |p: AddKeyParams, r| match add_file_key(&p.name, &p.path) {
            Ok(()) => r.ok(true),
            Err(e) => r.err(RpcError::errno(e)),
        },
    );
    reg.register_typed(
        "keyring_file_remove_key",
        StateMask::BOTH,
        |p: NameParams, r| match remove_key(&p.name) {
            Ok(()) => r.ok(true),
            Err(e) => r.err(RpcError::errno(e)),
        },
    );
    reg.register("keyring_get_keys", StateMask::BOTH, |r| {
        r.ok(Value::Array(keys_json()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhhc1_round_trip_and_errors() {
        let k = DhchapKey {
            hmac: 1,
            secret: (0u8..32).collect(),
        };
        let t = k.to_text();
        assert!(t.starts_with("DHHC-1:01:"));
        assert_eq!(DhchapKey::parse(&format!("{t}\n")).unwrap(), k);
        assert_eq!(
            DhchapKey::parse("DHHC-2:00:x:"),
            Err(KeyFormatError::Prefix)
        );
        assert_eq!(
            DhchapKey::parse(&t.replace(":01:", ":04:")),
            Err(KeyFormatError::HashId)
        );
        assert_eq!(
            DhchapKey::parse(t.trim_end_matches(':')),
            Err(KeyFormatError::Terminator)
        );
        assert_eq!(
            DhchapKey::parse("DHHC-1:00:!!!!:"),
            Err(KeyFormatError::Base64)
        );
        let short = DhchapKey {
            hmac: 0,
            secret: vec![1; 16],
        };
        assert_eq!(
            DhchapKey::parse(&short.to_text()),
            Err(KeyFormatError::Length(16))
        );
        let mut raw = k.secret.clone();
        raw.extend_from_slice(&(crc32fast::hash(&raw) ^ 1).to_le_bytes());
        let bad = format!(
            "DHHC-1:01:{}:",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert_eq!(DhchapKey::parse(&bad), Err(KeyFormatError::Crc));
    }

    #[test]
    fn parses_secrets_generated_by_nvme_cli() {
        // `nvme gen-dhchap-key --hmac=N` (nvme-cli 2.3), for N = 0..3, and `--key-length=64`.
        let cases = [
            (
                "DHHC-1:00:s4m/0hbMVOW1wR7ce/qn5cOY9jOX1m2lr3KTqqjKXrN95VWe:",
                0,
                32,
            ),
            (
                "DHHC-1:01:EW61IunQx6J0JUt3cmwY/U6YZ8UWsM3uFeVSn2vAtCJD67xk:",
                1,
                32,
            ),
            (
                "DHHC-1:02:iayqW+NRp1nT0cDtNlJGtc05xEQMcOF3srxpFSpfWS/q3nDvPiYPAByEE6zR+urMDW32dA==:",
                2,
                48,
            ),
            (
                "DHHC-1:03:W+AwYlQlV+Qez21FQGn55OfyVCx9QwgdSEeDcElqyUAbO+P+lzNgeOrlXTSAjtyP0xBacyw2B8/w8yfxqQAamyD8Qvo=:",
                3,
                64,
            ),
            (
                "DHHC-1:00:u2wrHf0drUVOZMEBmckhHK3cYuEAhQUEJKookCd9YGU7y4D3CwFBo957iuvBxC0+R65j/U14/k3E+PcJPZ1IDzd5J4s=:",
                0,
                64,
            ),
        ];
        for (text, hmac, len) in cases {
            let k = DhchapKey::parse(text).unwrap();
            assert_eq!((k.hmac, k.secret.len()), (hmac, len), "{text}");
            assert_eq!(k.to_text(), text);
        }
    }

    #[test]
    fn crc_is_ieee_crc32_as_nvme_cli() {
        // CRC-32/ISO-HDLC check value ("123456789" -> CBF43926), the CRC nvme-cli, the
        // kernel (crc32_le with ~0 in/out) and SPDK (spdk_crc32_ieee_update) use.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    fn key_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn sample() -> DhchapKey {
        DhchapKey {
            hmac: 1,
            secret: (0u8..32).collect(),
        }
    }

    #[test]
    fn malformed_hash_id_error_does_not_echo_key_material() {
        let b64 = sample().to_text()["DHHC-1:01:".len()..].to_string();
        // The hash identifier field holds the base64 secret (a missing "01:").
        let text = format!("DHHC-1:{b64}");
        let e = DhchapKey::parse(&text).unwrap_err();
        assert_eq!(e, KeyFormatError::HashId);
        let shown = e.to_string();
        assert!(!shown.contains(b64.trim_end_matches(':')), "{shown}");
        assert_eq!(
            shown,
            "invalid key hash identifier (expected 00, 01, 02 or 03)"
        );
    }

    #[test]
    fn key_file_read_is_bounded_to_4096_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let ok = format!("{}\n", sample().to_text());
        let p = key_file(&dir, "ok", &ok);
        assert_eq!(read_key_file(&p), Ok(ok.clone()));
        // A valid key padded with whitespace past 4096 bytes used to parse (trailing
        // whitespace is ignored); the read is now bounded and refused.
        let big = format!("{ok}{}", " ".repeat(4097 - ok.len()));
        let p = key_file(&dir, "big", &big);
        assert_eq!(read_key_file(&p), Err(EFBIG));
        let exact = format!("{ok}{}", " ".repeat(4096 - ok.len()));
        let p = key_file(&dir, "exact", &exact);
        assert_eq!(read_key_file(&p).map(|t| t.len()), Ok(4096));
    }

    #[test]
    fn key_file_checks_the_opened_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let text = sample().to_text();
        let p = key_file(&dir, "k", &text);
        assert_eq!(read_key_file("relative/key"), Err(1));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_key_file(&p), Err(1));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        // As SPDK (stat/fopen follow links), a symbolic link to a good key file is read.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert_eq!(read_key_file(link.to_str().unwrap()), Ok(text));
        // A FIFO is refused at once (non-blocking open, then fstat: not a regular file).
        let fifo = dir.path().join("fifo");
        let st = std::process::Command::new("mkfifo")
            .args(["-m", "600", fifo.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(read_key_file(fifo.to_str().unwrap()), Err(1));
        assert_eq!(
            read_key_file(dir.path().join("none").to_str().unwrap()),
            Err(2)
        );
    }

    #[test]
    fn key_file_owned_by_another_user_is_refused() {
        if !rustix::process::getuid().is_root() {
            // Only root can give a file away; the check itself is exercised below as root.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = key_file(&dir, "k", &sample().to_text());
        std::os::unix::fs::chown(&p, Some(4242), None).unwrap();
        assert_eq!(read_key_file(&p), Err(1));
        assert_eq!(check_path(&p), Err(1));
    }
}
