//! NVMe in-band authentication, DH-HMAC-CHAP (NVMe Base 2.0, 8.13; SPDK `lib/nvmf/auth.c`,
//! Linux `drivers/nvme/target/fabrics-cmd-auth.c`), the controller side.
//!
//! A host added with a `dhchap_key` gets AUTHREQ.ATR set in every Connect response (admin and
//! I/O queues, as SPDK and the Linux target: each queue authenticates) and its queue answers
//! every command but Authentication Send/Receive with "Authentication Required" until the
//! transaction completes:
//!
//! ```text
//!  host                                   controller
//!  AUTH_SEND  AUTH_Negotiate       ──▶   picks the strongest allowed hash and DH group
//!  AUTH_RECV                       ◀──   DH-HMAC-CHAP_Challenge (C1, seqnum S1, g^x mod p)
//!  AUTH_SEND  DH-HMAC-CHAP_Reply   ──▶   checks R1 (and computes R2 when CVALID)
//!  AUTH_RECV                       ◀──   DH-HMAC-CHAP_Success1 (R2 when the host asked)
//!  AUTH_SEND  DH-HMAC-CHAP_Success2 ──▶  (bidirectional only) queue enabled
//! ```
//!
//! Any error makes the next AUTH_RECV answer AUTH_Failure1 with the reason code explanation,
//! after which the queue is disconnected (100 ms later, as SPDK, so the message reaches the
//! host); a transaction that stalls longer than the keep alive timeout (120 s without one) is
//! disconnected too. The host response is
//! `R1 = HMAC(Kh', Ca || S1 LE32 || T_ID LE16 || SC_C || "HostHost" || hostnqn || 0 || subnqn)`
//! and the controller response
//! `R2 = HMAC(Kc', C2a || S2 LE32 || T_ID LE16 || SC_C || "Controller" || subnqn || 0 || hostnqn)`
//! where `K'` is the secret transformed with `HMAC_hh(K, nqn || "NVMe-over-Fabrics")` (hostnqn
//! for the host key, subnqn for the controller key; no transformation for hh = 00) and the
//! augmented challenge `Ca = HMAC(H(g^xy mod p), C)` with a non-null DH group.
//!
//! The finite field arithmetic uses `num-bigint`'s `modpow`, which is **not constant-time**;
//! the private exponent is 512 random bits (RFC 7919 section 5.2 short exponent).

use crate::ctrlr::CtrlrShared;
use crate::keyring::DhchapKey;
use crate::poll_group::PgInner;
use crate::qpair::{QpairInner, Reply};
use crate::request::{DataBuf, Request};
use crate::subsystem::{HostKeys, SubsysSnap};
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use nvme::spec::fabrics::AuthCmd;
use nvme::spec::{FabricsCommandType, GenericStatus, Status};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Security protocol of NVMe in-band authentication.
pub const SECP_NVME: u8 = 0xe9;
/// Message type: common (negotiate, failures).
pub const AUTH_TYPE_COMMON: u8 = 0x00;
/// Message type: DH-HMAC-CHAP.
pub const AUTH_TYPE_DHCHAP: u8 = 0x01;
/// AUTH_Negotiate.
pub const AUTH_ID_NEGOTIATE: u8 = 0x00;
/// DH-HMAC-CHAP_Challenge.
pub const AUTH_ID_CHALLENGE: u8 = 0x01;
/// DH-HMAC-CHAP_Reply.
pub const AUTH_ID_REPLY: u8 = 0x02;
/// DH-HMAC-CHAP_Success1.
pub const AUTH_ID_SUCCESS1: u8 = 0x03;
/// DH-HMAC-CHAP_Success2.
pub const AUTH_ID_SUCCESS2: u8 = 0x04;
/// AUTH_Failure2 (host to controller).
pub const AUTH_ID_FAILURE2: u8 = 0xf0;
/// AUTH_Failure1 (controller to host).
pub const AUTH_ID_FAILURE1: u8 = 0xf1;
/// AUTH_Failure reason code: authentication failure.
pub const FAILURE_RC: u8 = 0x01;
/// Reason code explanation: authentication failed.
pub const FAIL_FAILED: u8 = 0x01;
/// Reason code explanation: authentication protocol not usable.
pub const FAIL_PROTOCOL_UNUSABLE: u8 = 0x02;
/// Reason code explanation: secure channel concatenation mismatch.
pub const FAIL_SCC_MISMATCH: u8 = 0x03;
/// Reason code explanation: hash function not usable.
pub const FAIL_HASH_UNUSABLE: u8 = 0x04;
/// Reason code explanation: DH group not usable.
pub const FAIL_DHGROUP_UNUSABLE: u8 = 0x05;
/// Reason code explanation: incorrect payload.
pub const FAIL_INCORRECT_PAYLOAD: u8 = 0x06;
/// Reason code explanation: incorrect protocol message.
pub const FAIL_INCORRECT_PROTOCOL_MESSAGE: u8 = 0x07;
/// Size of an AUTH_Negotiate protocol descriptor.
pub const DESCRIPTOR_SIZE: usize = 64;
/// Header size of Challenge, Reply, Success1 and the whole Success2.
pub const DHCHAP_HEADER_SIZE: usize = 16;
/// Size of an AUTH_Failure message.
pub const FAILURE_SIZE: usize = 8;
/// How long after AUTH_Failure1 is sent the queue is disconnected (SPDK).
pub const FAILURE1_DELAY: Duration = Duration::from_millis(100);
/// Transaction timeout without a keep alive timeout (SPDK `NVMF_AUTH_DEFAULT_KATO_US`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// DH-HMAC-CHAP hash functions (identifiers of NVMe Base 2.0 Figure 186).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256 (01h).
    Sha256,
    /// SHA-384 (02h).
    Sha384,
    /// SHA-512 (03h).
    Sha512,
}

