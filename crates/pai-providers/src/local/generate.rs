//! The generation loop: prompt in one forward pass, then one token at a time until an
//! end-of-turn token, the token budget, or the caller stops listening.

use std::time::Instant;

use tokenizers::Tokenizer;

use super::model::Loaded;

/// Penalise tokens seen in the last this-many tokens, so a small model does not loop.
const REPEAT_WINDOW: usize = 64;
const REPEAT_PENALTY: f32 = 1.1;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The model ended its turn.
    EndOfTurn,
    /// The token budget or the context window ran out.
    Length,
    /// The caller stopped listening (Ctrl+C dropped the stream).
    Cancelled,
}

impl Stop {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Stop::EndOfTurn => "stop",
            Stop::Length => "length",
            Stop::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Generated {
    pub(crate) tokens: usize,
    pub(crate) stop: Stop,
}

/// Runs the model on `prompt` and hands each decoded piece of text to `emit`, which
/// returns false once nobody is listening. At most `max_new` tokens are generated.
pub(crate) fn generate(
    model: &mut Loaded,
    prompt: &[u32],
    max_new: usize,
    mut emit: impl FnMut(String) -> bool,
) -> candle_core::Result<Generated> {
    model.weights.clear();
    let started = Instant::now();
    let mut context: Vec<u32> = prompt.to_vec();
    let mut text = Detokenizer::default();
    let mut logits = model.weights.forward(prompt, 0)?;
    let prefill = started.elapsed();
    let mut generated = 0;
    let stop = loop {
        if generated >= max_new {
            break Stop::Length;
        }
        // Only the answer's own tokens: penalising the prompt's would steer the model away
        // from the words of the question, which a good answer often repeats.
        let recent = &context[context
            .len()
            .saturating_sub(REPEAT_WINDOW)
            .max(prompt.len())..];
        let next = pick(&mut logits, recent);
        if model.stops.contains(&next) {
            break Stop::EndOfTurn;
        }
        generated += 1;
        context.push(next);
        if let Some(piece) = text.push(&model.tokenizer, next)
            && !emit(piece)
        {
            break Stop::Cancelled;
        }
        if generated >= max_new {
            break Stop::Length;
        }
        logits = model.weights.forward(&[next], context.len() - 1)?;
    };
    if stop != Stop::Cancelled
        && let Some(rest) = text.finish(&model.tokenizer)
    {
        emit(rest);
    }
    let decode = started.elapsed() - prefill;
    tracing::info!(
        prompt_tokens = prompt.len(),
        completion_tokens = generated,
        prefill_ms = prefill.as_millis() as u64,
        decode_ms = decode.as_millis() as u64,
        tokens_per_s = format!("{:.1}", generated as f64 / decode.as_secs_f64().max(1e-9)),
        stop = stop.reason(),
        "local generation done"
    );
    Ok(Generated {
        tokens: generated,
        stop,
    })
}

/// Greedy choice after a repetition penalty: the same question gets the same answer.
fn pick(logits: &mut [f32], recent: &[u32]) -> u32 {
    // A seen token gets the penalty once, however often it was seen.
    let mut seen = recent.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for t in seen {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l >= 0.0 {
                *l / REPEAT_PENALTY
            } else {
                *l * REPEAT_PENALTY
            };
        }
    }
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i as u32, l);
        }
    }
    best.0
}

/// Turns tokens into text as they come. A token can end inside a UTF-8 character, and
/// decoders treat a sequence's first token specially, so text is released only once it
/// is stable, decoded together with the token released before it.
#[derive(Debug, Default)]
struct Detokenizer {
    tokens: Vec<u32>,
    /// Start of the window decoded for context.
    prev: usize,
    /// Tokens before this index are released.
    current: usize,
}

impl Detokenizer {
    fn decode(tokenizer: &Tokenizer, tokens: &[u32]) -> String {
        tokenizer.decode(tokens, true).unwrap_or_default()
    }

    /// The text that the tokens since the last release add, if it is complete.
    fn unreleased(&self, tokenizer: &Tokenizer) -> Option<String> {
        let before = Self::decode(tokenizer, &self.tokens[self.prev..self.current]);
        let after = Self::decode(tokenizer, &self.tokens[self.prev..]);
        if after.len() <= before.len() || after.ends_with('\u{FFFD}') {
            return None;
        }
        after.strip_prefix(before.as_str()).map(str::to_string)
    }

    fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> Option<String> {
        self.tokens.push(token);
        let piece = self.unreleased(tokenizer)?;
        self.prev = self.current;
        self.current = self.tokens.len();
        Some(piece)
    }

    /// Whatever is still held back when generation ends.
    fn finish(&mut self, tokenizer: &Tokenizer) -> Option<String> {
        let before = Self::decode(tokenizer, &self.tokens[self.prev..self.current]);
        let after = Self::decode(tokenizer, &self.tokens[self.prev..]);
        self.current = self.tokens.len();
        after
            .strip_prefix(before.as_str())
            .filter(|rest| !rest.is_empty())
            .map(str::to_string)
    }
}
