//! The hash chain over audit rows.
//!
//! `hash = hex(sha256(prev_hash || encode(cells)))`, where `prev_hash` is the previous
//! row's `hash` as its 64 ASCII hex digits (64 zeros for the first row) and `cells` are the
//! row's stored values in [`HASHED_COLUMNS`] order. Each cell is encoded by its SQLite type,
//! length-prefixed so no two rows encode alike: `n;` null, `i<decimal>;` integer,
//! `r<16 hex digits of the f64 bits>;` real, `t<len>:<bytes>;` text, `b<len>:<bytes>;` blob.
//! The encoding starts with the tag `pai-audit/1\n`. Hashing the stored values (not the
//! decoded event) lets `verify` check rows whose values no longer decode.
//!
//! Keyed rows (schema 2 on) hash [`HASHED_COLUMNS_V2`] under the tag `pai-audit/2\n`: the
//! same columns with `content` replaced by `content_sha256` (hex SHA-256 of the content),
//! so a purged row (content removed) still verifies. Each keyed row also carries
//! `mac = hex(HMAC-SHA-256(key, "row\n" || id || "\n" || prev_mac || "\n" || hash))`,
//! where `prev_mac` is the previous row's MAC, or its hash when it is a legacy row
//! without one, or 64 zeros for the first row.

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first row.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The columns covered by a row's hash, in hashing order.
pub(crate) const HASHED_COLUMNS: [&str; 14] = [
    "ts",
    "user",
    "session",
    "mode",
    "kind",
    "provider",
    "endpoint",
    "model",
    "locality",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
    "duration_ms",
    "content",
];

/// The columns covered by a keyed row's hash, in hashing order.
pub(crate) const HASHED_COLUMNS_V2: [&str; 14] = [
    "ts",
    "user",
    "session",
    "mode",
    "kind",
    "provider",
    "endpoint",
    "model",
    "locality",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
    "duration_ms",
    "content_sha256",
];

const TAG: &[u8] = b"pai-audit/1\n";
const TAG_V2: &[u8] = b"pai-audit/2\n";

/// The hash of a legacy row whose predecessor's hash is `prev_hash`.
pub(crate) fn row_hash(prev_hash: &str, cells: &[ValueRef<'_>]) -> String {
    hash_with(TAG, prev_hash, cells)
}

/// The hash of a keyed row ([`HASHED_COLUMNS_V2`] cells).
pub(crate) fn row_hash_v2(prev_hash: &str, cells: &[ValueRef<'_>]) -> String {
    hash_with(TAG_V2, prev_hash, cells)
}

/// Hex SHA-256 of a row's content.
pub(crate) fn content_sha256(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// A keyed row's MAC.
pub(crate) fn row_mac(key: &crate::AuditKey, id: i64, prev_mac: &str, hash: &str) -> String {
    let mut digits = [0u8; 24];
    key.mac_hex(&[
        b"row\n",
        decimal(&mut digits, id),
        b"\n",
        prev_mac.as_bytes(),
        b"\n",
        hash.as_bytes(),
    ])
}

/// `n` in decimal, written into `buf` without allocating (verify encodes millions).
fn decimal(buf: &mut [u8; 24], n: i64) -> &[u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // 24 bytes hold any i64 ("-9223372036854775808" is 20), so this cannot fail.
    let _ = write!(cursor, "{n}");
    let len = cursor.position() as usize;
    &buf[..len]
}

fn hash_with(tag: &[u8], prev_hash: &str, cells: &[ValueRef<'_>]) -> String {
    let mut digits = [0u8; 24];
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(tag);
    for cell in cells {
        match *cell {
            ValueRef::Null => h.update(b"n;"),
            ValueRef::Integer(i) => {
                h.update(b"i");
                h.update(decimal(&mut digits, i));
                h.update(b";");
            }
            ValueRef::Real(r) => {
                h.update(b"r");
                h.update(format!("{:016x}", r.to_bits()).as_bytes());
                h.update(b";");
            }
            ValueRef::Text(bytes) => length_prefixed(&mut h, &mut digits, b"t", bytes),
            ValueRef::Blob(bytes) => length_prefixed(&mut h, &mut digits, b"b", bytes),
        }
    }
    hex::encode(h.finalize())
}

fn length_prefixed(h: &mut Sha256, digits: &mut [u8; 24], tag: &[u8], bytes: &[u8]) {
    h.update(tag);
    h.update(decimal(digits, bytes.len() as i64));
    h.update(b":");
    h.update(bytes);
    h.update(b";");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> ValueRef<'_> {
        ValueRef::Text(s.as_bytes())
    }

    #[test]
    fn genesis_is_64_zeros() {
        assert_eq!(GENESIS.len(), 64);
        assert!(GENESIS.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn hash_is_hex_sha256_and_deterministic() {
        let cells = [text("a"), ValueRef::Integer(5), ValueRef::Null];
        let one = row_hash(GENESIS, &cells);
        assert_eq!(one.len(), 64);
        assert!(one.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(one, row_hash(GENESIS, &cells));
    }

    #[test]
    fn hash_depends_on_prev_hash_and_every_cell() {
        let base = row_hash(GENESIS, &[text("a"), ValueRef::Integer(5)]);
        let other_prev = "1".repeat(64);
        assert_ne!(
            base,
            row_hash(&other_prev, &[text("a"), ValueRef::Integer(5)])
        );
        assert_ne!(base, row_hash(GENESIS, &[text("b"), ValueRef::Integer(5)]));
        assert_ne!(base, row_hash(GENESIS, &[text("a"), ValueRef::Integer(6)]));
        // Same digits, different type: text "5" is not integer 5.
        assert_ne!(base, row_hash(GENESIS, &[text("a"), text("5")]));
        assert_ne!(base, row_hash(GENESIS, &[text("a"), ValueRef::Null]));
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        assert_ne!(
            row_hash(GENESIS, &[text("ab"), text("c")]),
            row_hash(GENESIS, &[text("a"), text("bc")])
        );
        assert_ne!(
            row_hash(GENESIS, &[text("a;t1:b")]),
            row_hash(GENESIS, &[text("a"), text("b")])
        );
    }
}
