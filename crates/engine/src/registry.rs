//! The embedders a server offers, by name, with the default for new spaces.
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::config::EmbedderConfig;
use crate::embedder::{EmbedError, Embedder, HashEmbedder, Unavailable};

/// The zero-set-up default: offline, deterministic, no download.
pub const DEFAULT_EMBEDDER: &str = "builtin-hash-384";

/// Query embeddings kept (agents repeat queries): per entry at most a query of
/// `MAX_QUERY_CHARS` and one vector, so a few MB at 384 dimensions.
pub const QUERY_CACHE: usize = 1024;

/// Query vectors by (embedder, query text).
type QueryCache = LruCache<(String, String), Arc<[f32]>>;

/// The embedders this server offers, by name, and the default for new spaces.
pub struct Registry {
    embedders: Vec<Arc<dyn Embedder>>,
    unavailable: Vec<Unavailable>,
    default: String,
    /// Recent query vectors by (embedder, query text), least recently used out first.
    queries: Mutex<QueryCache>,
}

impl Registry {
    /// Only the built-in lexical embedder (tools that never embed, and the SDL export).
    pub fn builtin() -> Registry {
        Registry {
            embedders: vec![Arc::new(HashEmbedder::new(DEFAULT_EMBEDDER, 384))],
            unavailable: Vec::new(),
            default: DEFAULT_EMBEDDER.to_string(),
            queries: Mutex::new(LruCache::new(
                NonZeroUsize::new(QUERY_CACHE).expect("non-zero"),
            )),
        }
    }

    /// The registry a server runs with: the built-in embedder, the neural model when its files
    /// are present (else listed as unavailable with the command that installs it), and the
    /// configured remote embedders; then the default, which must be available.
    pub async fn from_config(config: &EmbedderConfig) -> anyhow::Result<Registry> {
        let mut registry = Registry::builtin();
        if let Some(dir) = &config.models_dir {
            match crate::neural_embedder::load_from(dir).await {
                Ok(embedder) => registry.add(embedder),
                Err(unavailable) => registry.add_unavailable(unavailable),
            }
        }
        for spec in &config.remote {
            if registry.get(&spec.name).is_some() || registry.unavailable(&spec.name).is_some() {
                anyhow::bail!(
                    "embedder name {:?} is taken by a built-in embedder",
                    spec.name
                );
            }
            let remote = Arc::new(
                crate::remote::RemoteEmbedder::new(spec.clone(), config)
                    .map_err(anyhow::Error::msg)?,
            );
            tokio::spawn(remote.clone().probe());
            registry.add(remote);
        }
        if let Some(default) = &config.default {
            registry
                .set_default(default.trim())
                .map_err(anyhow::Error::msg)?;
        }
        Ok(registry)
    }

    /// Adds an embedder; a later one with the same name replaces the earlier.
    pub fn add(&mut self, embedder: Arc<dyn Embedder>) {
        self.queries_cache().clear();
        self.embedders.retain(|e| e.name() != embedder.name());
        self.unavailable.retain(|u| u.name != embedder.name());
        self.embedders.push(embedder);
    }

    /// Lists an embedder that is configured or known but cannot run (e.g. model files missing).
    pub fn add_unavailable(&mut self, unavailable: Unavailable) {
        if self.get(&unavailable.name).is_none() {
            self.unavailable.retain(|u| u.name != unavailable.name);
            self.unavailable.push(unavailable);
        }
    }