impl Digest {
    /// From the wire identifier.
    pub fn from_id(id: u8) -> Option<Digest> {
        match id {
            1 => Some(Digest::Sha256),
            2 => Some(Digest::Sha384),
            3 => Some(Digest::Sha512),
            _ => None,
        }
    }
    /// From SPDK's name ("sha256", "sha384", "sha512").
    pub fn from_name(name: &str) -> Option<Digest> {
        match name {
            "sha256" => Some(Digest::Sha256),
            "sha384" => Some(Digest::Sha384),
            "sha512" => Some(Digest::Sha512),
            _ => None,
        }
    }
    /// The wire identifier.
    pub fn id(self) -> u8 {
        match self {
            Digest::Sha256 => 1,
            Digest::Sha384 => 2,
            Digest::Sha512 => 3,
        }
    }
    /// Output length in bytes (the challenge/response length HL).
    pub fn len(self) -> usize {
        match self {
            Digest::Sha256 => 32,
            Digest::Sha384 => 48,
            Digest::Sha512 => 64,
        }
    }
    /// SPDK's name ("sha256", ...).
    pub fn name(self) -> &'static str {
        match self {
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha512 => "sha512",
        }
    }
    /// Always false (a digest has a length); for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }
    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Digest::Sha256 => Sha256::digest(data).to_vec(),
            Digest::Sha384 => Sha384::digest(data).to_vec(),
            Digest::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
    /// `HMAC(key, parts[0] || parts[1] || ...)`.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length, so this never falls back; the fallback still
            // yields a MAC (over a hashed key) rather than a panic.
            let mut m = match <M as hmac::digest::KeyInit>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => <M as hmac::digest::KeyInit>::new(&Default::default()),
            };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Digest::Sha384 => run::<Hmac<Sha384>>(key, parts),
            Digest::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

/// DH groups (identifiers of NVMe Base 2.0 Figure 187).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhGroup {
    /// No DH exchange (00h).
    Null,
    /// ffdhe2048 (01h).
    Ffdhe2048,
    /// ffdhe3072 (02h).
    Ffdhe3072,
    /// ffdhe4096 (03h).
    Ffdhe4096,
    /// ffdhe6144 (04h).
    Ffdhe6144,
    /// ffdhe8192 (05h).
    Ffdhe8192,
}

impl DhGroup {
    /// From the wire identifier.
    pub fn from_id(id: u8) -> Option<DhGroup> {
        match id {
            0 => Some(DhGroup::Null),
            1 => Some(DhGroup::Ffdhe2048),
            2 => Some(DhGroup::Ffdhe3072),
            3 => Some(DhGroup::Ffdhe4096),
            4 => Some(DhGroup::Ffdhe6144),
            5 => Some(DhGroup::Ffdhe8192),
            _ => None,
        }
    }
    /// From SPDK's name ("null", "ffdhe2048", ...).
    pub fn from_name(name: &str) -> Option<DhGroup> {
        match name {
            "null" => Some(DhGroup::Null),
            "ffdhe2048" => Some(DhGroup::Ffdhe2048),
            "ffdhe3072" => Some(DhGroup::Ffdhe3072),
            "ffdhe4096" => Some(DhGroup::Ffdhe4096),
            "ffdhe6144" => Some(DhGroup::Ffdhe6144),
            "ffdhe8192" => Some(DhGroup::Ffdhe8192),
            _ => None,
        }
    }
    /// The wire identifier.
    pub fn id(self) -> u8 {
        match self {
            DhGroup::Null => 0,
            DhGroup::Ffdhe2048 => 1,
            DhGroup::Ffdhe3072 => 2,
            DhGroup::Ffdhe4096 => 3,
            DhGroup::Ffdhe6144 => 4,
            DhGroup::Ffdhe8192 => 5,
        }
    }
    /// SPDK's name ("null", "ffdhe2048", ...).
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Null => "null",
            DhGroup::Ffdhe2048 => "ffdhe2048",
            DhGroup::Ffdhe3072 => "ffdhe3072",
            DhGroup::Ffdhe4096 => "ffdhe4096",
            DhGroup::Ffdhe6144 => "ffdhe6144",
            DhGroup::Ffdhe8192 => "ffdhe8192",
        }
    }
    /// The group's prime; None for the null group.
    pub fn prime(self) -> Option<BigUint> {
        let hex = match self {
            DhGroup::Null => return None,
            DhGroup::Ffdhe2048 => FFDHE2048,
            DhGroup::Ffdhe3072 => FFDHE3072,
            DhGroup::Ffdhe4096 => FFDHE4096,
            DhGroup::Ffdhe6144 => FFDHE6144,
            DhGroup::Ffdhe8192 => FFDHE8192,
        };
        BigUint::parse_bytes(hex.as_bytes(), 16)
    }
    /// Size of the prime (and of a public value) in bytes; 0 for the null group.
    pub fn size(self) -> usize {
        match self {
            DhGroup::Null => 0,
            DhGroup::Ffdhe2048 => 256,
            DhGroup::Ffdhe3072 => 384,
            DhGroup::Ffdhe4096 => 512,
            DhGroup::Ffdhe6144 => 768,
            DhGroup::Ffdhe8192 => 1024,
        }
    }
}

/// Bit mask (bit = wire ID) of the digests named in `names` (nvmf_set_config
/// `dhchap_digests`); unknown names are ignored.
pub fn digest_mask(names: &[String]) -> u32 {
    names
        .iter()
        .filter_map(|n| Digest::from_name(n))
        .fold(0, |m, d| m | (1 << d.id()))
}

/// Bit mask (bit = wire ID) of the DH groups named in `names` (`dhchap_dhgroups`).
pub fn dhgroup_mask(names: &[String]) -> u32 {
    names
        .iter()
        .filter_map(|n| DhGroup::from_name(n))
        .fold(0, |m, g| m | (1 << g.id()))
}

/// Why a DH exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhError {
    /// The group is null (no exchange).
    #[error("null DH group has no key")]
    NullGroup,
    /// The random source failed.
    #[error("random source: {0}")]
    Random(String),
    /// The peer's public value has the wrong length or is outside 2..p-2.
    #[error("invalid peer public value")]
    BadPeerValue,
}

