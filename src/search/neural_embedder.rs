//! `minilm-l6-v2` as an [`Embedder`]: the model of [`super::neural`] on the blocking pool.
//!
//! A loaded model is kept for the life of the process and shared by every registry that names
//! the same directory (tests build many apps; a server builds one), so its ~90 MB of weights
//! are read once.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::embedder::{
    embed_blocking, EmbedError, EmbedFuture, Embedder, EmbedderKind, Registry, Unavailable,
};
use super::neural::{self, MiniLm};

pub struct NeuralEmbedder {
    model: Arc<MiniLm>,
}

impl Embedder for NeuralEmbedder {
    fn name(&self) -> &str {
        neural::NAME
    }
    fn dimension(&self) -> usize {
        neural::DIMENSION
    }
    fn kind(&self) -> EmbedderKind {
        EmbedderKind::Neural
    }
    fn embed(self: Arc<Self>, texts: Vec<String>) -> EmbedFuture {
        embed_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.model
                .embed(&refs)
                .map_err(|e| EmbedError(format!("{e:#}")))
        })
    }
}

/// Models loaded by this process, by directory.
fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<MiniLm>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<MiniLm>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

async fn load(dir: PathBuf) -> anyhow::Result<Arc<MiniLm>> {
    let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    if let Some(model) = loaded().lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(model);
    }
    let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir)).await??;
    let model = Arc::new(model);
    if let Ok(mut m) = loaded().lock() {
        m.insert(key, model.clone());
    }
    Ok(model)
}

/// Adds `minilm-l6-v2` from `<models_dir>/all-MiniLM-L6-v2`, or lists it as unavailable with
/// the reason and the command that installs it.
pub async fn register(registry: &mut Registry, models_dir: &Path) {
    let dir = models_dir.join("all-MiniLM-L6-v2");
    let unavailable = |reason: String| Unavailable {
        name: neural::NAME.to_string(),
        kind: EmbedderKind::Neural,
        dimension: neural::DIMENSION,
        reason,
    };
    if !dir.join("model.safetensors").is_file() {
        registry.add_unavailable(unavailable(format!(
            "model files not found in {}; install them with `{}`",
            dir.display(),
            neural::INSTALL_HINT
        )));
        return;
    }
    match load(dir.clone()).await {
        Ok(model) => registry.add(Arc::new(NeuralEmbedder { model })),
        Err(e) => {
            tracing::warn!(error = ?e, dir = %dir.display(), "neural model failed to load");
            registry.add_unavailable(unavailable(format!(
                "model in {} failed to load ({e:#}); reinstall it with `{}`",
                dir.display(),
                neural::INSTALL_HINT
            )))
        }
    }
}
