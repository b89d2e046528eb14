//! Ranking that stays fast when a query holds words most chunks contain. FTS5's `bm25()`
//! first counts the chunks matching each term by walking that term's whole posting list:
//! at 100,000 documents (830,000 chunks) a word in every chunk costs ~25 ms per term per
//! query, however few candidates are scored (measured: two such words 48 ms, three
//! 170 ms, the same candidates without `bm25()` 0.8 ms). So each term's count is
//! estimated first from where its [`Limits::sample`]-th match lies (a short walk). When
//! the counts of a query's terms add up to more than [`Limits::budget`] postings, the
//! query is ranked here, with the same BM25 formula over the candidates' own text and the
//! estimated counts; else `bm25()` ranks it, exactly, as before. Below that budget the
//! count costs `bm25()` less than reading the candidates' text costs here.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::doc_filter;
use crate::model::Filter;
use crate::query::Terms;

/// When a query is ranked here rather than by `bm25()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Limits {
    /// A term's count is exact below this many matches, estimated past it.
    pub sample: i64,
    /// Postings `bm25()` may walk for one query (the sum of its terms' counts): ~30 ns
    /// each on this class of machine, so 300,000 is ~9 ms — what scoring 2,000
    /// candidates here costs.
    pub budget: f64,
}

/// The limits searches use.
pub(super) const LIMITS: Limits = Limits {
    sample: 1000,
    budget: 300_000.0,
};

/// BM25's parameters, as FTS5 uses them.
const K1: f64 = 1.2;
const B: f64 = 0.75;
/// The heading counts twice the body, as in `bm25(chunks_fts, 2.0, 1.0)`.
const HEADING_WEIGHT: f64 = 2.0;

/// How many chunks one term matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TermCount {
    /// Chunks matching it (estimated past the sample).
    pub chunks: f64,
    /// In more than a tenth of all chunks (and past the sample): a word that says little.
    pub common: bool,
}

/// Counts each term's chunks: exactly up to `limits.sample` matches, estimated past it.
pub(super) fn count_terms(
    conn: &Connection,
    terms: &[String],
    limits: Limits,
) -> rusqlite::Result<Vec<TermCount>> {
    let rows: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM chunks", [], |r| r.get(0))?;
    let mut probe = conn.prepare_cached(
        "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?1 ORDER BY rowid LIMIT 1 OFFSET ?2",
    )?;
    let mut count = conn.prepare_cached(
        "SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?1)",
    )?;
    let mut out = Vec::with_capacity(terms.len());
    for term in terms {
        let expr = Terms(vec![term.clone()]).all();
        let nth: Option<i64> = probe
            .query_row(params![expr, limits.sample - 1], |r| r.get(0))
            .optional()?;
        out.push(match nth {
            // Matches are spread over the chunk ids: the n-th one at id `at` means
            // about n × rows / at of them in all.
            Some(at) => {
                let chunks = (limits.sample as f64 * rows as f64 / at.max(1) as f64)
                    .clamp(limits.sample as f64, rows.max(limits.sample) as f64);
                TermCount {
                    chunks,
                    common: chunks > rows as f64 / 10.0,
                }
            }
            None => TermCount {
                chunks: count.query_row([&expr], |r| r.get::<_, i64>(0))? as f64,
                common: false,
            },
        });
    }
    Ok(out)
}

/// One FTS5 expression of a search: its text, its terms and their counts, and whether it
/// asks for all of them.
pub(super) struct Expr<'a> {
    pub text: &'a str,
    pub terms: &'a [String],
    pub counts: &'a [TermCount],
    pub all: bool,
}