/// One side's ephemeral finite field DH key.
pub struct DhKey {
    group: DhGroup,
    p: BigUint,
    x: BigUint,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhKey").field("group", &self.group).finish()
    }
}

fn pad_be(v: &BigUint, len: usize) -> Vec<u8> {
    let b = v.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

impl DhKey {
    /// A new key pair: 512 random private bits, public value g^x mod p (g = 2).
    pub fn generate(group: DhGroup) -> Result<DhKey, DhError> {
        let mut x = [0u8; 64];
        random_bytes(&mut x).map_err(|e| DhError::Random(e.to_string()))?;
        x[0] |= 0x80;
        Self::from_private(group, &x)
    }

    /// A key pair from a given private exponent (big-endian), for known-answer tests.
    pub fn from_private(group: DhGroup, x: &[u8]) -> Result<DhKey, DhError> {
        let p = group.prime().ok_or(DhError::NullGroup)?;
        let x = BigUint::from_bytes_be(x);
        let public = pad_be(&BigUint::from(2u32).modpow(&x, &p), group.size());
        Ok(DhKey {
            group,
            p,
            x,
            public,
        })
    }

    /// The public value, big-endian, padded to the prime's size.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret peer^x mod p, big-endian, padded to the prime's size. The peer's
    /// value must be the prime's size and within 2..p-2.
    pub fn shared_secret(&self, peer: &[u8]) -> Result<Vec<u8>, DhError> {
        if peer.len() != self.group.size() {
            return Err(DhError::BadPeerValue);
        }
        let y = BigUint::from_bytes_be(peer);
        let one = BigUint::from(1u32);
        if y <= one || y >= &self.p - &one {
            return Err(DhError::BadPeerValue);
        }
        Ok(pad_be(&y.modpow(&self.x, &self.p), self.group.size()))
    }
}

/// The secret used as HMAC key (NVMe Base 2.0 8.13.5.8, Linux `nvme_auth_transform_key`):
/// as is for hash ID 00, else `HMAC_hh(secret, nqn || "NVMe-over-Fabrics")`.
pub fn transform_key(key: &DhchapKey, nqn: &str) -> Vec<u8> {
    match Digest::from_id(key.hmac) {
        None => key.secret.clone(),
        Some(d) => d.hmac(&key.secret, &[nqn.as_bytes(), b"NVMe-over-Fabrics"]),
    }
}

/// The augmented challenge `HMAC(H(dh_secret), challenge)` (Linux
/// `nvme_auth_augmented_challenge`); the challenge itself without a DH secret.
pub fn augment_challenge(digest: Digest, challenge: &[u8], dh_secret: Option<&[u8]>) -> Vec<u8> {
    match dh_secret {
        None => challenge.to_vec(),
        Some(z) => digest.hmac(&digest.hash(z), &[challenge]),
    }
}

/// A DH-HMAC-CHAP response: `HMAC(K', Ca || seqnum LE32 || tid LE16 || scc || role || nqn1 ||
/// 00h || nqn2)` with `K' = transform_key(key, nqn1)`. The host computes R1 with role
/// "HostHost", nqn1 = hostnqn, nqn2 = subnqn; the controller R2 with role "Controller",
/// nqn1 = subnqn, nqn2 = hostnqn.
#[allow(clippy::too_many_arguments)]
pub fn dhchap_response(
    digest: Digest,
    key: &DhchapKey,
    role: &str,
    seqnum: u32,
    tid: u16,
    scc: u8,
    nqn1: &str,
    nqn2: &str,
    dh_secret: Option<&[u8]>,
    challenge: &[u8],
) -> Vec<u8> {
    let k = transform_key(key, nqn1);
    let ca = augment_challenge(digest, challenge, dh_secret);
    digest.hmac(
        &k,
        &[
            &ca,
            &seqnum.to_le_bytes(),
            &tid.to_le_bytes(),
            &[scc],
            role.as_bytes(),
            nqn1.as_bytes(),
            &[0],
            nqn2.as_bytes(),
        ],
    )
}

/// Where a queue's authentication transaction stands (SPDK `nvmf_qpair_auth_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthState {
    /// Waiting for AUTH_Negotiate.
    Negotiate,
    /// Waiting for the AUTH_RECV that fetches the challenge.
    Challenge,
    /// Waiting for DH-HMAC-CHAP_Reply.
    Reply,
    /// Waiting for the AUTH_RECV that fetches Success1.
    Success1,
    /// Waiting for DH-HMAC-CHAP_Success2 (or AUTH_Failure2).
    Success2,
    /// The next AUTH_RECV answers AUTH_Failure1.
    Failure1,
    /// Authenticated.
    Completed,
    /// Failed: the queue is being disconnected.
    Error,
}

impl AuthState {
    /// SPDK's name of the state (`nvmf_auth_get_state_name`).
    pub fn name(self) -> &'static str {
        match self {
            AuthState::Negotiate => "negotiate",
            AuthState::Challenge => "challenge",
            AuthState::Reply => "reply",
            AuthState::Success1 => "success1",
            AuthState::Success2 => "success2",
            AuthState::Failure1 => "failure1",
            AuthState::Completed => "completed",
            AuthState::Error => "error",
        }
    }
}

/// The subsystem-independent sequence number counter (SPDK keeps one per subsystem, seeded
/// at random; S1 only has to differ between transactions).
static SEQNUM: AtomicU32 = AtomicU32::new(0);

