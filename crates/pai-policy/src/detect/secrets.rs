//! The secret scanner: rules as data (`rules.toml`), an Aho-Corasick keyword prefilter over
//! the whole text, and per-rule byte regexes run only around keyword hits.
//!
//! Speed comes from doing almost nothing per byte: one pass of the keyword automaton, then
//! each rule whose keyword showed up searches just the lines around its hits. A rule's
//! regex is compiled the first time one of its keywords appears, so a process that scans
//! one short prompt pays for the few rules that prompt needs, not for all of them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex_automata::Input;
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use serde::Deserialize;

use super::Finding;
use pai_types::DataClass;

/// `rules.toml` as JSON, made by build.rs: parsing it is a fraction of parsing the TOML,
/// and every process that scans text pays it once.
const RULES_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/rules.json"));

/// How far back from a keyword a match may start, and how far forward a line-bound rule
/// searches: a line longer than this (minified code, base64) is searched in pieces.
const BACK: usize = 256;
const FORWARD: usize = 16 * 1024;
/// How far a `block` rule (private key blocks) searches past its keyword.
const BLOCK: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    macros: BTreeMap<String, String>,
    allowlist: AllowDef,
    rule: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowDef {
    values: Vec<String>,
    substrings: Vec<String>,
    stopwords: Vec<String>,
}

/// One rule as written in `rules.toml` (see the comment at its top).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDef {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) keywords: Vec<String>,
    #[serde(default)]
    pub(crate) exact: bool,
    #[serde(default)]
    pub(crate) block: bool,
    pub(crate) regex: String,
    pub(crate) group: Option<usize>,
    pub(crate) entropy: Option<f64>,
    #[serde(default)]
    pub(crate) generic: bool,
    #[allow(dead_code)] // read by the recall test only
    pub(crate) sample: Option<String>,
}

pub(crate) struct Rule {
    pub(crate) def: RuleDef,
    regex: OnceLock<Option<Regex>>,
}

/// A rule's regex as the scanner builds it. Unicode off: every format is ASCII, and Unicode
/// classes make a regex several times slower to build and to run. utf8 off: search bytes.
fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::builder()
        .configure(
            Regex::config()
                .onepass(false)
                .backtrack(false)
                .dfa(false)
                .auto_prefilter(false),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(pattern)
        .map_err(|e| e.to_string())
}

impl Rule {
    pub(crate) fn regex(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| compile(&self.def.regex).ok())
            .as_ref()
    }
}

/// The user's own rules (config.toml `[[detect.rule]]`), merged into the set when it is
/// first built: see [`super::add_rules`].
static CUSTOM: OnceLock<Vec<RuleDef>> = OnceLock::new();
static SET: OnceLock<Option<Set>> = OnceLock::new();

