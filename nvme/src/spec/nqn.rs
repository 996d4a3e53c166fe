//! NVMe Qualified Names and fixed-size string fields (NVMe Base 2.0, 4.5 "NVMe Qualified
//! Names"; SPDK `lib/nvmf/subsystem.c` `nvmf_nqn_is_valid`).

use crate::Error;

/// Maximum NQN length in bytes, excluding the NUL terminator (NVMe Base 2.0, 4.5).
pub const NQN_MAX_LEN: usize = 223;
/// Minimum NQN length SPDK accepts: "nqn.yyyy-mm." (SPDK `SPDK_NVMF_NQN_MIN_LEN`).
pub const NQN_MIN_LEN: usize = 11;
/// Size of an NQN field in Connect data, Identify Controller and discovery log entries.
pub const NQN_FIELD_LEN: usize = 256;
/// The well-known discovery subsystem NQN (NVMe Base 2.0, 4.5).
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// Prefix of UUID-based NQNs (NVMe Base 2.0, 4.5).
pub const NQN_UUID_PREFIX: &str = "nqn.2014-08.org.nvmexpress:uuid:";
/// Longest label in the reverse domain name (RFC 1034).
pub const DOMAIN_LABEL_MAX_LEN: usize = 63;

const UUID_STRING_LEN: usize = 36;

/// Validate an NQN with SPDK's rules: at most 223 bytes; either the discovery NQN, or
/// `nqn.2014-08.org.nvmexpress:uuid:` followed by a canonical 36-character UUID, or
/// `nqn.yyyy-mm.<reverse domain>:<user string>` where the domain labels start with a letter,
/// hold letters, digits and hyphens, end alphanumeric and are at most 63 bytes, and the user
/// string is non-empty UTF-8.
pub fn validate_nqn(nqn: &str) -> Result<(), Error> {
    let fail = |reason| {
        let mut shown = nqn.to_owned();
        if shown.len() > NQN_FIELD_LEN {
            let mut cut = NQN_FIELD_LEN;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
        }
        Err(Error::InvalidNqn { nqn: shown, reason })
    };
    let len = nqn.len();
    if len > NQN_MAX_LEN {
        return fail("longer than 223 bytes");
    }
    if len < NQN_MIN_LEN {
        return fail("shorter than 11 bytes");
    }
    if nqn.contains('\0') {
        return fail("contains a NUL byte");
    }
    if nqn == DISCOVERY_NQN {
        return Ok(());
    }
    if let Some(uuid) = nqn.strip_prefix(NQN_UUID_PREFIX) {
        if uuid.len() != UUID_STRING_LEN {
            return fail("uuid is not 36 characters");
        }
        if !is_uuid(uuid.as_bytes()) {
            return fail("uuid is not formatted correctly");
        }
        return Ok(());
    }
    let b = nqn.as_bytes();
    if !nqn.starts_with("nqn.") {
        return fail("must begin with \"nqn.\"");
    }
    let date_ok = len >= 12
        && b[4..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..11].iter().all(u8::is_ascii_digit)
        && b[11] == b'.';
    if !date_ok {
        return fail("invalid date code (expected nqn.yyyy-mm.)");
    }
    let colon = match nqn.find(':') {
        Some(i) if i < len - 1 => i,
        _ => return fail("must contain a user specified name after ':'"),
    };
    check_reverse_domain(&b[12..colon]).or_else(fail)
}

/// True for the well-known discovery subsystem NQN.
pub fn is_discovery_nqn(nqn: &str) -> bool {
    nqn == DISCOVERY_NQN
}

/// Reverse domain per RFC 1034 the way SPDK checks it: a label starts with a letter, holds
/// letters/digits/hyphens and ends with a letter or digit.
fn check_reverse_domain(domain: &[u8]) -> Result<(), &'static str> {
    #[derive(PartialEq)]
    enum State {
        Letter,
        Ldh,
        Any,
    }
    let mut state = State::Letter;
    let mut label_len = 0usize;
    let last = domain.len().saturating_sub(1);
    for (i, &c) in domain.iter().enumerate() {
        match state {
            State::Letter => {
                if !c.is_ascii_alphabetic() {
                    return Err("domain labels must start with a letter");
                }
                state = State::Any;
                label_len = 1;
            }
            State::Ldh | State::Any => {
                if c.is_ascii_alphanumeric() {
                    state = State::Any;
                    label_len += 1;
                } else if c == b'-' {
                    if i == last {
                        return Err("domain labels must end with a letter or digit");
                    }
                    state = State::Ldh;
                    label_len += 1;
                } else if c == b'.' {
                    if state == State::Ldh {
                        return Err("domain labels must end with a letter or digit");
                    }
                    state = State::Letter;
                    label_len = 0;
                } else {
                    return Err("domain labels may hold only letters, digits, '-' and '.'");
                }
            }
        }
        if label_len > DOMAIN_LABEL_MAX_LEN {
            return Err("domain label longer than 63 bytes");
        }
    }
    Ok(())
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == UUID_STRING_LEN
        && s.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Decode a fixed-size NUL-padded string field: it must contain a NUL (so at most
/// `field.len() - 1` bytes of text) and the text must be UTF-8.
pub fn nul_padded_str<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    let end = bytes
        .iter()
        .position(|&c| c == 0)
        .ok_or(Error::UnterminatedString {
            field,
            len: bytes.len(),
        })?;
    std::str::from_utf8(&bytes[..end]).map_err(|_| Error::InvalidUtf8 { field })
}

/// Decode an NQN field (256 bytes, NUL-terminated, at most 223 bytes of UTF-8). The NQN's
/// grammar is not checked here; use [`validate_nqn`] for that.
pub fn nqn_field<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    let s = nul_padded_str(field, bytes)?;
    if s.len() > NQN_MAX_LEN {
        return Err(Error::StringTooLong {
            field,
            len: s.len(),
            max: NQN_MAX_LEN,
        });
    }
    Ok(s)
}