fn next_seqnum() -> Result<u32, ()> {
    if SEQNUM.load(Ordering::Acquire) == 0 {
        let mut b = [0u8; 4];
        random_bytes(&mut b).map_err(|_| ())?;
        let _ = SEQNUM.compare_exchange(
            0,
            u32::from_le_bytes(b),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
    let mut v = SEQNUM.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
    if v == 0 {
        v = SEQNUM.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
    }
    Ok(v)
}

/// Compares a received DH-HMAC-CHAP response with the expected one in constant time
/// (`subtle`): the time taken does not depend on where the values differ.
pub fn responses_equal(expected: &[u8], received: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(expected.ct_eq(received))
}

/// What a queue needs to authenticate its host.
#[derive(Clone, Debug)]
pub(crate) struct AuthParams {
    pub hostnqn: String,
    pub subnqn: String,
    pub keys: Arc<HostKeys>,
    /// Allowed digest IDs (bit per ID).
    pub digests: u32,
    /// Allowed DH group IDs (bit per ID).
    pub dhgroups: u32,
    /// Time allowed between two steps.
    pub timeout: Duration,
}

/// One queue's authentication transaction.
#[derive(Debug)]
pub(crate) struct Session {
    pub params: AuthParams,
    pub state: AuthState,
    pub tid: u16,
    digest: Digest,
    dhgroup: DhGroup,
    dhkey: Option<DhKey>,
    seqnum: u32,
    cval: Vec<u8>,
    /// R2 to send in Success1 when the host asked to authenticate the controller.
    ctrl_response: Option<Vec<u8>>,
    fail_reason: u8,
    /// AUTH_Negotiate picked the digest and group.
    digest_chosen: bool,
    /// When the current step times out, or (state Error) when to disconnect.
    pub deadline: env::Ticks,
}

/// How an Authentication Send/Receive ends.
#[derive(Debug)]
pub(crate) enum AuthReply {
    /// Success; with the data to return for a receive.
    Ok(Option<Vec<u8>>),
    /// A command error (SPDK completes with Invalid Field and DNR).
    InvalidField,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Session {
    pub fn new(params: AuthParams) -> Session {
        let deadline = env::now() + params.timeout;
        Session {
            params,
            state: AuthState::Negotiate,
            tid: 0,
            digest: Digest::Sha256,
            dhgroup: DhGroup::Null,
            dhkey: None,
            seqnum: 0,
            cval: Vec::new(),
            ctrl_response: None,
            fail_reason: 0,
            digest_chosen: false,
            deadline,
        }
    }

    /// The `auth` object of `nvmf_subsystem_get_qpairs` (SPDK `nvmf_qpair_auth_dump`).
    pub fn json(&self) -> serde_json::Value {
        let (digest, dhgroup) = if self.digest_chosen {
            (self.digest.name(), self.dhgroup.name())
        } else {
            ("unknown", "unknown")
        };
        serde_json::json!({"state": self.state.name(), "digest": digest, "dhgroup": dhgroup})
    }

    fn rearm(&mut self) {
        self.deadline = env::now() + self.params.timeout;
    }

    /// SPDK `nvmf_auth_request_fail1`: the command succeeds, the next receive answers
    /// AUTH_Failure1 with `reason`.
    fn fail1(&mut self, reason: u8, why: &str) -> AuthReply {
        tracing::error!(
            hostnqn = %self.params.hostnqn,
            subnqn = %self.params.subnqn,
            reason,
            "DH-HMAC-CHAP authentication failed: {why}"
        );
        self.state = AuthState::Failure1;
        self.fail_reason = reason;
        AuthReply::Ok(None)
    }

    /// Authentication Send carrying `msg` (SPDK `nvmf_auth_send_exec`).
    pub fn send(&mut self, msg: &[u8]) -> AuthReply {
        if msg.len() < 4 {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "message shorter than its header");
        }
        match (msg[0], msg[1]) {
            (AUTH_TYPE_COMMON, AUTH_ID_NEGOTIATE) => self.negotiate(msg),
            (AUTH_TYPE_COMMON, AUTH_ID_FAILURE2) => self.failure2(msg),
            (AUTH_TYPE_DHCHAP, AUTH_ID_REPLY) => self.reply(msg),
            (AUTH_TYPE_DHCHAP, AUTH_ID_SUCCESS2) => self.success2(msg),
            (t, id) => self.fail1(
                FAIL_INCORRECT_PROTOCOL_MESSAGE,
                &format!("unexpected message type {t:#x} id {id:#x}"),
            ),
        }
    }

    fn negotiate(&mut self, msg: &[u8]) -> AuthReply {
        if self.state != AuthState::Negotiate {
            return self.fail1(FAIL_INCORRECT_PROTOCOL_MESSAGE, "negotiate out of order");
        }
        if msg.len() >= 6 {
            self.tid = u16_at(msg, 4);
        }
        if msg.len() < 8 || msg.len() != 8 + usize::from(msg[7]) * DESCRIPTOR_SIZE {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "negotiate length");
        }
        if msg[6] != 0 {
            return self.fail1(FAIL_SCC_MISMATCH, "secure channel concatenation requested");
        }
        let Some(desc) = msg[8..]
            .chunks_exact(DESCRIPTOR_SIZE)
            .find(|d| d[0] == AUTH_TYPE_DHCHAP)
        else {
            return self.fail1(FAIL_PROTOCOL_UNUSABLE, "no DH-HMAC-CHAP descriptor");
        };
        let (halen, dhlen) = (usize::from(desc[2]), usize::from(desc[3]));
        if halen > 30 || dhlen > 30 {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "descriptor list lengths");
        }
        let hashes = &desc[4..4 + halen];
        let groups = &desc[34..34 + dhlen];
        let digest = [Digest::Sha512, Digest::Sha384, Digest::Sha256]
            .into_iter()
            .find(|d| self.params.digests & (1 << d.id()) != 0 && hashes.contains(&d.id()));
        let Some(digest) = digest else {
            return self.fail1(FAIL_HASH_UNUSABLE, "no usable hash function");
        };
        let group = [
            DhGroup::Ffdhe8192,
            DhGroup::Ffdhe6144,
            DhGroup::Ffdhe4096,
            DhGroup::Ffdhe3072,
            DhGroup::Ffdhe2048,
            DhGroup::Null,
        ]
        .into_iter()
        .find(|g| self.params.dhgroups & (1 << g.id()) != 0 && groups.contains(&g.id()));
        let Some(group) = group else {
            return self.fail1(FAIL_DHGROUP_UNUSABLE, "no usable DH group");
        };
        tracing::debug!(?digest, ?group, tid = self.tid, "DH-HMAC-CHAP negotiated");
        self.digest = digest;
        self.dhgroup = group;
        self.digest_chosen = true;
        self.rearm();
        self.state = AuthState::Challenge;
        AuthReply::Ok(None)
    }

    fn reply(&mut self, msg: &[u8]) -> AuthReply {
        if self.state != AuthState::Reply {
            return self.fail1(FAIL_INCORRECT_PROTOCOL_MESSAGE, "reply out of order");
        }
        if msg.len() < DHCHAP_HEADER_SIZE {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "reply shorter than its header");
        }
        let hl = self.digest.len();
        let dhvlen = usize::from(u16_at(msg, 10));
        if usize::from(msg[6]) != hl {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "hash length mismatch");
        }
        if dhvlen % 4 != 0 {
            return self.fail1(
                FAIL_INCORRECT_PAYLOAD,
                "DH value length not a multiple of 4",
            );
        }
        if msg.len() != DHCHAP_HEADER_SIZE + 2 * hl + dhvlen {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "reply length");
        }
        if u16_at(msg, 4) != self.tid {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "transaction ID mismatch");
        }
        let cvalid = msg[8];
        let seqnum2 = u32_at(msg, 12);
        if cvalid > 1 {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "CVALID not 0 or 1");
        }
        if cvalid == 1 && seqnum2 == 0 {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "sequence number 0 with CVALID");
        }
        if self.dhgroup == DhGroup::Null && dhvlen != 0 {
            // As the Linux target (nvmet_auth_reply): a DH value without a DH group.
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "DH value with the null DH group");
        }
        let rval = &msg[DHCHAP_HEADER_SIZE..DHCHAP_HEADER_SIZE + hl];
        let c2 = &msg[DHCHAP_HEADER_SIZE + hl..DHCHAP_HEADER_SIZE + 2 * hl];
        let dhv = &msg[DHCHAP_HEADER_SIZE + 2 * hl..];
        let key = match self.params.keys.dhchap_key.as_ref().map(|k| k.dhchap()) {
            Some(Ok(k)) => k,
            Some(Err(e)) => return self.fail1(FAIL_FAILED, &format!("host key: {e}")),
            None => return self.fail1(FAIL_FAILED, "host has no DH-HMAC-CHAP key"),
        };
        let secret = match &self.dhkey {
            None => None,
            Some(dh) => match dh.shared_secret(dhv) {
                Ok(z) => Some(z),
                Err(e) => return self.fail1(FAIL_FAILED, &format!("DH secret: {e}")),
            },
        };
        let expect = dhchap_response(
            self.digest,
            &key,
            "HostHost",
            self.seqnum,
            self.tid,
            0,
            &self.params.hostnqn,
            &self.params.subnqn,
            secret.as_deref(),
            &self.cval,
        );
        if !responses_equal(&expect, rval) {
            return self.fail1(FAIL_FAILED, "challenge response mismatch");
        }
        if cvalid == 1 {
            let ckey = match self
                .params
                .keys
                .dhchap_ctrlr_key
                .as_ref()
                .map(|k| k.dhchap())
            {
                Some(Ok(k)) => k,
                Some(Err(e)) => return self.fail1(FAIL_FAILED, &format!("controller key: {e}")),
                None => return self.fail1(FAIL_FAILED, "missing DH-HMAC-CHAP controller key"),
            };
            self.ctrl_response = Some(dhchap_response(
                self.digest,
                &ckey,
                "Controller",
                seqnum2,
                self.tid,
                0,
                &self.params.subnqn,
                &self.params.hostnqn,
                secret.as_deref(),
                c2,
            ));
        }
        self.rearm();
        self.state = AuthState::Success1;
        AuthReply::Ok(None)
    }

    fn success2(&mut self, msg: &[u8]) -> AuthReply {
        if self.state != AuthState::Success2 {
            return self.fail1(FAIL_INCORRECT_PROTOCOL_MESSAGE, "success2 out of order");
        }
        if msg.len() != DHCHAP_HEADER_SIZE {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "success2 length");
        }
        if u16_at(msg, 4) != self.tid {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "transaction ID mismatch");
        }
        tracing::info!(hostnqn = %self.params.hostnqn, subnqn = %self.params.subnqn,
            "DH-HMAC-CHAP: host authenticated the controller");
        self.state = AuthState::Completed;
        AuthReply::Ok(None)
    }

    fn failure2(&mut self, msg: &[u8]) -> AuthReply {
        if self.state != AuthState::Success2 {
            return self.fail1(FAIL_INCORRECT_PROTOCOL_MESSAGE, "failure2 out of order");
        }
        if msg.len() != FAILURE_SIZE {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "failure2 length");
        }
        if u16_at(msg, 4) != self.tid {
            return self.fail1(FAIL_INCORRECT_PAYLOAD, "transaction ID mismatch");
        }
        tracing::error!(hostnqn = %self.params.hostnqn, subnqn = %self.params.subnqn,
            rc = msg[6], rce = msg[7], "host failed to authenticate the controller");
        self.state = AuthState::Error;
        self.deadline = env::now();
        AuthReply::Ok(None)
    }

    /// Authentication Receive with allocation length `al` (SPDK `nvmf_auth_recv_exec`).
    pub fn recv(&mut self, al: usize) -> AuthReply {
        let r = match self.state {
            AuthState::Challenge => self.challenge(al),
            AuthState::Success1 => self.success1(al),
            AuthState::Failure1 => Err(self.fail_reason),
            _ => Err(FAIL_INCORRECT_PROTOCOL_MESSAGE),
        };
        match r {
            Ok(m) => AuthReply::Ok(Some(m)),
            Err(reason) => self.failure1(al, reason),
        }
    }

    fn failure1(&mut self, al: usize, reason: u8) -> AuthReply {
        self.state = AuthState::Error;
        self.deadline = env::now() + FAILURE1_DELAY;
        if al < FAILURE_SIZE {
            tracing::error!(al, "AUTH_RECV buffer too small for AUTH_Failure1");
            self.deadline = env::now();
            return AuthReply::InvalidField;
        }
        tracing::error!(hostnqn = %self.params.hostnqn, subnqn = %self.params.subnqn, reason,
            "sending AUTH_Failure1; the queue will be disconnected");
        let mut m = vec![0u8; FAILURE_SIZE];
        m[0] = AUTH_TYPE_COMMON;
        m[1] = AUTH_ID_FAILURE1;
        m[4..6].copy_from_slice(&self.tid.to_le_bytes());
        m[6] = FAILURE_RC;
        m[7] = reason;
        AuthReply::Ok(Some(m))
    }

    fn challenge(&mut self, al: usize) -> Result<Vec<u8>, u8> {
        let hl = self.digest.len();
        // The public value is padded to the prime's size: check the buffer before paying
        // for the key generation (a modpow; ffdhe8192 is costly on the reactor).
        let dhvlen = self.dhgroup.size();
        let len = DHCHAP_HEADER_SIZE + hl + dhvlen;
        if al < len {
            tracing::error!(al, len, "AUTH_RECV buffer too small for the challenge");
            return Err(FAIL_INCORRECT_PAYLOAD);
        }
        self.dhkey = None;
        if self.dhgroup != DhGroup::Null {
            match DhKey::generate(self.dhgroup) {
                Ok(k) => self.dhkey = Some(k),
                Err(e) => {
                    tracing::error!(error = %e, "failed to generate DH key");
                    return Err(FAIL_FAILED);
                }
            }
        }
        let dhv = self
            .dhkey
            .as_ref()
            .map(|k| k.public().to_vec())
            .unwrap_or_default();
        if dhv.len() != dhvlen {
            tracing::error!(
                len = dhv.len(),
                dhvlen,
                "DH public value of unexpected size"
            );
            return Err(FAIL_FAILED);
        }
        self.seqnum = next_seqnum().map_err(|()| FAIL_FAILED)?;
        let mut c = vec![0u8; hl];
        random_bytes(&mut c).map_err(|_| FAIL_FAILED)?;
        self.cval = c;
        let mut m = vec![0u8; len];
        m[0] = AUTH_TYPE_DHCHAP;
        m[1] = AUTH_ID_CHALLENGE;
        m[4..6].copy_from_slice(&self.tid.to_le_bytes());
        m[6] = hl as u8;
        m[8] = self.digest.id();
        m[9] = self.dhgroup.id();
        m[10..12].copy_from_slice(&(dhv.len() as u16).to_le_bytes());
        m[12..16].copy_from_slice(&self.seqnum.to_le_bytes());
        m[16..16 + hl].copy_from_slice(&self.cval);
        m[16 + hl..].copy_from_slice(&dhv);
        self.rearm();
        self.state = AuthState::Reply;
        Ok(m)
    }

    fn success1(&mut self, al: usize) -> Result<Vec<u8>, u8> {
        let hl = self.digest.len();
        let rlen = if self.ctrl_response.is_some() { hl } else { 0 };
        let len = DHCHAP_HEADER_SIZE + rlen;
        if al < len {
            tracing::error!(al, len, "AUTH_RECV buffer too small for success1");
            return Err(FAIL_INCORRECT_PAYLOAD);
        }
        let mut m = vec![0u8; len];
        m[0] = AUTH_TYPE_DHCHAP;
        m[1] = AUTH_ID_SUCCESS1;
        m[4..6].copy_from_slice(&self.tid.to_le_bytes());
        // The Linux host expects HL whether or not RVALID is set (as SPDK does).
        m[6] = hl as u8;
        tracing::info!(hostnqn = %self.params.hostnqn, subnqn = %self.params.subnqn,
            "DH-HMAC-CHAP: host authenticated");
        match self.ctrl_response.take() {
            Some(r2) => {
                m[8] = 1;
                m[16..].copy_from_slice(&r2);
                self.rearm();
                self.state = AuthState::Success2;
            }
            None => self.state = AuthState::Completed,
        }
        Ok(m)
    }
}

