//! Remote embedders: any OpenAI-compatible `POST {base}/embeddings` API.
//!
//! Texts go in batches of at most `max_batch`; each call has a timeout and is retried with
//! exponential backoff after a 429 (honouring `Retry-After`), a 5xx, a timeout or a lost
//! connection. Any other failure, or an answer that does not fit (wrong count, wrong dimension,
//! non-finite values), fails the whole embedding: the write that needed it stores nothing.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{EmbedderConfig, RemoteEmbedder as Spec};
use crate::embedder::{normalize, EmbedError, EmbedFuture, Embedder, EmbedderKind};

pub struct RemoteEmbedder {
    spec: Spec,
    client: reqwest::Client,
    retries: u32,
    max_batch: usize,
    /// Learned from the first answer (0 until then); every later answer must match it.
    dimension: AtomicUsize,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

/// One failed attempt: whether trying again may help, and after how long at least.
struct Failure {
    retry: bool,
    wait: Option<Duration>,
    reason: String,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl RemoteEmbedder {
    pub fn new(spec: Spec, config: &EmbedderConfig) -> Result<RemoteEmbedder, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("embedder {}: cannot build an HTTP client: {e}", spec.name))?;
        Ok(RemoteEmbedder {
            spec,
            client,
            retries: config.retries,
            max_batch: config.max_batch.max(1),
            dimension: AtomicUsize::new(0),
        })
    }

    fn endpoint(&self) -> String {
        if self.spec.url.ends_with("/embeddings") {
            self.spec.url.clone()
        } else {
            format!("{}/embeddings", self.spec.url)
        }
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Failure> {
        let mut request = self
            .client
            .post(self.endpoint())
            .json(&serde_json::json!({ "model": self.spec.model, "input": texts }));
        if let Some(key) = &self.spec.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| Failure {
            retry: true,
            wait: None,
            reason: if e.is_timeout() {
                "timed out".to_string()
            } else {
                format!("request failed: {}", without_url(&e))
            },
        })?;
        let status = response.status();
        if !status.is_success() {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_BACKOFF));
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            return Err(Failure {
                retry: status.as_u16() == 429 || status.is_server_error(),
                wait,
                reason: format!("HTTP {}: {}", status.as_u16(), body.trim()),
            });
        }
        let parsed: Response = response.json().await.map_err(|e| Failure {
            retry: e.is_timeout(),
            wait: None,
            reason: format!("unreadable answer: {}", without_url(&e)),
        })?;
        let answer = |reason: String| Failure {
            retry: false,
            wait: None,
            reason,
        };
        if parsed.data.len() != texts.len() {
            return Err(answer(format!(
                "answered {} embeddings for {} texts",
                parsed.data.len(),
                texts.len()
            )));
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (position, item) in parsed.data.into_iter().enumerate() {
            let i = item.index.unwrap_or(position);
            match slots.get_mut(i) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => return Err(answer(format!("answered a bad or repeated index {i}"))),
            }
        }
        let mut vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
        let len = vectors.first().map_or(0, Vec::len);
        if len == 0 || vectors.iter().any(|v| v.len() != len) {
            return Err(answer("answered empty or unequal vectors".into()));
        }
        match self
            .dimension
            .compare_exchange(0, len, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                tracing::info!(embedder = %self.spec.name, dimension = len, "remote embedder answered")
            }
            Err(known) if known != len => {
                return Err(answer(format!(
                    "answered {len}-dimensional vectors; this embedder's dimension is {known}"
                )))
            }
            Err(_) => {}
        }
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok(vectors)
    }

    async fn call_with_retries(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match self.call(texts).await {
                Ok(v) => return Ok(v),
                Err(f) if f.retry && attempt < self.retries => {
                    attempt += 1;
                    let wait = f.wait.unwrap_or(backoff).max(backoff / 2);
                    tracing::debug!(embedder = %self.spec.name, attempt, reason = %f.reason, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(f) => {
                    let tries = attempt + 1;
                    return Err(EmbedError(if tries > 1 {
                        format!("{} (after {tries} attempts)", f.reason)
                    } else {
                        f.reason
                    }));
                }
            }
        }
    }

    /// Asks once for one vector, to learn the dimension before the first write (logged, never
    /// fatal: the server starts while the API is down).
    pub async fn probe(self: Arc<Self>) {
        if let Err(e) = self
            .call_with_retries(&["dimension probe".to_string()])
            .await
        {
            tracing::warn!(embedder = %self.spec.name, reason = %e.0, "remote embedder did not answer at start");
        }
    }
}

/// A request error without the URL (it can carry credentials in query strings).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "the embeddings endpoint");
    }
    s
}

impl Embedder for RemoteEmbedder {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn dimension(&self) -> usize {
        self.dimension.load(Ordering::Acquire)
    }

    fn kind(&self) -> EmbedderKind {
        EmbedderKind::Remote
    }

    fn embed(self: Arc<Self>, texts: Vec<String>) -> EmbedFuture {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for batch in texts.chunks(self.max_batch) {
                out.extend(self.call_with_retries(batch).await?);
            }
            Ok(out)
        })
    }
}
