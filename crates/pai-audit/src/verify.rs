//! Checking the whole log: every row's hash, link and MAC, and the log's end against the
//! head checkpoint.

use std::fmt;

use rusqlite::OptionalExtension;
use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};

use crate::chain::{GENESIS, HASHED_COLUMNS_V2, content_sha256, row_hash, row_hash_v2, row_mac};
use crate::head::{self, ReadHead};
use crate::store::classify;
use crate::{EventId, Result, SqliteAudit};

/// What the head checkpoint said when a keyed log was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum HeadStatus {
    /// The checkpoint seals the log's last row.
    Sealed,
    /// An empty log and no checkpoint: sealing starts with the first row.
    Fresh,
    /// A log written before keys, sealed now as it stands; its rows stay unkeyed legacy
    /// rows up to `legacy_through`.
    Migrated {
        /// The last legacy row.
        legacy_through: EventId,
    },
    /// The checkpoint and the log disagree.
    Problem(HeadProblem),
}

/// How the head checkpoint and the log disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum HeadProblem {
    /// The log has rows but no checkpoint: it was never sealed, or the checkpoint was
    /// deleted.
    Missing {
        /// The log's last row.
        last: EventId,
    },
    /// The log ends before the sealed row: rows were deleted, or the file was truncated
    /// or replaced.
    Truncated {
        /// The last row the checkpoint sealed.
        sealed: EventId,
        /// The log's last row (0 when empty).
        last: EventId,
    },
    /// The sealed row is not in the log as sealed: the file was replaced or rewritten.
    Replaced {
        /// The last row the checkpoint sealed.
        sealed: EventId,
    },
    /// Rows after the last checkpoint.
    Unsealed {
        /// The first unsealed row.
        from: EventId,
        /// The last.
        to: EventId,
        /// Their MACs chain from the checkpoint: a pai process wrote them and stopped
        /// before sealing (the next write seals them).
        macs_hold: bool,
    },
    /// The checkpoint was made with another key.
    OtherKey {
        /// The fingerprint of the key it was made with.
        key_id: String,
        /// Where that key came from (`env` or `file`).
        source: String,
        /// This run's key fingerprint.
        this_key: String,
        /// Where this run's key came from.
        this_source: String,
    },
    /// The checkpoint does not parse or its MAC does not hold.
    Forged,
}

impl fmt::Display for HeadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadProblem::Missing { last } => write!(
                f,
                "has {last} rows but no head checkpoint (audit.head): it was never sealed, or the checkpoint was deleted"
            ),
            HeadProblem::Truncated { sealed, last } => write!(
                f,
                "ends at row {last} but its checkpoint sealed row {sealed}: rows were deleted, or the file was truncated or replaced"
            ),
            HeadProblem::Replaced { sealed } => write!(
                f,
                "no longer holds row {sealed} as its checkpoint sealed it: the file was replaced or rewritten"
            ),
            HeadProblem::Unsealed { from, to, macs_hold } => write!(
                f,
                "has rows {from}-{to} after its last checkpoint (unsealed){}",
                if *macs_hold {
                    ": a pai process stopped before sealing them"
                } else {
                    ", and their MACs do not hold: they were added by something without the audit key"
                }
            ),
            HeadProblem::OtherKey {
                key_id,
                source,
                this_key,
                this_source,
            } => write!(
                f,
                "was sealed with another key (id {key_id}, {}) than this run's (id {this_key}, {}): run pai with the key it was sealed with",
                source_text(source),
                source_text(this_source)
            ),
            HeadProblem::Forged => f.write_str(
                "has a head checkpoint (audit.head) that does not check out: it was edited by something without the audit key",
            ),
        }
    }
}

fn source_text(source: &str) -> &'static str {
    match source {
        "env" => "derived from PAI_ENCRYPTION_KEY",
        "file" => "the audit.key file",
        _ => "unknown source",
    }
}