/// Runs an Authentication Send or Receive on `q` (SPDK `nvmf_auth_request_exec`).
pub(crate) fn exec(pg: &PgInner, q: &Rc<QpairInner>, req: &Request) -> Reply {
    let cmd = AuthCmd::from_sqe(&req.sqe);
    let send = req.sqe.fctype() == FabricsCommandType::AUTHENTICATION_SEND;
    let len = cmd.length.get();
    if cmd.secp != SECP_NVME || cmd.spsp0 != 1 || cmd.spsp1 != 1 || len != req.length {
        tracing::error!(
            secp = cmd.secp,
            spsp0 = cmd.spsp0,
            spsp1 = cmd.spsp1,
            len,
            req_len = req.length,
            "invalid authentication command"
        );
        return Reply::status(Status::from(GenericStatus::INVALID_FIELD).with_dnr());
    }
    let mut slot = q.auth.borrow_mut();
    if slot
        .as_ref()
        .is_none_or(|s| s.state == AuthState::Completed)
    {
        // Re-authentication of an enabled queue (SPDK `nvmf_auth_check_state`).
        match auth_params(pg, q) {
            Some(p) => *slot = Some(Session::new(p)),
            None => {
                tracing::error!("authentication command on a queue without a controller");
                return Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into());
            }
        }
    }
    let Some(s) = slot.as_mut() else {
        return Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into());
    };
    if s.state == AuthState::Error {
        return Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into());
    }
    let r = if send {
        let mut msg = vec![0u8; (len as usize).min(req.data.as_ref().map_or(0, |d| d.total_len()))];
        if let Some(d) = &req.data {
            d.copy_to_slice_at(0, &mut msg);
        }
        s.send(&msg)
    } else {
        s.recv(len as usize)
    };
    if s.state == AuthState::Completed {
        // Kept for `nvmf_subsystem_get_qpairs` ("auth" object), as SPDK.
        q.auth_pending.set(false);
    }
    match r {
        AuthReply::Ok(None) => Reply::status(Status::SUCCESS),
        AuthReply::Ok(Some(m)) => Reply::status(Status::SUCCESS).data(DataBuf::from_vec(m)),
        AuthReply::InvalidField => {
            Reply::status(Status::from(GenericStatus::INVALID_FIELD).with_dnr())
        }
    }
}