/// The candidates of one expression, `(chunk rowid, score)`, at most `cap + 1` (one more
/// than the cap says there were more).
pub(super) fn candidates(
    conn: &Connection,
    e: &Expr<'_>,
    filter: &Filter,
    cap: usize,
    limits: Limits,
) -> rusqlite::Result<Vec<(i64, f64)>> {
    let (expr, terms, counts, all) = (e.text, e.terms, e.counts, e.all);
    let common = counts.iter().map(|c| c.chunks).sum::<f64>() > limits.budget;
    // Past the budget, each match's text comes along (the chunk looked up by its id,
    // in the index's order) to be scored here; else bm25() scores it.
    let mut sql = if common {
        String::from(
            "SELECT chunks_fts.rowid, c.heading, c.text FROM chunks_fts \
             CROSS JOIN chunks c ON c.id = chunks_fts.rowid WHERE chunks_fts MATCH ?",
        )
    } else {
        String::from(
            "SELECT rowid, bm25(chunks_fts, 2.0, 1.0) FROM chunks_fts WHERE chunks_fts MATCH ?",
        )
    };
    let mut args: Vec<rusqlite::types::Value> = vec![expr.to_string().into()];
    if let Some(docs) = doc_filter(filter, &mut args) {
        sql.push_str(&format!(
            " AND chunks_fts.rowid IN (SELECT id FROM chunks WHERE doc IN ({docs}))"
        ));
    }
    // No ORDER BY: FTS5 yields matches lazily, so the LIMIT bounds the scoring work.
    sql.push_str(" LIMIT ?");
    args.push((cap as i64 + 1).into());
    let mut stmt = conn.prepare_cached(&sql)?;
    if !common {
        return stmt
            .query_map(params_from_iter(args), |r| {
                Ok((r.get(0)?, -r.get::<_, f64>(1)?))
            })?
            .collect();
    }
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut stats = Vec::new();
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let heading = row.get_ref(1)?.as_str().unwrap_or("");
        let text = row.get_ref(2)?.as_str().unwrap_or("");
        let (mut tf, len) = term_frequencies(terms, heading, text);
        if all {
            // FTS5 matched every term here; a spelling its tokenizer folds (diacritics)
            // and this split does not still counts once.
            for f in tf.iter_mut().filter(|f| **f == 0.0) {
                *f = 1.0;
            }
        }
        stats.push((rowid, tf, len));
    }
    let chunks: i64 =
        conn.query_row("SELECT coalesce(max(id), 0) FROM chunks", [], |r| r.get(0))?;
    let idf: Vec<f64> = counts
        .iter()
        .map(|c| {
            let n = chunks as f64;
            // FTS5's IDF, floored the same way: a term in most chunks weighs next to nothing.
            (((n - c.chunks + 0.5) / (c.chunks + 0.5)).ln()).max(1e-6)
        })
        .collect();
    // The candidates' mean length stands in for the corpus's.
    let avg = stats.iter().map(|s| s.2).sum::<f64>() / stats.len().max(1) as f64;
    Ok(stats
        .into_iter()
        .map(|(rowid, tf, len)| {
            let norm = K1 * (1.0 - B + B * len / avg.max(1.0));
            let s = tf
                .iter()
                .zip(&idf)
                .map(|(f, idf)| idf * f * (K1 + 1.0) / (f + norm))
                .sum();
            (rowid, s)
        })
        .collect())
}

/// Each term's weighted count in a chunk (a heading word counts twice) and the chunk's
/// length in words.
fn term_frequencies(terms: &[String], heading: &str, text: &str) -> (Vec<f64>, f64) {
    let mut tf = vec![0.0; terms.len()];
    let mut len = 0usize;
    for (weight, part) in [(HEADING_WEIGHT, heading), (1.0, text)] {
        for word in part
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            len += 1;
            for (i, t) in terms.iter().enumerate() {
                if same_word(word, t) {
                    tf[i] += weight;
                }
            }
        }
    }
    (tf, len as f64)
}

/// Whether `word` as written is the lowercase term `term`.
fn same_word(word: &str, term: &str) -> bool {
    if word.is_ascii() {
        word.eq_ignore_ascii_case(term)
    } else {
        word.to_lowercase() == term
    }
}

