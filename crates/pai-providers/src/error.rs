use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which provider, at which URL: every error names both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The provider's name as the user knows it (`openai`, `groq`, …).
    pub provider: String,
    /// The base URL; may hold credentials, which `Display` masks.
    pub url: String,
}

/// Credentials in the URL (from a config file) are masked: errors are printed and audited.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = pai_types::redact_endpoint(&self.url);
        write!(f, "{} at {url}", self.provider)
    }
}

/// Everything that can go wrong talking to a model endpoint. Each message is one line
/// that says what happened and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The endpoint needs a key and none was configured.
    #[error("no API key for {at}: {hint}")]
    MissingKey {
        /// The endpoint that wanted the key.
        at: Endpoint,
        /// How to supply one (`pai keys set …`, or the environment variable).
        hint: String,
    },
    /// The server refused the key (401/403).
    #[error("{at} rejected the API key ({status}): {hint}")]
    Auth {
        /// The endpoint that refused.
        at: Endpoint,
        /// The HTTP status it answered with.
        status: u16,
        /// How to supply a working key.
        hint: String,
    },
    /// The server does not know the requested model.
    #[error(
        "{at} does not serve model '{model}': list what it serves with 'pai models', then switch with 'pai <session> model <name>'"
    )]
    UnknownModel {
        /// The endpoint asked.
        at: Endpoint,
        /// The model id as requested.
        model: String,
    },
    /// Still answered 429 when the retries ran out.
    #[error("{at} is rate limiting requests (429) and PAI gave up after {attempts} attempt(s){}; wait a while and try again", wait_note(.retry_after))]
    RateLimited {
        /// The endpoint that throttled.
        at: Endpoint,
        /// How many requests were tried.
        attempts: u32,
        /// The wait the server last asked for, if it named one.
        retry_after: Option<Duration>,
    },
    /// The conversation no longer fits the model's context window.
    #[error(
        "the conversation is too long for model '{model}' at {at}: start afresh with 'pai reset', or use a model with a larger window"
    )]
    ContextTooLong {
        /// The endpoint that refused the prompt.
        at: Endpoint,
        /// The model whose window was exceeded.
        model: String,
    },
    /// A server-side failure (5xx, 408, 409) that outlasted the retries.
    #[error("{at} failed with {status} after {attempts} attempt(s): {message}; try again later")]
    Server {
        /// The failing endpoint.
        at: Endpoint,
        /// The last HTTP status.
        status: u16,
        /// How many requests were tried.
        attempts: u32,
        /// The server's own explanation, folded to one line.
        message: String,
    },
    /// The endpoint answered with a redirect. PAI follows none from a model endpoint, so
    /// the request (the whole conversation, the key) went nowhere else.
    #[error(
        "{at} redirected the request ({status}) to {}{to}; PAI follows no redirect from a model endpoint, so nothing was sent there. If that is the right address, make it the base URL (--base-url, or base_url in config.toml)",
        if *.other_origin { "another server, " } else { "" }
    )]
    Redirected {
        /// The endpoint that redirected.
        at: Endpoint,
        /// The redirect status (301, 302, 303, 307, 308).
        status: u16,
        /// Where it pointed: the origin for another server, else the URL (credentials masked).
        to: String,
        /// The target's scheme, host or port differ from the endpoint's.
        other_origin: bool,
    },
    /// Any other refusal (4xx) that retrying cannot fix.
    #[error("{at} refused the request ({status}): {message}")]
    Rejected {
        /// The refusing endpoint.
        at: Endpoint,
        /// The HTTP status.
        status: u16,
        /// The server's own explanation, folded to one line.
        message: String,
    },
    /// No connection could be made (server down, wrong URL, DNS).
    #[error(
        "cannot connect to {at}: is the server running? Check the URL with 'pai status' ({detail})"
    )]
    Connect {
        /// The endpoint PAI tried to reach.
        at: Endpoint,
        /// The underlying network error.
        detail: String,
    },
    /// The server went silent for longer than the read timeout.
    #[error(
        "{at} did not answer within {}s; try again, or raise [network] read_timeout_secs in config.toml", .after.as_secs()
    )]
    Timeout {
        /// The silent endpoint.
        at: Endpoint,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The response did not parse as the API promises.
    #[error("{at} sent a response PAI cannot read: {detail}")]
    Malformed {
        /// The endpoint that sent it.
        at: Endpoint,
        /// What could not be read.
        detail: String,
    },
    /// A streamed answer ended before the server said it was finished.
    #[error(
        "the answer from {at} was cut off before it finished ({detail}); nothing was saved, try again"
    )]
    StreamCut {
        /// The endpoint whose stream broke.
        at: Endpoint,
        /// Why the stream ended.
        detail: String,
    },
    /// The provider's settings are unusable (a bad URL or header); caught before any request.
    #[error("invalid provider setting for {at}: {detail}")]
    Config {
        /// The endpoint being configured.
        at: Endpoint,
        /// Which setting is wrong and how to fix it.
        detail: String,
    },
    /// The local model's file does not exist.
    #[error("no model file at {path}; {hint}")]
    ModelMissing {
        /// Where the file was expected.
        path: String,
        /// How to get or register the model.
        hint: String,
    },
    /// The local model's file is not GGUF.
    #[error("{path} is not a GGUF model file; pass a .gguf file, or a wheel (.whl) that holds one")]
    NotGguf {
        /// The file given.
        path: String,
    },
    /// A valid GGUF that the local provider cannot run (architecture, quantisation).
    #[error("{path} cannot run in PAI's local provider: {detail}")]
    UnsupportedModel {
        /// The model file.
        path: String,
        /// What it uses that PAI does not support.
        detail: String,
    },
    /// A GGUF that stops short or contradicts itself.
    #[error(
        "{path} is truncated or corrupt ({detail}); download it again, then run 'pai models add' on it"
    )]
    CorruptModel {
        /// The model file.
        path: String,
        /// What was found broken.
        detail: String,
    },
    /// A local provider was asked for, but this build left it out.
    #[error(
        "this pai was built without the local provider (cargo feature 'local'); rebuild it with default features"
    )]
    LocalUnavailable,
}

