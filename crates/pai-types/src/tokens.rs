use crate::Message;

/// A fast, tokenizer-free estimate of how many tokens `text` is: about four bytes a
/// token for English prose, never less than one token per whitespace-separated word.
/// Used where a server reports no counts and to fit context into a window; it errs high.
pub fn estimate_tokens(text: &str) -> u64 {
    let by_bytes = text.len().div_ceil(4) as u64;
    let by_words = text.split_whitespace().count() as u64;
    by_bytes.max(by_words)
}

/// Tokens one message costs in a chat request: its text, its images and the
/// per-message framing.
pub fn estimate_message_tokens(message: &Message) -> u64 {
    const FRAMING: u64 = 4;
    estimate_tokens(&message.content)
        + message.images.iter().map(|i| i.tokens).sum::<u64>()
        + FRAMING
}

/// What an image of `width` × `height` pixels (`None`: unknown) costs as input, by the
/// larger of the two published rules, so that a budget is never undercounted:
/// Anthropic's (long edge scaled to at most 1,568 px, then one token per 750 px²) and
/// OpenAI's high-detail tiles (fit into 2,048 px, short edge scaled to 768 px, then 170
/// per 512-px tile plus 85). An image whose size cannot be read counts as the most either
/// rule charges for one.
pub fn image_tokens(size: Option<(u64, u64)>) -> u64 {
    const MOST: u64 = 1_600;
    let Some((w, h)) = size.filter(|&(w, h)| w > 0 && h > 0) else {
        return MOST;
    };
    let (w, h) = (w as f64, h as f64);
    let anthropic = {
        let scale = (1568.0 / w.max(h)).min(1.0);
        ((w * scale) * (h * scale) / 750.0).ceil()
    };
    let openai = {
        let fit = (2048.0 / w.max(h)).min(1.0);
        let (w, h) = (w * fit, h * fit);
        let short = (768.0 / w.min(h)).min(1.0);
        let (w, h) = (w * short, h * short);
        85.0 + 170.0 * ((w / 512.0).ceil() * (h / 512.0).ceil())
    };
    (anthropic.max(openai) as u64).min(MOST)
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

    #[test]
    fn images_cost_what_the_dearer_rule_says() {
        // 1,000 × 1,000: Anthropic 1,334 (1e6 / 750), OpenAI 765 (768² in 4 tiles).
        assert_eq!(image_tokens(Some((1000, 1000))), 1334);
        // A thumbnail: one OpenAI tile (255) beats 100² / 750.
        assert_eq!(image_tokens(Some((100, 100))), 255);
        // Huge or unreadable: the most either charges.
        assert_eq!(image_tokens(Some((8000, 6000))), 1600);
        assert_eq!(image_tokens(None), 1600);
        assert_eq!(image_tokens(Some((0, 10))), 1600);
        let mut m = Message::user("abcd");
        m.images.push(crate::Image {
            media_type: "image/png".into(),
            data: String::new(),
            tokens: 255,
        });
        assert_eq!(estimate_message_tokens(&m), 5 + 255);
    }
}