/// The outcome of [`SqliteAudit::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// How many rows the log holds.
    pub rows: u64,
    /// Rows carrying a MAC that was checked.
    pub keyed: u64,
    /// Unkeyed rows written before keyed sealing began (hash chain only), first and last.
    pub legacy: Option<(EventId, EventId)>,
    /// Ranges of rows whose content was purged (their hashes and MACs kept).
    pub purged: Vec<(EventId, EventId)>,
    /// MACs were checked (the log was opened with a key).
    pub mac_checked: bool,
    /// The last row the checkpoint seals, when one was read.
    pub sealed_through: Option<EventId>,
    /// The first row that does not match the chain, or `None` when every row does.
    pub first_broken: Option<BrokenRow>,
    /// How the end of the log disagrees with the checkpoint (keyed logs only).
    pub head: Option<HeadProblem>,
    /// The log was never sealed (no checkpoint, and nothing to seal it from).
    pub never_sealed: bool,
}

impl VerifyReport {
    /// Every row matches the chain and, for a keyed log, the checkpoint seals its end.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none() && self.head.is_none() && !self.never_sealed
    }

    /// One line: what holds, or the first thing that does not and why.
    pub fn summary(&self) -> String {
        if let Some(broken) = &self.first_broken {
            return format!("row {}: {}", broken.id, broken.reason);
        }
        if let Some(head) = &self.head {
            return format!("the log {head}");
        }
        if self.never_sealed {
            return "the log was never sealed (no head checkpoint): nothing proves it is complete"
                .into();
        }
        let mut line = format!("intact: {} rows", self.rows);
        if self.mac_checked {
            line.push_str(&format!(
                ", {} keyed (MAC checked), sealed through row {}",
                self.keyed,
                self.sealed_through.map_or(0, |s| s.0)
            ));
        } else {
            line.push_str(" (hash chain only, no key: MACs not checked)");
        }
        if let Some((a, b)) = self.legacy {
            line.push_str(&format!(
                "; rows {a}-{b} are unkeyed legacy rows (hash chain only)"
            ));
        }
        if !self.purged.is_empty() {
            let ranges: Vec<String> = self
                .purged
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            line.push_str(&format!("; content purged in rows {}", ranges.join(", ")));
        }
        line
    }
}

/// A row where the chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenRow {
    /// The first row that does not match.
    pub id: EventId,
    /// How it fails to match.
    pub reason: BreakReason,
}

/// Why a row does not match the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakReason {
    /// The row's contents changed after it was written.
    HashMismatch,
    /// The row does not follow the one stored before it: a row was removed, inserted,
    /// or rewritten together with its hash.
    PrevHashMismatch,
    /// The row is missing: the ids jump over it.
    Missing,
    /// The row's MAC does not hold: it was written or rewritten without the audit key.
    MacMismatch,
    /// The row carries no MAC although keyed sealing had begun before it.
    Unkeyed,
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakReason::HashMismatch => "its contents changed after it was written",
            BreakReason::PrevHashMismatch => "it does not follow the row stored before it",
            BreakReason::Missing => "it is missing: it was deleted from the log",
            BreakReason::MacMismatch => {
                "its MAC does not match: it was written or re-chained by something without the audit key"
            }
            BreakReason::Unkeyed => {
                "it carries no MAC, though keyed sealing began before it: it was written or rewritten without the audit key"
            }
        })
    }
}