fn wait_note(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (it asked to wait {}s)", d.as_secs_f32().ceil() as u64),
        None => String::new(),
    }
}

/// The result of every fallible provider operation.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// Server text made fit for one line of an error: whitespace folded, length capped.
pub(crate) fn one_line(text: &str) -> String {
    const MAX: usize = 200;
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= MAX {
        return folded;
    }
    let cut: String = folded.chars().take(MAX).collect();
    format!("{cut}…")
}

/// The session's secret values (API key, credential header values), kept to scrub them
/// from anything a server sends back: a server that echoes the key in an error body must
/// not get it printed or written to the audit log.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Arc<[String]>);

impl Secrets {
    /// Shorter values are left alone: replacing every "abc" in a message would mangle it
    /// and hide nothing worth hiding.
    const MIN_LEN: usize = 8;

    pub(crate) fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .map(str::trim)
            .filter(|v| v.chars().count() >= Self::MIN_LEN)
            .map(str::to_string)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self(values.into())
    }

    /// `text` with every known secret replaced by `[REDACTED]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in self.0.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[REDACTED]");
            }
        }
        text
    }

    /// `err` with every known secret scrubbed from the text it carries.
    pub(crate) fn redact(&self, err: ProviderError) -> ProviderError {
        if self.0.is_empty() {
            return err;
        }
        let s = |text: String| self.scrub(&text);
        use ProviderError as E;
        match err {
            E::MissingKey { at, hint } => E::MissingKey { at, hint: s(hint) },
            E::Auth { at, status, hint } => E::Auth {
                at,
                status,
                hint: s(hint),
            },
            E::Server {
                at,
                status,
                attempts,
                message,
            } => E::Server {
                at,
                status,
                attempts,
                message: s(message),
            },
            E::Rejected {
                at,
                status,
                message,
            } => E::Rejected {
                at,
                status,
                message: s(message),
            },
            E::Connect { at, detail } => E::Connect {
                at,
                detail: s(detail),
            },
            E::Malformed { at, detail } => E::Malformed {
                at,
                detail: s(detail),
            },
            E::StreamCut { at, detail } => E::StreamCut {
                at,
                detail: s(detail),
            },
            E::Config { at, detail } => E::Config {
                at,
                detail: s(detail),
            },
            other => other,
        }
    }
}

/// Never shows the values, only how many there are.
impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} value(s))", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_longest_first_and_short_values_ignored() {
        let secrets = Secrets::new(["sk-abcdef12", "sk-abcdef1234", "short"]);
        assert_eq!(
            secrets.scrub("key sk-abcdef1234 and sk-abcdef12, short"),
            "key [REDACTED] and [REDACTED], short"
        );
        let err = secrets.redact(ProviderError::Rejected {
            at: Endpoint {
                provider: "p".into(),
                url: "u".into(),
            },
            status: 400,
            message: "bad key sk-abcdef12".into(),
        });
        assert!(!err.to_string().contains("sk-abcdef12"), "{err}");
        assert!(format!("{secrets:?}").contains("2 value(s)"));
    }

    #[test]
    fn one_line_folds_and_caps() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = "x".repeat(500);
        assert_eq!(one_line(&long).chars().count(), 201);
    }

    #[test]
    fn errors_never_show_credentials_in_the_url() {
        let at = Endpoint {
            provider: "p".into(),
            url: "https://bob:hunter2@h.example/v1?key=AIzaSECRET".into(),
        };
        let err = ProviderError::Connect {
            at,
            detail: "refused".into(),
        }
        .to_string();
        assert!(
            !err.contains("hunter2") && !err.contains("AIzaSECRET"),
            "{err}"
        );
        assert!(
            err.contains("p at https://[REDACTED]@h.example/v1?key=[REDACTED]"),
            "{err}"
        );
    }
}
