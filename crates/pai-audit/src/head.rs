//! The head checkpoint: the log's last sealed row, kept outside the database.
//!
//! The file holds one record of [`SLOT`] bytes (one sector, written in place with one
//! `pwrite`, so no rename and no directory sync per append). There is deliberately no
//! fallback to an older copy: an attacker could then drop the newest rows and spoil the
//! newest copy to make the log look whole. The record is one line:
//! `pai-audit-head/2 <seq> <hash> <mac> <legacy_through> <key_id> <source> <verified>
//! <files> <cmac>`, padded with spaces, where `cmac` is the HMAC of the fields before it
//! under the audit key. `verified` and `files` serve the per-turn check (see
//! [`crate::SqliteAudit::check`]): rows up to `verified` were checked, and `files` is the
//! identity of the database files as pai last left them (`-`: unknown, check everything).
//! Version 1 records (without those two fields) still read, as "nothing verified".

use std::fs::File;
use std::io;
use std::path::Path;

use crate::AuditKey;

const TAG: &str = "pai-audit-head/2";
/// Records written before the per-turn check's fields existed.
const TAG_V1: &str = "pai-audit-head/1";
/// The `files` field when pai does not know the files' state: the next check is a full one.
pub(crate) const UNKNOWN_FILES: &str = "-";
/// Bytes in the record; one sector, so it is written whole or not at all on most disks.
pub(crate) const SLOT: usize = 512;

/// What a checkpoint says about the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// The last sealed row's id (0: an empty log).
    pub seq: i64,
    /// That row's hash.
    pub hash: String,
    /// That row's MAC (its hash for a legacy row, the genesis for an empty log).
    pub mac: String,
    /// Rows up to this id were written before keyed sealing began and carry no MAC.
    pub legacy_through: i64,
    /// The fingerprint of the key the checkpoint was made with.
    pub key_id: String,
    /// Where that key came from (`env` or `file`).
    pub source: String,
    /// Rows up to this id passed a check (0: none), while the files stayed as in `files`.
    pub verified: i64,
    /// The database files' identity as pai last left them ([`UNKNOWN_FILES`] when a change
    /// outside pai was seen, or none was recorded).
    pub files: String,
}

/// What reading the checkpoint file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadHead {
    /// No file (or an empty one): the log was never sealed here.
    Missing,
    /// The newest slot whose MAC holds under this key.
    Valid(Head),
    /// Slots made with another key (its id and source).
    OtherKey { key_id: String, source: String },
    /// Slots that do not parse or whose MAC does not hold: written by something without
    /// the key.
    Forged,
}

impl Head {
    fn body(&self) -> String {
        format!(
            "{TAG} {} {} {} {} {} {} {} {}",
            self.seq,
            self.hash,
            self.mac,
            self.legacy_through,
            self.key_id,
            self.source,
            self.verified,
            self.files
        )
    }

    /// The slot bytes: the line, its MAC, space padding and a newline.
    pub(crate) fn encode(&self, key: &AuditKey) -> Vec<u8> {
        let body = self.body();
        let cmac = key.mac_hex(&[b"head\n", body.as_bytes()]);
        let mut line = format!("{body} {cmac}").into_bytes();
        line.resize(SLOT - 1, b' ');
        line.push(b'\n');
        line
    }

    /// The record, the MAC it carries, and the text that MAC covers.
    fn decode(slot: &[u8]) -> Option<(Head, String, String)> {
        let text = std::str::from_utf8(slot).ok()?.trim_end();
        let fields: Vec<&str> = text.split(' ').collect();
        let (common, verified, files, cmac) = match fields[..] {
            [
                TAG,
                seq,
                hash,
                mac,
                legacy,
                key_id,
                source,
                verified,
                files,
                cmac,
            ] => (
                [seq, hash, mac, legacy, key_id, source],
                verified.parse().ok()?,
                files,
                cmac,
            ),
            [TAG_V1, seq, hash, mac, legacy, key_id, source, cmac] => (
                [seq, hash, mac, legacy, key_id, source],
                0,
                UNKNOWN_FILES,
                cmac,
            ),
            _ => return None,
        };
        let [seq, hash, mac, legacy, key_id, source] = common;
        let head = Head {
            seq: seq.parse().ok()?,
            hash: hash.to_string(),
            mac: mac.to_string(),
            legacy_through: legacy.parse().ok()?,
            key_id: key_id.to_string(),
            source: source.to_string(),
            verified,
            files: files.to_string(),
        };
        let covered = text[..text.len() - cmac.len() - 1].to_string();
        Some((head, cmac.to_string(), covered))
    }
}

