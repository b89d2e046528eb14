use pai_types::{DataClass, Message, Origin, Role, estimate_message_tokens, estimate_tokens};

use crate::config::ContextSettings;
use crate::error::{CoreError, Result};
use crate::session::HistoryEntry;

/// Context windows of well-known model families, longest prefix first; 8k otherwise.
const WINDOWS: &[(&str, u64)] = &[
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-4", 8_192),
    ("gpt-3.5-turbo", 16_385),
    ("gpt-5", 400_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("claude", 200_000),
    ("llama-3", 128_000),
    ("llama3", 128_000),
    ("mistral", 32_000),
    ("qwen", 32_768),
    // The in-process provider runs llama-architecture models at most this far (candle).
    ("smollm", 4_096),
    ("deepseek", 64_000),
];
const DEFAULT_WINDOW: u64 = 8_192;

/// The context window PAI assumes for `model`.
pub fn model_window(model: &str) -> u64 {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    WINDOWS
        .iter()
        .find(|(prefix, _)| m.starts_with(prefix))
        .map_or(DEFAULT_WINDOW, |(_, w)| *w)
}

/// What a model will see for one call, and what had to be left out to fit its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The messages to send, system prompt first.
    pub messages: Vec<Message>,
    /// History messages left out (oldest first) because the window could not hold them.
    pub left_out: usize,
}

/// The one place that decides what a model sees.
#[derive(Debug, Clone)]
pub struct ContextManager {
    settings: ContextSettings,
}

/// Instructions for a fold call.
const FOLD_SYSTEM: &str = "You maintain a running summary of a conversation between a user \
     and an assistant. Merge the previous summary and the new turns into one updated summary. \
     Keep facts, names, decisions, open questions and the user's preferences; drop \
     pleasantries. Reply with the summary only.";

impl ContextManager {
    /// A manager that applies `settings` to every call.
    pub fn new(settings: ContextSettings) -> Self {
        Self { settings }
    }

    /// Tokens a request to `model` may hold: its window less the room kept for the answer.
    pub fn budget(&self, model: &str) -> u64 {
        let window = match self.settings.context_window {
            0 => model_window(model),
            w => w,
        };
        window.saturating_sub(self.settings.reserve_output_tokens.min(window / 2))
    }

    /// This manager with `system` as the system prompt instead of `[context]
    /// system_prompt` (a session's own, a role's or `--system`).
    pub fn with_system(&self, system: Option<&str>) -> Self {
        let mut m = self.clone();
        if let Some(s) = system {
            m.settings.system_prompt = s.to_string();
        }
        m
    }

    /// Chat mode: the system prompt, then as much of the history as fits (newest kept,
    /// oldest dropped first), then the attached files and the new input.
    pub fn chat(
        &self,
        model: &str,
        history: &[HistoryEntry],
        attached: &[Message],
        input: &str,
    ) -> Result<Context> {
        self.assemble(model, None, history, attached, input)
    }

    /// Prompt mode: the system prompt, the running summary, the turns not yet folded into
    /// it (trimmed like chat if they must be), then the new input. A summary too long for
    /// the window is cut rather than failing the prompt: a fold can misbehave (a model that
    /// echoes everything back), and that must never make later prompts fail.
    pub fn prompt(
        &self,
        model: &str,
        (summary, summary_class): (&str, DataClass),
        unfolded: &[HistoryEntry],
        attached: &[Message],
        input: &str,
    ) -> Result<Context> {
        let summary = (!summary.is_empty()).then(|| {
            let fixed = estimate_message_tokens(&self.system())
                + estimate_message_tokens(&Message::user(input));
            // Half of what is left after the fixed parts, so recent turns still fit.
            let room = self.budget(model).saturating_sub(fixed) / 2;
            let text = fit(summary, room.saturating_sub(16));
            Message::system(format!("Summary of the conversation so far:\n{text}"))
                .with_provenance(Origin::Summary, summary_class)
        });
        self.assemble(model, summary, unfolded, attached, input)
    }

    fn system(&self) -> Message {
        Message::system(self.settings.system_prompt.clone())
    }

