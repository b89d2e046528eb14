//! Test helpers shared by PAI's crates, never shipped: a mock OpenAI-compatible model
//! server on 127.0.0.1 (so the real client code runs over real HTTP) and a temporary
//! `PAI_HOME` / `PAI_CONFIG_DIR` pair so no test touches the user's files.

mod bert;
#[cfg(feature = "gguf")]
mod gguf;
mod home;
mod openai;

pub use bert::{TINY_BERT_DIMS, write_tiny_bert};
#[cfg(feature = "gguf")]
pub use gguf::{TINY_CONTEXT, TinyModel, tiny_llama_gguf, write_tiny_llama};
pub use home::TempHome;
pub use openai::{
    MockOpenAi, chat_completion, chat_endpoint, raw_http_once, read_request, refused_base_url,
    sse_body, sse_chunks,
};
