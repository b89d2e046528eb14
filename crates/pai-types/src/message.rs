use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{DataClass, Origin, Provenance};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Standing instructions that frame the whole conversation.
    System,
    /// What the person using PAI typed.
    User,
    /// The model's reply.
    Assistant,
    /// The result of a tool call, answering an assistant message's `tool_calls`.
    Tool,
}

impl Role {
    /// The lowercase name used on the wire and in saved sessions.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text; may be empty on an assistant message that only calls tools.
    pub content: String,
    /// Tools the assistant asked to call (assistant messages only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Which call this message answers (tool messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Images sent with the text (user messages only: `-f photo.png`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Where the text came from and how sensitive it is. Never sent to a model: the
    /// policy reads it before anything leaves.
    #[serde(skip)]
    pub provenance: Provenance,
}

/// An image sent to a model: its media type and its bytes, base64-encoded as every API
/// takes them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub media_type: String,
    /// The file's bytes, standard base64 with padding.
    pub data: String,
    /// What it is estimated to cost a model in input tokens ([`crate::image_tokens`]),
    /// so that budgets and windows count it before the server does.
    #[serde(default)]
    pub tokens: u64,
}

impl std::fmt::Debug for Image {
    // Megabytes of base64 in a log line help nobody.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Image({}, {} base64 bytes)",
            self.media_type,
            self.data.len()
        )
    }
}

/// A tool the model may call: its name, what it does, and a JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// What the model calls it by; unique among the tools offered in one request.
    pub name: String,
    /// What the tool does, written for the model so it can decide when to call it.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A model's request to call a tool. `arguments` is JSON text, exactly as the model wrote
/// it: it may be invalid, and the caller decides what to do about that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for this call; the tool's answer repeats it as `tool_call_id`.
    pub id: String,
    /// Which tool to call.
    pub name: String,
    /// The arguments object, as JSON text.
    pub arguments: String,
}

impl Message {
    /// A plain message from `role`, with no tool calls.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        let origin = match role {
            Role::System => Origin::System,
            Role::User => Origin::User,
            Role::Assistant => Origin::Answer,
            Role::Tool => Origin::ToolResult {
                tool: String::new(),
            },
        };
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            images: Vec::new(),
            provenance: Provenance::new(origin, DataClass::default()),
        }
    }

    /// This message with its origin and class set.
    pub fn with_provenance(mut self, origin: Origin, class: DataClass) -> Self {
        self.provenance = Provenance::new(origin, class);
        self
    }

    /// How sensitive the message is.
    pub fn class(&self) -> DataClass {
        self.provenance.class
    }

    /// An assistant turn that asks for tool calls (its text may be empty).
    pub fn assistant_with_tools(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::new(Role::Assistant, content)
        }
    }

    /// The result of the tool call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
    /// Standing instructions for the model.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// What the user typed.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// A model reply without tool calls.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// Token counts of one model call, or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens the model read: system prompt, history and tool specs included.
    pub prompt_tokens: u64,
    /// Tokens the model wrote.
    pub completion_tokens: u64,
    /// True when any part of the count was estimated locally rather than reported by the server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl Usage {
    /// Prompt and completion tokens together.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Adds `other` into this sum; the sum is estimated if either part was.
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.estimated |= other.estimated;
    }
}

/// Where a model runs: on this machine, or somewhere the request has to travel to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locality {
    /// Runs on this machine: prompts never leave it.
    Local,
    /// Runs elsewhere: prompts travel over the network.
    Remote,
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Locality::Local => "local",
            Locality::Remote => "remote",
        })
    }
}

/// How much of the session the model sees and how much it may do in one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Full history, trimmed to the model's window.
    Chat,
    /// Running summary, the turns not yet folded into it, and the new prompt.
    Prompt,
    /// As prompt, but the model loops through tools until it is done or a limit is hit.
    Agent,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Mode::Chat => "chat",
            Mode::Prompt => "prompt",
            Mode::Agent => "agent",
        })
    }
}

impl Mode {
    /// Whether this mode may offer a tool with `effect` at all: chat reads, prompt reads
    /// and fetches, agent may do anything (write and exec still behind approval).
    pub fn offers(self, effect: crate::Effect) -> bool {
        use crate::Effect;
        match self {
            Mode::Chat => effect == Effect::Read,
            Mode::Prompt => matches!(effect, Effect::Read | Effect::Network),
            Mode::Agent => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_and_keeps_estimated_flag() {
        let mut total = Usage::default();
        total.add(&Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            estimated: false,
        });
        total.add(&Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
            estimated: true,
        });
        pretty_assertions::assert_eq!(
            total,
            Usage {
                prompt_tokens: 4,
                completion_tokens: 5,
                estimated: true
            }
        );
        assert_eq!(total.total(), 9);
    }

    #[test]
    fn message_serialises_with_lowercase_role() {
        let json = serde_json::to_string(&Message::user("hi")).unwrap();
        assert_eq!(json, r#"{"role":"user","content":"hi"}"#);
    }
}