    /// Chooses the default for new spaces; it must be available.
    pub fn set_default(&mut self, name: &str) -> Result<(), String> {
        if self.get(name).is_some() {
            self.default = name.to_string();
            return Ok(());
        }
        match self.unavailable.iter().find(|u| u.name == name) {
            Some(u) => Err(format!(
                "default embedder {name:?} is not available: {}",
                u.reason
            )),
            None => Err(format!(
                "unknown default embedder {name:?}; available: {}",
                self.names().join(", ")
            )),
        }
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Embedder>> {
        self.embedders.iter().find(|e| e.name() == name).cloned()
    }

    pub fn unavailable(&self, name: &str) -> Option<&Unavailable> {
        self.unavailable.iter().find(|u| u.name == name)
    }

    /// Names of the embedders that can run.
    pub fn names(&self) -> Vec<String> {
        self.embedders
            .iter()
            .map(|e| e.name().to_string())
            .collect()
    }

    pub fn available(&self) -> &[Arc<dyn Embedder>] {
        &self.embedders
    }

    pub fn unavailable_all(&self) -> &[Unavailable] {
        &self.unavailable
    }

    fn queries_cache(&self) -> std::sync::MutexGuard<'_, QueryCache> {
        self.queries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A search query's vector: from the cache of recent queries, else embedded (and checked)
    /// by the named embedder and kept. Failures are not kept (a remote embedder may recover).
    pub async fn embed_query(&self, name: &str, query: &str) -> Result<Arc<[f32]>, EmbedError> {
        let key = (name.to_string(), query.to_string());
        if let Some(v) = self.queries_cache().get(&key) {
            return Ok(v.clone());
        }
        let v: Arc<[f32]> = self
            .embed(name, vec![query.to_string()])
            .await?
            .pop()
            .unwrap_or_default()
            .into();
        self.queries_cache().put(key, v.clone());
        Ok(v)
    }

    /// Embeds with the named embedder, checking what it returned (count, dimension, finite).
    pub async fn embed(&self, name: &str, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let Some(embedder) = self.get(name) else {
            return Err(EmbedError(match self.unavailable(name) {
                Some(u) => u.reason.clone(),
                None => format!("embedder {name:?} is not configured on this server"),
            }));
        };
        let count = texts.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let vectors = embedder.clone().embed(texts).await?;
        if vectors.len() != count {
            return Err(EmbedError(format!(
                "returned {} vectors for {count} texts",
                vectors.len()
            )));
        }
        let dimension = embedder.dimension();
        for v in &vectors {
            if dimension != 0 && v.len() != dimension {
                return Err(EmbedError(format!(
                    "returned a {}-dimensional vector; this embedder's dimension is {dimension}",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(EmbedError(
                    "returned a vector with a non-finite value".into(),
                ));
            }
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::embedder::{EmbedFuture, EmbedderKind, HashEmbedder};

    /// The built-in embedder under another name, counting the texts it embeds.
    struct Counting {
        inner: HashEmbedder,
        texts: AtomicUsize,
    }

    impl Embedder for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn dimension(&self) -> usize {
            384
        }
        fn kind(&self) -> EmbedderKind {
            EmbedderKind::Lexical
        }
        fn embed(self: Arc<Self>, texts: Vec<String>) -> EmbedFuture {
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            let vectors = self.inner.embed_texts(&texts);
            Box::pin(async move { Ok(vectors) })
        }
    }

    #[tokio::test]
    async fn a_repeated_query_is_embedded_once_and_gets_the_same_vector() {
        let counting = Arc::new(Counting {
            inner: HashEmbedder::new("counting", 384),
            texts: AtomicUsize::new(0),
        });
        let mut registry = Registry::builtin();
        registry.add(counting.clone());

        let first = registry
            .embed_query("counting", "harbour lights")
            .await
            .unwrap();
        let again = registry
            .embed_query("counting", "harbour lights")
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(counting.texts.load(Ordering::SeqCst), 1);
        let direct = registry
            .embed("counting", vec!["harbour lights".into()])
            .await
            .unwrap();
        assert_eq!(&*first, direct[0].as_slice());

        // Another query, or the same text under another embedder, is its own entry.
        registry
            .embed_query("counting", "harbour light")
            .await
            .unwrap();
        assert_eq!(counting.texts.load(Ordering::SeqCst), 3);
        let builtin = registry
            .embed_query(DEFAULT_EMBEDDER, "harbour lights")
            .await
            .unwrap();
        assert_eq!(builtin.len(), 384);
        assert_eq!(counting.texts.load(Ordering::SeqCst), 3);

        // The cache is bounded: old queries leave it and are embedded again.
        for i in 0..QUERY_CACHE {
            registry
                .embed_query(DEFAULT_EMBEDDER, &format!("query {i}"))
                .await
                .unwrap();
        }
        registry
            .embed_query("counting", "harbour lights")
            .await
            .unwrap();
        assert_eq!(counting.texts.load(Ordering::SeqCst), 4);
        assert!(registry.queries_cache().len() <= QUERY_CACHE);
        assert!(registry.embed_query("missing", "q").await.is_err());
    }
}