/// The authentication parameters of `q`'s host (None when the queue has no controller or
/// its subsystem is gone).
pub(crate) fn auth_params(pg: &PgInner, q: &QpairInner) -> Option<AuthParams> {
    let shared = q.ctrlr.borrow().clone()?;
    let snap = pg.subsystem(&shared.subnqn)?;
    Some(params_for(pg, &shared, &snap))
}

/// The authentication parameters of controller `shared`'s host in subsystem `snap`.
pub(crate) fn params_for(pg: &PgInner, shared: &CtrlrShared, snap: &SubsysSnap) -> AuthParams {
    let view = pg.view();
    // The controller's KATO for every queue, admin or I/O (SPDK `nvmf_auth_rearm_poller`
    // uses `ctrlr->feat.keep_alive_timer`).
    let kato = shared.kato_ms.load(Ordering::Acquire);
    AuthParams {
        hostnqn: shared.hostnqn.clone(),
        subnqn: shared.subnqn.clone(),
        keys: snap
            .host_keys
            .get(&shared.hostnqn)
            .cloned()
            .unwrap_or_default(),
        digests: view.dhchap_digests,
        dhgroups: view.dhchap_dhgroups,
        timeout: if kato > 0 {
            Duration::from_millis(u64::from(kato))
        } else {
            DEFAULT_TIMEOUT
        },
    }
}

