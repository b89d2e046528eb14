//! pai-providers against a mock OpenAI-compatible server on 127.0.0.1: the real client,
//! retry service and error mapping run over real HTTP.

// clippy.toml allows unwrap in `#[test]` functions only; the suite's helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod egress;
mod errors;
mod ollama;
mod openai;
mod openai_tools;
mod retry;
mod secrets;
mod stream;
mod tls;

use std::time::Duration;

use futures::StreamExt;
use pai_providers::{
    ChatEvent, ChatRequest, Endpoint, NetSettings, ProviderConfig, ProviderError, ProviderKind,
    RetryPolicy, connect,
};
use pai_test_support::MockOpenAi;
use pai_types::{Locality, Message, Secret};

pub const MODEL: &str = "test-model";
pub const KEY: &str = "sk-test-0123456789";
pub const KEY_HINT: &str = "set OPENAI_API_KEY, or store a key with 'pai <session> key'";

/// Small enough that a test which retries to the cap still takes well under a second.
pub fn fast_net() -> NetSettings {
    NetSettings {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(10),
            max_wait: Duration::from_millis(200),
        },
        proxy: None,
    }
}

/// A local endpoint at `base_url` with [`KEY`] and [`fast_net`].
pub fn config_at(base_url: String) -> ProviderConfig {
    ProviderConfig {
        name: "openai".into(),
        kind: ProviderKind::OpenAiCompatible,
        base_url,
        locality: Locality::Local,
        api_key: Some(Secret::new(KEY.to_string())),
        key_hint: KEY_HINT.into(),
        headers: Vec::new(),
        net: fast_net(),
    }
}

pub fn config(mock: &MockOpenAi) -> ProviderConfig {
    config_at(mock.base_url())
}

/// The endpoint every error from `mock` should name.
pub fn endpoint(mock: &MockOpenAi) -> Endpoint {
    Endpoint {
        provider: "openai".into(),
        url: mock.base_url(),
    }
}

pub fn messages() -> Vec<Message> {
    vec![
        Message::system("You are terse."),
        Message::user("Say hello."),
    ]
}

pub fn request(stream: bool) -> ChatRequest {
    ChatRequest::new(MODEL, messages(), stream)
}

/// What one call yielded: the events in order and the error it ended with, if any.
#[derive(Debug)]
pub struct Outcome {
    pub events: Vec<ChatEvent>,
    pub error: Option<ProviderError>,
}

impl Outcome {
    /// The events of a call that must have succeeded.
    #[track_caller]
    pub fn events(self) -> Vec<ChatEvent> {
        if let Some(err) = self.error {
            panic!("expected success, got {err:?} after {:?}", self.events);
        }
        self.events
    }

    /// The error of a call that must have failed, after checking it reads as one line.
    #[track_caller]
    pub fn error(self) -> (Vec<ChatEvent>, ProviderError) {
        let Some(err) = self.error else {
            panic!("expected an error, got {:?}", self.events);
        };
        assert_one_line(&err);
        (self.events, err)
    }
}

/// Runs one chat call through `connect` and drains its stream. Fails the test rather than
/// hang if the call does not end within 10s.
pub async fn chat(config: ProviderConfig, request: ChatRequest) -> Outcome {
    let provider = connect(config).expect("the test config is valid");
    let run = async {
        let mut stream = match provider.chat(request).await {
            Ok(stream) => stream,
            Err(err) => {
                return Outcome {
                    events: Vec::new(),
                    error: Some(err),
                };
            }
        };
        let mut outcome = Outcome {
            events: Vec::new(),
            error: None,
        };
        while let Some(item) = stream.next().await {
            assert!(
                outcome.error.is_none(),
                "the stream went on after an error: {item:?}"
            );
            match item {
                Ok(event) => outcome.events.push(event),
                Err(err) => outcome.error = Some(err),
            }
        }
        outcome
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the call ends within 10s")
}

/// Every error is one line that names the endpoint.
#[track_caller]
pub fn assert_one_line(err: &ProviderError) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "not one line: {text:?}");
    assert!(!text.contains('\r'), "not one line: {text:?}");
}