/// Checks `rules` and keeps them for the set; see [`super::add_rules`].
pub(crate) fn add(rules: &[super::CustomRule]) -> Result<(), super::DetectError> {
    use super::DetectError;
    if rules.is_empty() {
        return Ok(());
    }
    let bad = |id: &str, reason: String| DetectError::BadRule {
        id: id.to_string(),
        reason,
    };
    let builtin: RulesFile =
        serde_json::from_str(RULES_JSON).map_err(|e| bad("(built-in)", e.to_string()))?;
    let mut defs: Vec<RuleDef> = Vec::with_capacity(rules.len());
    for r in rules {
        let id_ok = !r.id.is_empty()
            && r.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(bad(
                &r.id,
                "an id is lower-case letters, digits and '-'".into(),
            ));
        }
        if builtin.rule.iter().any(|b| b.id == r.id) || defs.iter().any(|d| d.id == r.id) {
            return Err(bad(
                &r.id,
                "that id is already taken; choose another".into(),
            ));
        }
        let kind_ok = r.kind.starts_with(|c: char| c.is_ascii_uppercase())
            && r.kind
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !kind_ok {
            return Err(bad(
                &r.id,
                format!(
                    "kind {:?} must be UPPER_CASE (it names the placeholder)",
                    r.kind
                ),
            ));
        }
        if r.keywords.is_empty() || r.keywords.iter().any(|k| k.trim().is_empty()) {
            return Err(bad(
                &r.id,
                "give at least one non-empty keyword: a text without one never runs the regex"
                    .into(),
            ));
        }
        if let Some(e) = r.entropy
            && !(0.0..=8.0).contains(&e)
        {
            return Err(bad(
                &r.id,
                "entropy is bits per byte, between 0 and 8".into(),
            ));
        }
        let mut regex = r.regex.clone();
        for (name, body) in &builtin.macros {
            regex = regex.replace(&format!("{{{name}}}"), body);
        }
        compile(&regex).map_err(|e| bad(&r.id, format!("its regex does not compile: {e}")))?;
        defs.push(RuleDef {
            id: r.id.clone(),
            kind: r.kind.clone(),
            keywords: r.keywords.clone(),
            exact: r.exact,
            block: false,
            regex: r.regex.clone(),
            group: None,
            entropy: r.entropy,
            generic: false,
            sample: None,
        });
    }
    if SET.get().is_some() {
        return Err(DetectError::TooLate);
    }
    match CUSTOM.set(defs) {
        Ok(()) => Ok(()),
        Err(defs) => {
            // A second workspace opened with the same config in one process is fine.
            let same = CUSTOM.get().is_some_and(|have| {
                have.len() == defs.len()
                    && have
                        .iter()
                        .zip(&defs)
                        .all(|(a, b)| a.id == b.id && a.regex == b.regex)
            });
            if same {
                Ok(())
            } else {
                Err(DetectError::TooLate)
            }
        }
    }
}

pub(crate) struct Set {
    pub(crate) rules: Vec<Rule>,
    words: Vec<String>,
    /// The keyword automaton for short texts: an NFA, quick to build.
    small: OnceLock<Option<AhoCorasick>>,
    /// For long texts: a DFA, several times faster per byte but slower to build (about a
    /// millisecond), which only pays off over hundreds of kilobytes.
    large: OnceLock<Option<AhoCorasick>>,
    triggers: Vec<Vec<usize>>,
    values: Vec<String>,
    substrings: Vec<String>,
    stopwords: Vec<String>,
}

/// The rule set, parsed and its prefilter built on first use. `None` only if the compiled-in
/// file is broken, which the unit tests rule out.
pub(crate) fn set() -> Option<&'static Set> {
    SET.get_or_init(|| build(RULES_JSON)).as_ref()
}

fn build(source: &str) -> Option<Set> {
    let mut file: RulesFile = serde_json::from_str(source).ok()?;
    if let Some(custom) = CUSTOM.get() {
        file.rule.extend(custom.iter().cloned());
    }
    let mut words: Vec<String> = Vec::new();
    // For each keyword (as matched, case included), the rules it starts.
    let mut triggers: Vec<Vec<usize>> = Vec::new();
    let mut rules = Vec::with_capacity(file.rule.len());
    for (i, mut def) in file.rule.into_iter().enumerate() {
        for (name, body) in &file.macros {
            def.regex = def.regex.replace(&format!("{{{name}}}"), body);
        }
        for kw in &def.keywords {
            // The automaton matches case-sensitively (half the build time of a
            // case-insensitive one): a keyword of any case is added as written and in lower,
            // UPPER and Capitalised form, which covers snake, SCREAMING and camel case.
            let variants: Vec<String> = if def.exact {
                vec![kw.clone()]
            } else {
                let lower = kw.to_ascii_lowercase();
                let mut cap = lower.clone();
                if let Some(first) = cap.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                vec![kw.clone(), kw.to_ascii_uppercase(), cap, lower]
            };
            for word in variants {
                let at = match words.iter().position(|w| *w == word) {
                    Some(at) => at,
                    None => {
                        words.push(word);
                        triggers.push(Vec::new());
                        words.len() - 1
                    }
                };
                if !triggers[at].contains(&i) {
                    triggers[at].push(i);
                }
            }
        }
        rules.push(Rule {
            def,
            regex: OnceLock::new(),
        });
    }
    Some(Set {
        rules,
        words,
        small: OnceLock::new(),
        large: OnceLock::new(),
        triggers,
        values: file.allowlist.values,
        substrings: file
            .allowlist
            .substrings
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        stopwords: file.allowlist.stopwords,
    })
}

