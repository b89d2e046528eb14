//! Turns what the user typed into an FTS5 query. Every word becomes a quoted term (so
//! nothing typed is FTS5 syntax), common English words are dropped when other words
//! remain (they match nearly every chunk, and scoring every match is what made a query
//! of two common words take hundreds of milliseconds), and the number of terms is capped.

/// Most terms a query keeps; the rest are ignored.
const MAX_TERMS: usize = 12;

/// Words so common that matching them says little and costs much.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
    "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he",
    "her", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "more", "my", "no",
    "not", "of", "on", "one", "or", "our", "out", "she", "so", "some", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "to", "up", "us", "was", "we",
    "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

/// The words of a query, as searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terms(pub Vec<String>);

impl Terms {
    /// The terms of `query`: words of letters and digits, lowercased, deduplicated,
    /// stopwords dropped unless nothing else is left.
    pub(crate) fn parse(query: &str) -> Terms {
        let mut words: Vec<String> = Vec::new();
        for w in query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let w = w.to_lowercase();
            if !words.contains(&w) {
                words.push(w);
            }
        }
        let content: Vec<String> = words.iter().filter(|w| !is_stopword(w)).cloned().collect();
        let mut terms = if content.is_empty() { words } else { content };
        terms.truncate(MAX_TERMS);
        Terms(terms)
    }

    /// Nothing to search for.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The FTS5 expression matching chunks with every term.
    pub(crate) fn all(&self) -> String {
        self.joined(" AND ")
    }

    /// The FTS5 expression matching chunks with any term.
    pub(crate) fn any(&self) -> String {
        self.joined(" OR ")
    }

    fn joined(&self, op: &str) -> String {
        self.0
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(op)
    }
}

/// Whether `word` (lowercase) is a stopword.
pub(crate) fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_stopword_list_is_sorted_for_binary_search() {
        let mut sorted = STOPWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, STOPWORDS);
    }

    #[test]
    fn stopwords_go_unless_nothing_else_is_left() {
        assert_eq!(
            Terms::parse("How do I rotate the API keys?").0,
            vec!["rotate", "api", "keys"]
        );
        assert_eq!(Terms::parse("the and").0, vec!["the", "and"]);
        assert!(Terms::parse("  ?! ").is_empty());
    }

    #[test]
    fn typed_syntax_is_quoted_not_obeyed() {
        let t = Terms::parse("NEAR(a b) OR \"x\" title:*");
        assert_eq!(t.all(), "\"near\" AND \"b\" AND \"x\" AND \"title\"");
        assert_eq!(Terms::parse("café Größe").any(), "\"café\" OR \"größe\"");
    }
}