/// True when `q` should be disconnected at `now`: its authentication failed (AUTH_Failure1
/// had its delay) or a step timed out. A re-authentication of an enabled queue that times
/// out only ends the transaction (SPDK).
pub(crate) fn poll(q: &QpairInner, now: env::Ticks) -> bool {
    let mut slot = q.auth.borrow_mut();
    let Some(s) = slot.as_ref() else {
        return false;
    };
    if s.state == AuthState::Completed || now < s.deadline {
        return false;
    }
    if s.state != AuthState::Error && !q.auth_pending.get() {
        tracing::warn!(hostnqn = %s.params.hostnqn, "re-authentication timed out");
        *slot = None;
        return false;
    }
    if s.state != AuthState::Error {
        tracing::error!(
            hostnqn = %s.params.hostnqn,
            subnqn = %s.params.subnqn,
            qid = q.qid.get(),
            "authentication timed out; disconnecting"
        );
    }
    true
}

/// RFC 7919 Appendix A ffdhe2048 prime (generator 2).
const FFDHE2048: &str = concat!(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695",
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A",
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935",
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A",
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4",
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61",
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005",
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B423861285C97FFFFFFFFFFFFFFFF",
);

/// RFC 7919 Appendix A ffdhe3072 prime (generator 2).
const FFDHE3072: &str = concat!(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695",
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A",
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935",
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A",
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4",
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61",
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005",
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B",
    "BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C",
    "AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF",
    "5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E",
    "0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B66C62E37FFFFFFFFFFFFFFFF",
);

/// RFC 7919 Appendix A ffdhe4096 prime (generator 2).
const FFDHE4096: &str = concat!(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695",
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A",
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935",
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A",
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4",
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61",
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005",
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B",
    "BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C",
    "AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF",
    "5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E",
    "0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB",
    "7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A",
    "7135C886EFB4318AED6A1E012D9E6832A907600A918130C46DC778F971AD0038",
    "092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF",
    "8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E655F6AFFFFFFFFFFFFFFFF",
);

/// RFC 7919 Appendix A ffdhe6144 prime (generator 2).
const FFDHE6144: &str = concat!(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695",
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A",
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935",
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A",
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4",
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61",
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005",
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B",
    "BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C",
    "AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF",
    "5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E",
    "0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB",
    "7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A",
    "7135C886EFB4318AED6A1E012D9E6832A907600A918130C46DC778F971AD0038",
    "092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF",
    "8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E0DD9020BFD64B645036C7A",
    "4E677D2C38532A3A23BA4442CAF53EA63BB454329B7624C8917BDD64B1C0FD4C",
    "B38E8C334C701C3ACDAD0657FCCFEC719B1F5C3E4E46041F388147FB4CFDB477",
    "A52471F7A9A96910B855322EDB6340D8A00EF092350511E30ABEC1FFF9E3A26E",
    "7FB29F8C183023C3587E38DA0077D9B4763E4E4B94B2BBC194C6651E77CAF992",
    "EEAAC0232A281BF6B3A739C1226116820AE8DB5847A67CBEF9C9091B462D538C",
    "D72B03746AE77F5E62292C311562A846505DC82DB854338AE49F5235C95B9117",
    "8CCF2DD5CACEF403EC9D1810C6272B045B3B71F9DC6B80D63FDD4A8E9ADB1E69",
    "62A69526D43161C1A41D570D7938DAD4A40E329CD0E40E65FFFFFFFFFFFFFFFF",
);