/// Reads the checkpoint in `file` and checks it under `key`.
pub(crate) fn read(file: &File, key: &AuditKey) -> io::Result<ReadHead> {
    // One byte more than a record: a longer file was not written by pai.
    let mut buf = vec![0u8; SLOT + 1];
    let n = read_at(file, &mut buf)?;
    if n == 0 {
        return Ok(ReadHead::Missing);
    }
    if n != SLOT {
        return Ok(ReadHead::Forged);
    }
    let Some((head, cmac, covered)) = Head::decode(&buf[..SLOT]) else {
        return Ok(ReadHead::Forged);
    };
    if head.key_id != key.id() {
        return Ok(ReadHead::OtherKey {
            key_id: head.key_id,
            source: head.source,
        });
    }
    // The MAC covers the line as stored, so a version 1 record still checks.
    let want = key.mac_hex(&[b"head\n", covered.as_bytes()]);
    Ok(if constant_eq(want.as_bytes(), cmac.as_bytes()) {
        ReadHead::Valid(head)
    } else {
        ReadHead::Forged
    })
}

/// The record's line as stored, padding trimmed; `None` when there is none.
pub(crate) fn raw_line(file: &File) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; SLOT];
    let n = read_at(file, &mut buf)?;
    Ok((n > 0).then(|| String::from_utf8_lossy(&buf[..n]).trim_end().to_string()))
}

/// The key id the checkpoint beside `db` names, unchecked (to pick which of the user's
/// keys to open the log with); `None` when there is no readable checkpoint.
pub(crate) fn sealed_key_id(db: &Path) -> Option<String> {
    let file = File::open(path_for(db)).ok()?;
    let line = raw_line(&file).ok()??;
    line.split(' ').nth(5).map(str::to_string)
}

/// Writes `head` over the record and, when `sync`, makes it durable.
pub(crate) fn write(file: &File, head: &Head, key: &AuditKey, sync: bool) -> io::Result<()> {
    write_at(file, &head.encode(key), 0)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Compares two MACs without stopping at the first difference.
pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(not(unix))]
fn read_at(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let mut done = 0;
    while done < buf.len() {
        match f.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(not(unix))]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(bytes)
}

/// The checkpoint file beside the log: `audit.db` → `audit.head`.
pub(crate) fn path_for(db: &Path) -> std::path::PathBuf {
    db.with_extension("head")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64) -> Head {
        Head {
            seq,
            hash: "a".repeat(64),
            mac: "b".repeat(64),
            legacy_through: 0,
            key_id: AuditKey::derive(b"k").id().to_string(),
            source: "env".into(),
            verified: seq - 1,
            files: "d1.2.3.4,w-".into(),
        }
    }

    #[test]
    fn a_record_reads_back_and_any_change_is_forged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.head");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let key = AuditKey::derive(b"k");
        assert_eq!(read(&file, &key).unwrap(), ReadHead::Missing);
        write(&file, &head(1), &key, false).unwrap();
        write(&file, &head(2), &key, true).unwrap();
        assert_eq!(read(&file, &key).unwrap(), ReadHead::Valid(head(2)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SLOT as u64);
        let other = AuditKey::derive(b"other");
        assert!(matches!(
            read(&file, &other).unwrap(),
            ReadHead::OtherKey { .. }
        ));
        let mut forged = head(2).encode(&key);
        forged[20] = b'9';
        write_at(&file, &forged, 0).unwrap();
        assert_eq!(read(&file, &key).unwrap(), ReadHead::Forged);
        write_at(&file, b"x", SLOT as u64).unwrap();
        assert_eq!(read(&file, &key).unwrap(), ReadHead::Forged);
    }

    #[test]
    fn a_version_1_record_reads_as_nothing_verified() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create_new(dir.path().join("audit.head")).unwrap();
        let key = AuditKey::derive(b"k");
        let h = head(3);
        let body = format!(
            "{TAG_V1} {} {} {} {} {} {}",
            h.seq, h.hash, h.mac, h.legacy_through, h.key_id, h.source
        );
        let cmac = key.mac_hex(&[b"head\n", body.as_bytes()]);
        let mut line = format!("{body} {cmac}").into_bytes();
        line.resize(SLOT - 1, b' ');
        line.push(b'\n');
        write_at(&file, &line, 0).unwrap();
        let want = Head {
            verified: 0,
            files: UNKNOWN_FILES.into(),
            ..h
        };
        assert_eq!(read(&file, &key).unwrap(), ReadHead::Valid(want));
    }
}