/// The terms a query falls back to when too few chunks have them all: any of them, but
/// not the common ones while others remain — a chunk matching only a word most chunks
/// have is no answer, and the first matches of such a word would crowd out the rest.
pub(super) fn fallback(terms: &[String], counts: &[TermCount]) -> (Vec<String>, Vec<TermCount>) {
    let keep: Vec<usize> = (0..terms.len()).filter(|&i| !counts[i].common).collect();
    if keep.is_empty() {
        return (terms.to_vec(), counts.to_vec());
    }
    (
        keep.iter().map(|&i| terms[i].clone()).collect(),
        keep.iter().map(|&i| counts[i]).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewDocument;
    use crate::store::{ResourceStore, SqliteStore};
    use pai_types::DataClass;

    fn store(texts: &[&str]) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        for (i, text) in texts.iter().enumerate() {
            store
                .add(NewDocument {
                    title: format!("doc{i}"),
                    source: format!("note:{i}"),
                    media_type: "text/plain".into(),
                    tags: vec![],
                    class: DataClass::Internal,
                    size: text.len() as u64,
                    sha256: format!("{i}"),
                    text: (*text).into(),
                    etag: None,
                })
                .unwrap();
        }
        (dir, store)
    }

    fn ranked(store: &SqliteStore, words: &[&str], limits: Limits) -> (Vec<i64>, Vec<bool>) {
        let conn = store.lock();
        let terms: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let counts = count_terms(&conn, &terms, limits).unwrap();
        let expr = Terms(terms.clone()).all();
        let e = Expr {
            text: &expr,
            terms: &terms,
            counts: &counts,
            all: true,
        };
        let mut c = candidates(&conn, &e, &Filter::default(), 100, limits).unwrap();
        c.sort_by(|a, b| b.1.total_cmp(&a.1));
        (
            c.into_iter().map(|(rowid, _)| rowid).collect(),
            counts.iter().map(|c| c.common).collect(),
        )
    }

    /// Ranked here (past the budget) or by bm25(), the order is the same.
    #[test]
    fn a_query_with_a_common_term_ranks_as_bm25_does() {
        let (_dir, store) = store(&[
            "time to descale the kettle; the kettle needs it, kettle kettle",
            "time and again: time, time",
            "a kettle once, at some time",
            "time flies",
            "no time for a kettle, time is short, time time time, long text here and more words",
            "time again",
        ]);
        let (by_bm25, common) = ranked(&store, &["kettle", "time"], LIMITS);
        assert_eq!(common, [false, false]);
        let small = Limits {
            sample: 4,
            budget: 0.0,
        };
        let (here, common) = ranked(&store, &["kettle", "time"], small);
        assert_eq!(common, [false, true]);
        assert_eq!(here, by_bm25);
        assert_eq!(here.len(), 3);
    }

    /// When too few chunks have every term, the fallback leaves the common one out.
    #[test]
    fn the_fallback_of_a_search_leaves_common_terms_out() {
        let (_dir, store) = store(&[
            "time one",
            "time two",
            "time three",
            "the kettle needs descaling",
            "time four",
        ]);
        let conn = store.lock();
        let terms = vec!["kettle".to_string(), "time".to_string()];
        let small = Limits {
            sample: 3,
            budget: 0.0,
        };
        let counts = count_terms(&conn, &terms, small).unwrap();
        assert_eq!(
            counts[0],
            TermCount {
                chunks: 1.0,
                common: false
            }
        );
        assert!(counts[1].common);
        drop(conn);
        let found = store
            .search_with_limits("kettle time", &crate::SearchOptions::default(), small)
            .unwrap();
        let titles: Vec<_> = found.hits.iter().map(|h| h.title.as_str()).collect();
        assert_eq!(titles, ["doc3"]);
    }

    #[test]
    fn words_compare_without_case() {
        assert!(same_word("Kettle", "kettle"));
        assert!(same_word("GRÖSSE", "grösse"));
        assert!(!same_word("kettles", "kettle"));
    }

    #[test]
    fn the_fallback_drops_common_terms_while_others_remain() {
        let rare = TermCount {
            chunks: 3.0,
            common: false,
        };
        let common = TermCount {
            chunks: 90_000.0,
            common: true,
        };
        let terms = vec!["kettle".to_string(), "time".to_string()];
        assert_eq!(
            fallback(&terms, &[rare, common]),
            (vec!["kettle".to_string()], vec![rare])
        );
        assert_eq!(fallback(&terms, &[common, common]).0, terms);
    }
}
