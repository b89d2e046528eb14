use crate::Message;

/// A fast, tokenizer-free estimate of how many tokens `text` is: about four bytes a
/// token for English prose, never less than one token per whitespace-separated word.
/// Used where a server reports no counts and to fit context into a window; it errs high.
pub fn estimate_tokens(text: &str) -> u64 {
    let by_bytes = text.len().div_ceil(4) as u64;
    let by_words = text.split_whitespace().count() as u64;
    by_bytes.max(by_words)
}

/// Tokens one message costs in a chat request: its text plus the per-message framing.
pub fn estimate_message_tokens(message: &Message) -> u64 {
    const FRAMING: u64 = 4;
    estimate_tokens(&message.content) + FRAMING
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_text() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("a b c d e"), 5);
        assert!(estimate_tokens(&"word ".repeat(100)) >= 100);
        assert_eq!(estimate_message_tokens(&Message::user("abcd")), 5);
    }
}