/// Write `s` into a NUL-padded field; `s` must leave room for the terminator.
pub fn write_nul_padded(field: &'static str, dst: &mut [u8], s: &str) -> Result<(), Error> {
    let max = dst.len().saturating_sub(1);
    if s.len() > max || s.contains('\0') {
        return Err(Error::StringTooLong {
            field,
            len: s.len(),
            max,
        });
    }
    dst.fill(0);
    dst[..s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

/// Write `s` into an ASCII, space-padded, not NUL-terminated field (Identify SN, MN, FR;
/// NVMe Base 2.0, 1.5 "ASCII string"). `s` must be printable ASCII and fit.
pub fn write_space_padded(field: &'static str, dst: &mut [u8], s: &str) -> Result<(), Error> {
    if s.len() > dst.len() {
        return Err(Error::StringTooLong {
            field,
            len: s.len(),
            max: dst.len(),
        });
    }
    if !s.bytes().all(|c| (0x20..=0x7e).contains(&c)) {
        return Err(Error::InvalidField { field, value: 0 });
    }
    dst.fill(b' ');
    dst[..s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

/// Read an ASCII space-padded field, trimming trailing spaces and NULs; `None` unless printable
/// ASCII.
pub fn space_padded_str(bytes: &[u8]) -> Option<&str> {
    let end = bytes
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(0, |i| i + 1);
    let text = &bytes[..end];
    if text.iter().all(|c| (0x20..=0x7e).contains(c)) {
        std::str::from_utf8(text).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spdk_style_discovery_and_uuid_nqns() {
        validate_nqn("nqn.2016-06.io.spdk:cnode1").unwrap();
        validate_nqn(DISCOVERY_NQN).unwrap();
        assert!(is_discovery_nqn(DISCOVERY_NQN));
        assert!(!is_discovery_nqn("nqn.2016-06.io.spdk:cnode1"));
        validate_nqn("nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555")
            .unwrap();
        validate_nqn("nqn.2019-10.com.my-corp.x1:ütf8 name").unwrap();
    }

    #[test]
    fn rejects_bad_nqns_with_the_rule_broken() {
        let reason = |n: &str| match validate_nqn(n) {
            Err(Error::InvalidNqn { reason, .. }) => reason,
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(reason("nqn.2016"), "shorter than 11 bytes");
        assert_eq!(reason("xqn.2016-06.io.spdk:a"), "must begin with \"nqn.\"");
        assert_eq!(
            reason("nqn.16-06-01.io.spdk:a"),
            "invalid date code (expected nqn.yyyy-mm.)"
        );
        assert_eq!(
            reason("nqn.2016-06.io.spdk"),
            "must contain a user specified name after ':'"
        );
        assert_eq!(
            reason("nqn.2016-06.io.spdk:"),
            "must contain a user specified name after ':'"
        );
        assert_eq!(
            reason("nqn.2016-06.1io.spdk:a"),
            "domain labels must start with a letter"
        );
        assert_eq!(
            reason("nqn.2016-06.io-.spdk:a"),
            "domain labels must end with a letter or digit"
        );
        assert_eq!(
            reason("nqn.2016-06.io.spdk-:a"),
            "domain labels must end with a letter or digit"
        );
        assert_eq!(
            reason("nqn.2016-06.io_x.spdk:a"),
            "domain labels may hold only letters, digits, '-' and '.'"
        );
        assert_eq!(
            reason("nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-55555555555"),
            "uuid is not 36 characters"
        );
        assert_eq!(
            reason("nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444x555555555555"),
            "uuid is not formatted correctly"
        );
        let long = format!("nqn.2016-06.io.spdk:{}", "a".repeat(204));
        assert_eq!(long.len(), 224);
        assert_eq!(reason(&long), "longer than 223 bytes");
        validate_nqn(&long[..223]).unwrap();
        let label = format!("nqn.2016-06.{}:a", "a".repeat(64));
        assert_eq!(reason(&label), "domain label longer than 63 bytes");
    }

    #[test]
    fn nqn_field_requires_nul_and_length_limit() {
        let mut f = [0u8; 256];
        write_nul_padded("subnqn", &mut f, "nqn.2016-06.io.spdk:cnode1").unwrap();
        assert_eq!(
            nqn_field("subnqn", &f).unwrap(),
            "nqn.2016-06.io.spdk:cnode1"
        );
        let full = [b'a'; 256];
        assert_eq!(
            nqn_field("subnqn", &full),
            Err(Error::UnterminatedString {
                field: "subnqn",
                len: 256
            })
        );
        let mut long = [b'a'; 256];
        long[224] = 0;
        assert_eq!(
            nqn_field("hostnqn", &long),
            Err(Error::StringTooLong {
                field: "hostnqn",
                len: 224,
                max: 223
            })
        );
        let mut bad = [0u8; 256];
        bad[0] = 0xff;
        assert_eq!(
            nqn_field("hostnqn", &bad),
            Err(Error::InvalidUtf8 { field: "hostnqn" })
        );
    }

    #[test]
    fn space_padded_fields_round_trip() {
        let mut sn = [0u8; 20];
        write_space_padded("sn", &mut sn, "SPDK001").unwrap();
        assert_eq!(&sn, b"SPDK001             ");
        assert_eq!(space_padded_str(&sn), Some("SPDK001"));
        assert!(write_space_padded("sn", &mut sn, "x\u{7f}").is_err());
        assert!(write_space_padded("sn", &mut sn, &"a".repeat(21)).is_err());
    }
}