/// Texts at least this long use the DFA keyword automaton.
const LARGE: usize = 256 * 1024;

impl Set {
    fn keywords(&self, len: usize) -> Option<&AhoCorasick> {
        let (cell, kind) = if len >= LARGE {
            (&self.large, AhoCorasickKind::DFA)
        } else {
            (&self.small, AhoCorasickKind::ContiguousNFA)
        };
        cell.get_or_init(|| {
            AhoCorasick::builder()
                .kind(Some(kind))
                .build(&self.words)
                .ok()
        })
        .as_ref()
    }
}

/// Work a process does keyword by keyword before building the automaton (about half a
/// millisecond) pays for itself, in bytes searched: one keyword's pass over a text costs
/// its length plus [`PASS_SET_UP`].
const NAIVE_BUDGET: usize = 6 << 20;

/// A keyword pass's fixed cost (building its searcher, about 0.1 µs), in bytes searched.
const PASS_SET_UP: usize = 1024;

/// Whether a text of `len` bytes should be searched keyword by keyword (`words` passes):
/// until the process has spent [`NAIVE_BUDGET`] that way (then the automaton is built).
/// Counting each pass's set-up matters: a request of a hundred short history messages
/// would otherwise make a hundred passes per keyword, several milliseconds in all.
fn naive_is_cheaper(len: usize, words: usize) -> bool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SPENT: AtomicUsize = AtomicUsize::new(0);
    let cost = naive_cost(len, words);
    cost < NAIVE_BUDGET && SPENT.fetch_add(cost, Ordering::Relaxed) + cost < NAIVE_BUDGET
}

/// What searching a text of `len` bytes keyword by keyword costs, counted against
/// [`NAIVE_BUDGET`].
pub(crate) fn naive_cost(len: usize, words: usize) -> usize {
    words.saturating_mul(len.saturating_add(PASS_SET_UP))
}

/// How many short texts of `len` bytes a fresh process searches keyword by keyword before
/// it builds the automaton (for the tests).
#[cfg(test)]
pub(crate) fn naive_texts(len: usize) -> usize {
    set().map_or(0, |s| NAIVE_BUDGET / naive_cost(len, s.words.len()))
}

/// Appends every secret found in `text` (unsorted, possibly overlapping).
pub(crate) fn scan(text: &str, out: &mut Vec<Finding>) {
    let Some(set) = set() else { return };
    let bytes = text.as_bytes();
    // (keyword start, keyword), in text order.
    let hits: Vec<(usize, usize)> =
        if set.small.get().is_none() && naive_is_cheaper(bytes.len(), set.words.len()) {
            // One memmem pass per keyword: for the first few prompts of a process this is
            // cheaper than building the automaton (about half a millisecond).
            let mut hits = Vec::new();
            for (i, word) in set.words.iter().enumerate() {
                hits.extend(memchr::memmem::find_iter(bytes, word.as_bytes()).map(|at| (at, i)));
            }
            hits.sort_unstable();
            hits
        } else {
            let Some(keywords) = set.keywords(text.len()) else {
                return;
            };
            keywords
                .find_overlapping_iter(bytes)
                .map(|m| (m.start(), m.pattern().as_usize()))
                .collect()
        };
    // (rule, window start, window end), at most one window per rule per line.
    let mut windows: Vec<(usize, usize, usize)> = Vec::new();
    let mut covered: Vec<usize> = vec![0; set.rules.len()];
    for (at, word) in hits {
        for &rule in &set.triggers[word] {
            if covered[rule] > at {
                continue;
            }
            let window = window(bytes, at, set.rules[rule].def.block);
            covered[rule] = window.1;
            windows.push((rule, window.0, window.1));
        }
    }
    if windows.is_empty() {
        return;
    }
    windows.sort_unstable();
    let mut i = 0;
    while i < windows.len() {
        let (rule, start, mut end) = windows[i];
        i += 1;
        while i < windows.len() && windows[i].0 == rule && windows[i].1 <= end {
            end = end.max(windows[i].2);
            i += 1;
        }
        search(set, &set.rules[rule], text, start, end, out);
    }
}