    fn assemble(
        &self,
        model: &str,
        summary: Option<Message>,
        history: &[HistoryEntry],
        attached: &[Message],
        input: &str,
    ) -> Result<Context> {
        let budget = self.budget(model);
        let system = self.system();
        let user = Message::user(input);
        let fixed: u64 = [Some(&system), summary.as_ref(), Some(&user)]
            .into_iter()
            .flatten()
            .chain(attached)
            .map(estimate_message_tokens)
            .sum();
        if fixed > budget {
            let system_tokens = estimate_message_tokens(&system);
            return Err(if system_tokens >= budget {
                CoreError::SystemPromptTooLong {
                    tokens: system_tokens,
                    window: budget,
                    model: model.into(),
                }
            } else {
                CoreError::InputTooLong {
                    tokens: estimate_tokens(input)
                        + attached.iter().map(estimate_message_tokens).sum::<u64>(),
                    window: budget.saturating_sub(system_tokens),
                    model: model.into(),
                }
            });
        }
        let mut room = budget - fixed;
        let mut kept = Vec::new();
        for entry in history.iter().rev() {
            let m = entry.message();
            let cost = estimate_message_tokens(&m);
            if cost > room {
                break;
            }
            room -= cost;
            kept.push(m);
        }
        // Never open on an orphaned answer: the model should see the question first.
        while kept.last().is_some_and(|m| m.role == Role::Assistant) {
            kept.pop();
        }
        let left_out = history.len() - kept.len();
        let mut messages = Vec::with_capacity(kept.len() + attached.len() + 3);
        messages.push(system);
        messages.extend(summary);
        messages.extend(kept.into_iter().rev());
        messages.extend(attached.iter().cloned());
        messages.push(user);
        Ok(Context { messages, left_out })
    }

    /// Whether found secrets are stored in the history as typed (`[context]
    /// keep_secrets_in_history`).
    pub fn keeps_secrets(&self) -> bool {
        self.settings.keep_secrets_in_history
    }

    /// Whether the unfolded turns have grown past the threshold and should be folded.
    pub fn should_fold(&self, unfolded: &[HistoryEntry]) -> bool {
        let tokens: u64 = unfolded
            .iter()
            .map(|e| estimate_message_tokens(&e.message()))
            .sum();
        tokens > self.settings.summary_threshold_tokens
    }

    /// How many of `unfolded` (from the start) the next fold call can take with `summary`
    /// inside `model`'s window: at least one, whose text [`Self::fold_request`] cuts if it
    /// alone is too long. Folding piece by piece keeps every fold call within the window.
    pub fn fold_piece(&self, model: &str, summary: &str, unfolded: &[HistoryEntry]) -> usize {
        let budget = self.budget(model);
        let mut used =
            estimate_message_tokens(&Message::system(FOLD_SYSTEM)) + estimate_tokens(summary) + 32;
        let mut n = 0;
        for e in unfolded {
            let cost = estimate_tokens(&e.content) + 4;
            if n > 0 && used + cost > budget {
                break;
            }
            used += cost;
            n += 1;
        }
        n
    }

    /// The request that asks `model` to fold `unfolded` into `summary`, cut to fit its
    /// window: a summary or a turn too long for it keeps its start and end.
    pub fn fold_request(
        &self,
        model: &str,
        summary: &str,
        unfolded: &[HistoryEntry],
    ) -> Vec<Message> {
        let budget = self.budget(model);
        let overhead = estimate_message_tokens(&Message::system(FOLD_SYSTEM)) + 32;
        let room = budget.saturating_sub(overhead);
        // The previous summary may take half the room; the new turns share the rest.
        let previous = if summary.is_empty() {
            "(none yet)".to_string()
        } else {
            fit(summary, room / 2)
        };
        let per_turn =
            room.saturating_sub(estimate_tokens(&previous)) / unfolded.len().max(1) as u64;
        let mut transcript = String::new();
        for e in unfolded {
            transcript.push_str(e.role.as_str());
            transcript.push_str(": ");
            transcript.push_str(&fit(&e.content, per_turn.saturating_sub(4)));
            transcript.push('\n');
        }
        vec![
            Message::system(FOLD_SYSTEM),
            Message::user(format!(
                "Previous summary:\n{previous}\n\nNew turns:\n{transcript}"
            )),
        ]
    }
}