impl SqliteAudit {
    /// Recomputes every row's hash, link and (with a key) MAC, and compares the log's end
    /// with the head checkpoint; reports the first row that breaks the chain.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_all().map(|(report, _)| report)
    }

    /// [`Self::verify`], with the last row checked.
    pub(crate) fn verify_all(&self) -> Result<(VerifyReport, i64)> {
        self.verify_after(0)?
            .ok_or_else(|| crate::AuditError::BadRow {
                // Unreachable: row 0 (the genesis) needs no lookup.
                path: self.path().to_path_buf(),
                id: 0,
                detail: "the genesis row could not be read".into(),
            })
    }

    /// [`Self::verify`] of the rows after row `after` only (0: all of them), linked from
    /// row `after` as stored, and the log's end against the checkpoint; with the last row
    /// checked. `None` when row `after` is not in the log (the caller checks it all).
    pub(crate) fn verify_after(&self, after: i64) -> Result<Option<(VerifyReport, i64)>> {
        let path = self.path().to_path_buf();
        let sql = |e| classify(&path, e);
        let mut conn = self.lock();
        // One read transaction: the checkpoint is read under its shared lock after the
        // snapshot starts, so both describe the same moment.
        let tx = conn.transaction().map_err(sql)?;
        let start = if after == 0 {
            Some((GENESIS.to_string(), None))
        } else {
            tx.query_row("SELECT hash, mac FROM events WHERE id = ?1", [after], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()
            .map_err(sql)?
        };
        let Some((start_hash, start_mac)) = start else {
            return Ok(None);
        };
        let key = self.key();
        let (head, legacy_through) = match self.seal_parts() {
            Some((file, head_path, legacy)) => {
                let _guard = file.lock_shared();
                let read = key
                    .map(|k| head::read(file, k))
                    .transpose()
                    .map_err(|error| crate::AuditError::Head {
                        path: head_path.to_path_buf(),
                        error,
                    })?;
                let _ = file.unlock();
                let legacy = match &read {
                    Some(ReadHead::Valid(h)) => h.legacy_through,
                    _ => legacy,
                };
                (read, Some(legacy))
            }
            None => (None, None),
        };

        let mut report = VerifyReport {
            rows: 0,
            keyed: 0,
            legacy: None,
            purged: Vec::new(),
            mac_checked: key.is_some(),
            sealed_through: None,
            first_broken: None,
            head: None,
            never_sealed: false,
        };
        let select = format!(
            "SELECT id, prev_hash, hash, mac, purged, content, {} FROM events WHERE id > ?1 \
             ORDER BY id",
            HASHED_COLUMNS_V2.join(", ")
        );
        let mut stmt = tx.prepare(&select).map_err(sql)?;
        let mut rows = stmt.query([after]).map_err(sql)?;
        let mut prev_id = after;
        let mut seen_keyed = start_mac.is_some();
        let mut prev_mac = start_mac.unwrap_or_else(|| start_hash.clone());
        let mut prev_hash = start_hash;
        let broken = |report: &mut VerifyReport, id: i64, reason| {
            if report.first_broken.is_none() {
                report.first_broken = Some(BrokenRow {
                    id: EventId(id),
                    reason,
                });
            }
        };
        while let Some(row) = rows.next().map_err(sql)? {
            report.rows += 1;
            let get = |i| row.get_ref(i).map_err(sql);
            let id: i64 = row.get(0).map_err(sql)?;
            let stored_prev = get(1)?;
            let hash = text_of(get(2)?);
            let mac = match get(3)? {
                ValueRef::Null => None,
                v => Some(text_of(v)),
            };
            // 1: purged later; 2: kept as a digest only from the start ([audit] content).
            let purged_now = get(4)?;
            let purged = !matches!(purged_now, ValueRef::Integer(0));
            let content = get(5)?;
            // HASHED_COLUMNS_V2: 13 shared columns, then the content digest.
            let mut cells = Vec::with_capacity(14);
            for i in 6..19 {
                cells.push(get(i)?);
            }
            let digest = get(19)?;

            if id != prev_id + 1 {
                broken(&mut report, prev_id + 1, BreakReason::Missing);
            }
            if stored_prev != ValueRef::Text(prev_hash.as_bytes()) {
                broken(&mut report, id, BreakReason::PrevHashMismatch);
            }
            // A purged row keeps no content; anything else there was put back by hand.
            if purged {
                if content != ValueRef::Text(b"") {
                    broken(&mut report, id, BreakReason::HashMismatch);
                }
                if purged_now == ValueRef::Integer(1) {
                    extend_range(&mut report.purged, id);
                }
            }
            match &mac {
                Some(mac) => {
                    seen_keyed = true;
                    report.keyed += 1;
                    let digest_ok = purged
                        || matches!(digest, ValueRef::Text(d) if content_matches(content, d));
                    cells.push(digest);
                    if !digest_ok || row_hash_v2(&prev_hash, &cells) != hash {
                        broken(&mut report, id, BreakReason::HashMismatch);
                    }
                    if let Some(key) = key
                        && !head::constant_eq(
                            row_mac(key, id, &prev_mac, &hash).as_bytes(),
                            mac.as_bytes(),
                        )
                    {
                        broken(&mut report, id, BreakReason::MacMismatch);
                    }
                }
                None => {
                    let allowed = !seen_keyed && legacy_through.is_none_or(|l| id <= l);
                    if !allowed {
                        broken(&mut report, id, BreakReason::Unkeyed);
                    }
                    report.legacy = Some((report.legacy.map_or(EventId(id), |l| l.0), EventId(id)));
                    if !purged {
                        cells.push(content);
                        if row_hash(&prev_hash, &cells) != hash {
                            broken(&mut report, id, BreakReason::HashMismatch);
                        }
                    }
                }
            }
            prev_id = id;
            prev_mac = mac.unwrap_or_else(|| hash.clone());
            prev_hash = hash;
        }

        match head {
            None => {}
            Some(ReadHead::Missing) => report.never_sealed = true,
            Some(ReadHead::Forged) => report.head = Some(HeadProblem::Forged),
            Some(ReadHead::OtherKey { key_id, source }) => {
                let key = key.map(|k| (k.id().to_string(), k.source().as_str().to_string()));
                let (this_key, this_source) = key.unwrap_or_default();
                report.head = Some(HeadProblem::OtherKey {
                    key_id,
                    source,
                    this_key,
                    this_source,
                });
            }
            Some(ReadHead::Valid(h)) => {
                report.sealed_through = Some(EventId(h.seq));
                if prev_id < h.seq {
                    report.head = Some(HeadProblem::Truncated {
                        sealed: EventId(h.seq),
                        last: EventId(prev_id),
                    });
                } else if prev_id > h.seq {
                    report.head = Some(HeadProblem::Unsealed {
                        from: EventId(h.seq + 1),
                        to: EventId(prev_id),
                        macs_hold: report.first_broken.is_none(),
                    });
                } else {
                    // After the loop, prev_* describe the last row (or the genesis).
                    let sealed = Some((prev_hash.clone(), prev_mac.clone()));
                    if sealed != Some((h.hash.clone(), h.mac.clone())) {
                        report.head = Some(HeadProblem::Replaced {
                            sealed: EventId(h.seq),
                        });
                    }
                }
                // A checkpoint that stops short of a replaced log's rows is checked at
                // its own row too.
                if prev_id > h.seq && report.head.is_some() {
                    let found = crate::store::sealed_row(&tx, &path, h.seq)?;
                    if found != Some((h.hash.clone(), h.mac.clone())) {
                        report.head = Some(HeadProblem::Replaced {
                            sealed: EventId(h.seq),
                        });
                    }
                }
            }
        }
        Ok(Some((report, prev_id)))
    }
}

fn content_matches(content: ValueRef<'_>, digest: &[u8]) -> bool {
    match content {
        ValueRef::Text(t) | ValueRef::Blob(t) => content_sha256(t).as_bytes() == digest,
        _ => false,
    }
}

fn text_of(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        _ => String::new(),
    }
}

fn extend_range(ranges: &mut Vec<(EventId, EventId)>, id: i64) {
    match ranges.last_mut() {
        Some((_, end)) if end.0 + 1 == id => end.0 = id,
        _ => ranges.push((EventId(id), EventId(id))),
    }
}