/// RFC 7919 Appendix A ffdhe8192 prime (generator 2).
const FFDHE8192: &str = concat!(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695",
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A",
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935",
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A",
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4",
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61",
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005",
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B",
    "BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C",
    "AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF",
    "5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E",
    "0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB",
    "7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A",
    "7135C886EFB4318AED6A1E012D9E6832A907600A918130C46DC778F971AD0038",
    "092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF",
    "8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E0DD9020BFD64B645036C7A",
    "4E677D2C38532A3A23BA4442CAF53EA63BB454329B7624C8917BDD64B1C0FD4C",
    "B38E8C334C701C3ACDAD0657FCCFEC719B1F5C3E4E46041F388147FB4CFDB477",
    "A52471F7A9A96910B855322EDB6340D8A00EF092350511E30ABEC1FFF9E3A26E",
    "7FB29F8C183023C3587E38DA0077D9B4763E4E4B94B2BBC194C6651E77CAF992",
    "EEAAC0232A281BF6B3A739C1226116820AE8DB5847A67CBEF9C9091B462D538C",
    "D72B03746AE77F5E62292C311562A846505DC82DB854338AE49F5235C95B9117",
    "8CCF2DD5CACEF403EC9D1810C6272B045B3B71F9DC6B80D63FDD4A8E9ADB1E69",
    "62A69526D43161C1A41D570D7938DAD4A40E329CCFF46AAA36AD004CF600C838",
    "1E425A31D951AE64FDB23FCEC9509D43687FEB69EDD1CC5E0B8CC3BDF64B10EF",
    "86B63142A3AB8829555B2F747C932665CB2C0F1CC01BD70229388839D2AF05E4",
    "54504AC78B7582822846C0BA35C35F5C59160CC046FD8251541FC68C9C86B022",
    "BB7099876A460E7451A8A93109703FEE1C217E6C3826E52C51AA691E0E423CFC",
    "99E9E31650C1217B624816CDAD9A95F9D5B8019488D9C0A0A1FE3075A577E231",
    "83F81D4A3F2FA4571EFC8CE0BA8A4FE8B6855DFE72B0A66EDED2FBABFBE58A30",
    "FAFABE1C5D71A87E2F741EF8C1FE86FEA6BBFDE530677F0D97D11D49F7A8443D",
    "0822E506A9F4614E011E2A94838FF88CD68C8BB7C5C6424CFFFFFFFFFFFFFFFF",
);

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(AuthParams {
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:host".into(),
            subnqn: "nqn.2016-06.io.spdk:cnode1".into(),
            keys: Arc::new(HostKeys::default()),
            digests: u32::MAX,
            dhgroups: u32::MAX,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    fn negotiate(s: &mut Session, group: DhGroup) {
        let mut m = vec![0u8; 8 + DESCRIPTOR_SIZE];
        m[0] = AUTH_TYPE_COMMON;
        m[1] = AUTH_ID_NEGOTIATE;
        m[4..6].copy_from_slice(&7u16.to_le_bytes());
        m[7] = 1;
        m[8] = AUTH_TYPE_DHCHAP;
        m[10] = 1;
        m[11] = 1;
        m[12] = Digest::Sha256.id();
        m[8 + 34] = group.id();
        assert!(matches!(s.send(&m), AuthReply::Ok(None)));
        assert_eq!(s.state, AuthState::Challenge);
    }

    #[test]
    fn response_comparison_is_constant_time_equality() {
        assert!(responses_equal(&[1, 2, 3], &[1, 2, 3]));
        assert!(!responses_equal(&[1, 2, 3], &[1, 2, 4]));
        assert!(!responses_equal(&[1, 2, 3], &[9, 2, 3]));
        assert!(!responses_equal(&[1, 2, 3], &[1, 2]));
        assert!(!responses_equal(&[1, 2, 3], &[]));
    }

    #[test]
    fn undersized_challenge_buffer_fails_before_generating_a_dh_key() {
        let mut s = session();
        negotiate(&mut s, DhGroup::Ffdhe8192);
        // Header + SHA-256 challenge fit, the 1024 byte public value does not.
        let AuthReply::Ok(Some(m)) = s.recv(DHCHAP_HEADER_SIZE + 32 + 1023) else {
            panic!("expected AUTH_Failure1");
        };
        assert_eq!((m[1], m[7]), (AUTH_ID_FAILURE1, FAIL_INCORRECT_PAYLOAD));
        assert!(s.dhkey.is_none(), "a DH key was generated for nothing");
        assert_eq!(s.state, AuthState::Error);
    }

    #[test]
    fn challenge_with_exact_buffer_carries_the_public_value() {
        let mut s = session();
        negotiate(&mut s, DhGroup::Ffdhe2048);
        let AuthReply::Ok(Some(m)) = s.recv(DHCHAP_HEADER_SIZE + 32 + 256) else {
            panic!("expected the challenge");
        };
        assert_eq!(
            (m[1], m.len()),
            (AUTH_ID_CHALLENGE, DHCHAP_HEADER_SIZE + 32 + 256)
        );
        assert_eq!(u16_at(&m, 10), 256);
        assert_eq!(&m[48..], s.dhkey.as_ref().unwrap().public());
    }

    #[test]
    fn dh_value_with_null_group_is_incorrect_payload() {
        let mut s = session();
        negotiate(&mut s, DhGroup::Null);
        let AuthReply::Ok(Some(c)) = s.recv(DHCHAP_HEADER_SIZE + 32) else {
            panic!("expected the challenge");
        };
        assert_eq!(u16_at(&c, 10), 0);
        let mut r = vec![0u8; DHCHAP_HEADER_SIZE + 2 * 32 + 4];
        r[0] = AUTH_TYPE_DHCHAP;
        r[1] = AUTH_ID_REPLY;
        r[4..6].copy_from_slice(&7u16.to_le_bytes());
        r[6] = 32;
        r[10..12].copy_from_slice(&4u16.to_le_bytes());
        assert!(matches!(s.send(&r), AuthReply::Ok(None)));
        assert_eq!(s.state, AuthState::Failure1);
        let AuthReply::Ok(Some(f)) = s.recv(FAILURE_SIZE) else {
            panic!("expected AUTH_Failure1");
        };
        assert_eq!(
            (f[1], f[6], f[7]),
            (AUTH_ID_FAILURE1, FAILURE_RC, FAIL_INCORRECT_PAYLOAD)
        );
    }
}