/// `text` cut to about `tokens` tokens, keeping its start and end around a marker.
fn fit(text: &str, tokens: u64) -> String {
    if estimate_tokens(text) <= tokens {
        return text.to_string();
    }
    // The estimate is about four bytes a token.
    let keep = (tokens as usize * 4).saturating_sub(48) / 2;
    let mut head = keep.min(text.len());
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len().saturating_sub(keep).max(head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[… {} bytes left out to fit the context window …]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn entry(role: Role, text: &str) -> HistoryEntry {
        HistoryEntry::new(Message::new(role, text))
    }

    fn manager(window: u64) -> ContextManager {
        ContextManager::new(ContextSettings {
            system_prompt: "sys".into(),
            summary_threshold_tokens: 50,
            reserve_output_tokens: 0,
            context_window: window,
            keep_secrets_in_history: false,
        })
    }

    #[test]
    fn chat_keeps_everything_that_fits() {
        let h = [entry(Role::User, "q1"), entry(Role::Assistant, "a1")];
        let msgs = manager(1000).chat("m", &h, &[], "q2").unwrap().messages;
        assert_eq!(
            msgs,
            vec![
                Message::system("sys"),
                Message::user("q1").with_provenance(Origin::History, DataClass::Internal),
                Message::assistant("a1").with_provenance(Origin::History, DataClass::Internal),
                Message::user("q2")
            ]
        );
    }

    #[test]
    fn chat_drops_oldest_first_and_keeps_system() {
        let long = "word ".repeat(40); // ~50 tokens
        let h = [
            entry(Role::User, &long),
            entry(Role::Assistant, &long),
            entry(Role::User, "recent question"),
            entry(Role::Assistant, "recent answer"),
        ];
        let ctx = manager(80).chat("m", &h, &[], "now").unwrap();
        assert_eq!(ctx.left_out, 2);
        let msgs = ctx.messages;
        assert_eq!(
            msgs,
            vec![
                Message::system("sys"),
                Message::user("recent question")
                    .with_provenance(Origin::History, DataClass::Internal),
                Message::assistant("recent answer")
                    .with_provenance(Origin::History, DataClass::Internal),
                Message::user("now")
            ]
        );
    }

    #[test]
    fn prompt_sends_summary_unfolded_and_input() {
        let h = [entry(Role::User, "q"), entry(Role::Assistant, "a")];
        let msgs = manager(1000)
            .prompt("m", ("earlier stuff", DataClass::Internal), &h, &[], "next")
            .unwrap()
            .messages;
        assert_eq!(
            msgs,
            vec![
                Message::system("sys"),
                Message::system("Summary of the conversation so far:\nearlier stuff")
                    .with_provenance(Origin::Summary, DataClass::Internal),
                Message::user("q").with_provenance(Origin::History, DataClass::Internal),
                Message::assistant("a").with_provenance(Origin::History, DataClass::Internal),
                Message::user("next")
            ]
        );
    }

    #[test]
    fn input_longer_than_the_window_is_an_error() {
        let err = manager(100)
            .chat("m", &[], &[], &"word ".repeat(500))
            .unwrap_err();
        assert!(err.to_string().contains("shorten it"), "{err}");
    }

    #[test]
    fn fold_threshold() {
        let m = manager(1000);
        assert!(!m.should_fold(&[entry(Role::User, "short")]));
        assert!(m.should_fold(&[entry(Role::User, &"word ".repeat(60))]));
    }

    #[test]
    fn an_oversized_summary_is_cut_instead_of_failing_the_prompt() {
        let huge = "fact ".repeat(2000);
        let ctx = manager(200)
            .prompt("m", (&huge, DataClass::Internal), &[], &[], "next")
            .unwrap();
        let sent: u64 = ctx.messages.iter().map(estimate_message_tokens).sum();
        assert!(sent <= 200, "{sent}");
        assert!(ctx.messages[1].content.contains("left out to fit"));
        assert_eq!(ctx.messages.last().unwrap(), &Message::user("next"));
    }

    #[test]
    fn folds_are_planned_in_pieces_that_fit_the_window() {
        let m = manager(200);
        let turns: Vec<_> = (0..20)
            .map(|i| entry(Role::User, &format!("turn {i} {}", "word ".repeat(20))))
            .collect();
        let mut start = 0;
        let mut pieces = 0;
        while start < turns.len() {
            let n = m.fold_piece("m", "a summary", &turns[start..]);
            assert!(n >= 1);
            let sent: u64 = m
                .fold_request("m", "a summary", &turns[start..start + n])
                .iter()
                .map(estimate_message_tokens)
                .sum();
            assert!(sent <= 200, "piece of {n} is {sent} tokens");
            start += n;
            pieces += 1;
        }
        assert!(pieces > 1);
        // One turn longer than the window alone is cut to fit.
        let giant = [entry(Role::User, &"word ".repeat(1000))];
        assert_eq!(m.fold_piece("m", "", &giant), 1);
        let sent: u64 = m
            .fold_request("m", "", &giant)
            .iter()
            .map(estimate_message_tokens)
            .sum();
        assert!(sent <= 200, "{sent}");
    }

    #[test]
    fn known_windows() {
        assert_eq!(model_window("gpt-4o-mini"), 128_000);
        assert_eq!(model_window("gpt-4"), 8_192);
        assert_eq!(model_window("meta-llama/llama-3.1-8b"), 128_000);
        assert_eq!(model_window("something-else"), 8_192);
    }
}
