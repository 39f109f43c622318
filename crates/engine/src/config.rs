//! What the engine is configured with: which embedders to offer, built from the CLI by the
//! root crate (`src/config.rs`).

/// A remote embedder, parsed from `NAME=openai:MODEL@BASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEmbedder {
    pub name: String,
    pub model: String,
    /// Base URL of the API (`https://api.openai.com/v1`); requests go to `BASE/embeddings`.
    pub url: String,
    pub api_key: Option<String>,
}

impl RemoteEmbedder {
    /// Parses `NAME=openai:MODEL@BASE_URL`.
    pub fn parse(spec: &str) -> Result<RemoteEmbedder, String> {
        let usage = "expected NAME=openai:MODEL@BASE_URL, e.g. \
                     openai-small=openai:text-embedding-3-small@https://api.openai.com/v1";
        let (name, rest) = spec
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("embedder {spec:?}: {usage}"))?;
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid_name {
            return Err(format!(
                "embedder name {name:?}: use 1–64 of a-z, 0-9, '-', '_', '.'"
            ));
        }
        let target = rest
            .strip_prefix("openai:")
            .ok_or_else(|| format!("embedder {name}: unknown provider; {usage}"))?;
        let (model, url) = target
            .split_once('@')
            .ok_or_else(|| format!("embedder {name}: {usage}"))?;
        if model.trim().is_empty() {
            return Err(format!("embedder {name}: the model is empty; {usage}"));
        }
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "embedder {name}: the URL must start with http:// or https://; {usage}"
            ));
        }
        Ok(RemoteEmbedder {
            name: name.to_string(),
            model: model.trim().to_string(),
            url: url.to_string(),
            api_key: None,
        })
    }

    /// The environment variable holding this embedder's API key.
    pub fn key_variable(name: &str) -> String {
        let upper: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("MEMSPACE_EMBEDDER_{upper}_API_KEY")
    }
}

/// The embedder part of [`Config`].
#[derive(Clone, Debug)]
pub struct EmbedderConfig {
    pub default: Option<String>,
    /// Where `minilm-l6-v2` is looked for (`<dir>/all-MiniLM-L6-v2`); None = not offered.
    pub models_dir: Option<std::path::PathBuf>,
    pub remote: Vec<RemoteEmbedder>,
    pub timeout: std::time::Duration,
    pub retries: u32,
    pub max_batch: usize,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        EmbedderConfig {
            default: None,
            models_dir: Some("models".into()),
            remote: Vec::new(),
            timeout: std::time::Duration::from_secs(30),
            retries: 3,
            max_batch: 256,
        }
    }
}
