//! The shared vocabulary of PAI: the types every other crate speaks — messages, token
//! usage, where a model runs, secrets that cannot be printed, endpoint URLs with their
//! credentials masked, validated session names.
//! This crate does no I/O and has no async code; it only defines and validates values.

mod class;
mod effect;
mod message;
mod names;
mod redact;
mod secret;
mod tokens;

pub use class::{DataClass, Origin, Provenance, UnknownClass};
pub use effect::Effect;
pub use message::{Image, Locality, Message, Mode, Role, ToolCall, ToolSpec, Usage};
pub use names::{NameError, SessionName};
pub use redact::{has_credentials, redact_endpoint};
pub use secret::Secret;
pub use tokens::{estimate_message_tokens, estimate_tokens, image_tokens};
