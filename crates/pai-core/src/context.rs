use pai_types::{Message, Role, estimate_message_tokens, estimate_tokens};

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

/// The one place that decides what a model sees.
#[derive(Debug, Clone)]
pub struct ContextManager {
    settings: ContextSettings,
}

impl ContextManager {
    pub fn new(settings: ContextSettings) -> Self {
        Self { settings }
    }

    fn budget(&self, model: &str) -> u64 {
        let window = match self.settings.context_window {
            0 => model_window(model),
            w => w,
        };
        window.saturating_sub(self.settings.reserve_output_tokens.min(window / 2))
    }

    /// Chat mode: the system prompt, then as much of the history as fits (newest kept,
    /// oldest dropped first), then the new input.
    pub fn chat(&self, model: &str, history: &[HistoryEntry], input: &str) -> Result<Vec<Message>> {
        self.assemble(model, None, history, input)
    }

    /// Prompt mode: the system prompt, the running summary, the turns not yet folded into
    /// it (trimmed like chat if they must be), then the new input.
    pub fn prompt(
        &self,
        model: &str,
        summary: &str,
        unfolded: &[HistoryEntry],
        input: &str,
    ) -> Result<Vec<Message>> {
        let summary = (!summary.is_empty())
            .then(|| Message::system(format!("Summary of the conversation so far:\n{summary}")));
        self.assemble(model, summary, unfolded, input)
    }

    fn assemble(
        &self,
        model: &str,
        summary: Option<Message>,
        history: &[HistoryEntry],
        input: &str,
    ) -> Result<Vec<Message>> {
        let budget = self.budget(model);
        let system = Message::system(self.settings.system_prompt.clone());
        let user = Message::user(input);
        let fixed: u64 = [Some(&system), summary.as_ref(), Some(&user)]
            .into_iter()
            .flatten()
            .map(estimate_message_tokens)
            .sum();
        if fixed > budget {
            return Err(CoreError::InputTooLong {
                tokens: estimate_tokens(input),
                window: budget,
                model: model.into(),
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
        let mut out = Vec::with_capacity(kept.len() + 3);
        out.push(system);
        out.extend(summary);
        out.extend(kept.into_iter().rev());
        out.push(user);
        Ok(out)
    }

    /// Whether the unfolded turns have grown past the threshold and should be folded.
    pub fn should_fold(&self, unfolded: &[HistoryEntry]) -> bool {
        let tokens: u64 = unfolded
            .iter()
            .map(|e| estimate_message_tokens(&e.message()))
            .sum();
        tokens > self.settings.summary_threshold_tokens
    }

    /// The request that asks the model to fold `unfolded` into `summary`.
    pub fn fold_request(&self, summary: &str, unfolded: &[HistoryEntry]) -> Vec<Message> {
        let mut transcript = String::new();
        for e in unfolded {
            transcript.push_str(e.role.as_str());
            transcript.push_str(": ");
            transcript.push_str(&e.content);
            transcript.push('\n');
        }
        let previous = if summary.is_empty() {
            "(none yet)"
        } else {
            summary
        };
        vec![
            Message::system(
                "You maintain a running summary of a conversation between a user and an assistant. \
                 Merge the previous summary and the new turns into one updated summary. Keep facts, \
                 names, decisions, open questions and the user's preferences; drop pleasantries. \
                 Reply with the summary only.",
            ),
            Message::user(format!(
                "Previous summary:\n{previous}\n\nNew turns:\n{transcript}"
            )),
        ]
    }
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
        })
    }

    #[test]
    fn chat_keeps_everything_that_fits() {
        let h = [entry(Role::User, "q1"), entry(Role::Assistant, "a1")];
        let msgs = manager(1000).chat("m", &h, "q2").unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::system("sys"),
                Message::user("q1"),
                Message::assistant("a1"),
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
        let msgs = manager(80).chat("m", &h, "now").unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::system("sys"),
                Message::user("recent question"),
                Message::assistant("recent answer"),
                Message::user("now")
            ]
        );
    }

    #[test]
    fn prompt_sends_summary_unfolded_and_input() {
        let h = [entry(Role::User, "q"), entry(Role::Assistant, "a")];
        let msgs = manager(1000)
            .prompt("m", "earlier stuff", &h, "next")
            .unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::system("sys"),
                Message::system("Summary of the conversation so far:\nearlier stuff"),
                Message::user("q"),
                Message::assistant("a"),
                Message::user("next")
            ]
        );
    }

    #[test]
    fn input_longer_than_the_window_is_an_error() {
        let err = manager(100)
            .chat("m", &[], &"word ".repeat(500))
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
    fn known_windows() {
        assert_eq!(model_window("gpt-4o-mini"), 128_000);
        assert_eq!(model_window("gpt-4"), 8_192);
        assert_eq!(model_window("meta-llama/llama-3.1-8b"), 128_000);
        assert_eq!(model_window("something-else"), 8_192);
    }
}
