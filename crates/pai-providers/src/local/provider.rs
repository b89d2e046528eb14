use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use futures::channel::{mpsc, oneshot};
use pai_types::{Locality, Usage};

use super::generate::{Stop, generate};
use super::model::Loaded;
use crate::error::{Endpoint, ProviderError, Result};
use crate::provider::{
    ChatEvent, ChatRequest, ChatStream, ModelInfo, Provider, ProviderConfig, ProviderInfo,
};

/// A GGUF model run in this process. Loaded on the first request, then kept; one answer
/// is generated at a time.
#[derive(Debug)]
pub struct LocalProvider {
    info: ProviderInfo,
    path: PathBuf,
    model: Arc<Mutex<Option<Loaded>>>,
}

impl LocalProvider {
    /// `config.base_url` is the path of the model file.
    pub fn new(config: ProviderConfig) -> Result<Self> {
        let path = PathBuf::from(&config.base_url);
        Ok(Self {
            info: ProviderInfo {
                name: config.name,
                kind: config.kind,
                endpoint: path.display().to_string(),
                locality: Locality::Local,
            },
            path,
            model: Arc::new(Mutex::new(None)),
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            provider: self.info.name.clone(),
            url: self.info.endpoint.clone(),
        }
    }
}

type Events = mpsc::UnboundedSender<Result<ChatEvent>>;

/// What a generation thread needs.
struct Job {
    model: Arc<Mutex<Option<Loaded>>>,
    path: PathBuf,
    at: Endpoint,
    request: ChatRequest,
    ready: oneshot::Sender<Result<()>>,
    events: Events,
    cancel: Arc<AtomicBool>,
}

#[async_trait]
impl Provider for LocalProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// Loads the model if needed, checks the prompt fits, then streams the answer as it is
    /// generated on a thread of its own. Tools are ignored: local models are not offered any.
    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        let (ready, is_ready) = oneshot::channel();
        let (events, answer) = mpsc::unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            model: self.model.clone(),
            path: self.path.clone(),
            at: self.endpoint(),
            request,
            ready,
            events,
            cancel: cancel.clone(),
        };
        std::thread::Builder::new()
            .name("pai-local-model".into())
            .spawn(move || job.run())
            .map_err(|e| ProviderError::StreamCut {
                at: self.endpoint(),
                detail: format!("cannot start the model thread: {e}"),
            })?;
        match is_ready.await {
            Ok(Ok(())) => Ok(Box::pin(Answer { answer, cancel })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProviderError::StreamCut {
                at: self.endpoint(),
                detail: "the model thread stopped before answering".into(),
            }),
        }
    }

    /// The one model this provider runs.
    async fn models(&self) -> Result<Vec<ModelInfo>> {
        Ok(vec![ModelInfo {
            id: model_name(&self.path),
            owned_by: Some("local".into()),
        }])
    }
}

/// The name a model file goes by: its file name without `.gguf`.
fn model_name(path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let file = file.unwrap_or_default();
    file.strip_suffix(".gguf").unwrap_or(&file).to_string()
}

impl Job {
    fn run(self) {
        let Job {
            model,
            path,
            at,
            request,
            ready,
            events,
            cancel,
        } = self;
        // A generation abandoned by Ctrl+C may still hold the model for one more token.
        let mut slot = model.lock().unwrap_or_else(|p| p.into_inner());
        let prepared = prepare(&mut slot, &path, &at, &request);
        let (loaded, prompt, max_new) = match prepared {
            Ok(p) => p,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok(())).is_err() {
            return;
        }
        let emit = |piece: String| {
            !cancel.load(Ordering::Relaxed)
                && events.unbounded_send(Ok(ChatEvent::Delta(piece))).is_ok()
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            generate(loaded, &prompt, max_new, emit)
        }));
        let last = match outcome {
            Ok(Ok(done)) if done.stop == Stop::Cancelled => return,
            Ok(Ok(done)) => {
                let usage = Usage {
                    prompt_tokens: prompt.len() as u64,
                    completion_tokens: done.tokens as u64,
                    estimated: false,
                };
                let _ = events.unbounded_send(Ok(ChatEvent::Usage(usage)));
                Ok(ChatEvent::Finished {
                    reason: done.stop.reason().into(),
                })
            }
            Ok(Err(e)) => Err(ProviderError::StreamCut {
                at,
                detail: format!(
                    "the model failed while generating: {}",
                    crate::error::one_line(&e.to_string())
                ),
            }),
            Err(_) => {
                // The model's state after a panic is unknown: load it afresh next time.
                *slot = None;
                Err(ProviderError::StreamCut {
                    at,
                    detail: "the model crashed while generating".into(),
                })
            }
        };
        let _ = events.unbounded_send(last);
    }
}

/// Loads the model if it is not yet, renders and tokenizes the prompt, and checks that it
/// leaves room for an answer; returns the model, the prompt and the token budget.
fn prepare<'a>(
    slot: &'a mut Option<Loaded>,
    path: &Path,
    at: &Endpoint,
    request: &ChatRequest,
) -> Result<(&'a mut Loaded, Vec<u32>, usize)> {
    if slot.is_none() {
        *slot = Some(Loaded::load(path)?);
    }
    let loaded = slot.as_mut().ok_or_else(|| ProviderError::StreamCut {
        at: at.clone(),
        detail: "the model did not stay loaded".into(),
    })?;
    let unsupported = |detail: String| ProviderError::UnsupportedModel {
        path: path.display().to_string(),
        detail,
    };
    let text = loaded
        .template
        .render(&request.messages)
        .map_err(unsupported)?;
    let prompt = loaded
        .tokenizer
        .encode(text, false)
        .map_err(|e| unsupported(format!("its tokenizer failed on the prompt ({e})")))?
        .get_ids()
        .to_vec();
    let window = usize::try_from(loaded.info.context_length).unwrap_or(usize::MAX);
    if prompt.len() >= window {
        return Err(ProviderError::ContextTooLong {
            at: at.clone(),
            model: request.model.clone(),
        });
    }
    let room = window - prompt.len();
    let max_new = request.max_tokens.map_or(room, |m| room.min(m as usize));
    Ok((loaded, prompt, max_new))
}

/// The answer as it is generated. Dropping it (Ctrl+C) stops generation at the next token.
struct Answer {
    answer: mpsc::UnboundedReceiver<Result<ChatEvent>>,
    cancel: Arc<AtomicBool>,
}

impl Stream for Answer {
    type Item = Result<ChatEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.answer).poll_next(cx)
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}