/// The part of `bytes` a rule searches around a keyword at `at`.
fn window(bytes: &[u8], at: usize, block: bool) -> (usize, usize) {
    let lo = at.saturating_sub(BACK);
    let start = memchr::memrchr(b'\n', &bytes[lo..at]).map_or(lo, |p| lo + p + 1);
    let end = if block {
        (at + BLOCK).min(bytes.len())
    } else {
        let hi = (at + FORWARD).min(bytes.len());
        // The newline itself is inside: a value's end may be checked against it.
        memchr::memchr(b'\n', &bytes[at..hi]).map_or(hi, |p| at + p + 1)
    };
    (start, end)
}

fn search(
    set: &Set,
    rule: &'static Rule,
    text: &str,
    start: usize,
    end: usize,
    out: &mut Vec<Finding>,
) {
    let Some(regex) = rule.regex() else { return };
    let input = Input::new(text.as_bytes()).range(start..end);
    for caps in regex.captures_iter(input) {
        let span = match rule.def.group {
            Some(g) => caps.get_group(g),
            None => (1..caps.group_len())
                .find_map(|g| caps.get_group(g))
                .or_else(|| caps.get_group(0)),
        };
        let Some(span) = span else { continue };
        let (s, e) = widen_to_chars(text, span.start, span.end);
        if s >= e {
            continue;
        }
        let value = &text[s..e];
        if !set.accepts(&rule.def, value) {
            continue;
        }
        out.push(Finding {
            kind: &rule.def.kind,
            rule: &rule.def.id,
            class: DataClass::Secret,
            start: s,
            end: e,
        });
    }
}

/// A byte span widened to whole characters (a value's own bytes are ASCII, but a negated
/// class may stop inside a multi-byte character).
fn widen_to_chars(text: &str, mut s: usize, mut e: usize) -> (usize, usize) {
    while s > 0 && !text.is_char_boundary(s) {
        s -= 1;
    }
    while e < text.len() && !text.is_char_boundary(e) {
        e += 1;
    }
    (s, e)
}

impl Set {
    /// Whether `value`, matched by `rule`, is a real finding: not a documented example or a
    /// placeholder, random enough, and (for the generic rules) not code.
    fn accepts(&self, rule: &RuleDef, value: &str) -> bool {
        if self.values.iter().any(|v| v == value) {
            return false;
        }
        let lower = value.to_ascii_lowercase();
        if self.substrings.iter().any(|s| lower.contains(s.as_str())) {
            return false;
        }
        let first = value.as_bytes()[0];
        if value.bytes().all(|b| b == first) {
            return false;
        }
        if let Some(min) = rule.entropy
            && entropy(value.as_bytes()) < min
        {
            return false;
        }
        if rule.generic && looks_like_code(&lower, &self.stopwords) {
            return false;
        }
        true
    }
}

/// A generic assignment's value that is an identifier, a type, a call, a path or a variable
/// rather than a literal secret: `String`, `config.password`, `read_password()`,
/// `&str`, `/run/secrets/db`, `$DB_PASS`.
fn looks_like_code(lower: &str, stopwords: &[String]) -> bool {
    let trimmed = lower.trim_end_matches(['.', ':', '?', '!']);
    if stopwords.iter().any(|w| w == trimmed) {
        return true;
    }
    let b = trimmed.as_bytes();
    if b.is_empty()
        || matches!(
            b[0],
            b'$' | b'%' | b'&' | b'@' | b'/' | b'.' | b'~' | b'*' | b'#'
        )
    {
        return true;
    }
    if trimmed
        .bytes()
        .any(|c| matches!(c, b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'|' | b'\\'))
    {
        return true;
    }
    // Letters and separators only: an identifier or a dotted path, not a secret.
    if trimmed
        .bytes()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'.' | b'-' | b':'))
    {
        return true;
    }
    // self.x, this.x, env.X, args.x: a field access with a digit in its name.
    [
        "self.", "this.", "env.", "args.", "config.", "cfg.", "opts.", "options.", "params.",
    ]
    .iter()
    .any(|p| trimmed.starts_with(p))
}

/// Shannon entropy of `bytes`, in bits per byte.
pub(crate) fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}
