//! Embedders: text in, vectors out. A space picks one by name at creation.
//!
//! The built-in `builtin-hash-384` is **lexical**: it hashes stemmed words and character
//! trigrams into 384 dimensions, so texts that share word forms land near each other. It works
//! offline with no download, but it does not know that "car" and "automobile" mean the same.
//! A neural or remote embedder drops in by implementing [`Embedder`] and registering it.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rust_stemmers::{Algorithm, Stemmer};

pub use memspace_core::vocab::EmbedderKind;

/// Why an embedder produced no vectors. The write that needed them fails and stores nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedError(pub String);

impl std::fmt::Display for EmbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type EmbedFuture = Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send>>;

/// Turns a batch of texts into unit-length vectors of a fixed dimension.
pub trait Embedder: Send + Sync {
    fn name(&self) -> &str;
    /// Length of every vector; 0 while a remote embedder has not answered yet.
    fn dimension(&self) -> usize;
    fn kind(&self) -> EmbedderKind;
    /// One vector per text, in order, each of length [`Embedder::dimension`] and L2-normalised
    /// (or all zeros for a text with no features). CPU-bound embedders run on the blocking
    /// pool, so awaiting this never stalls the async runtime.
    fn embed(self: Arc<Self>, texts: Vec<String>) -> EmbedFuture;
}

/// Runs a CPU-bound embedding on tokio's blocking pool.
pub fn embed_blocking<F>(work: F) -> EmbedFuture
where
    F: FnOnce() -> Result<Vec<Vec<f32>>, EmbedError> + Send + 'static,
{
    Box::pin(async move {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| EmbedError(format!("embedding task failed: {e}")))?
    })
}

/// An embedder the operator asked for that cannot run here, and what would fix it.
#[derive(Clone, Debug)]
pub struct Unavailable {
    pub name: String,
    pub kind: EmbedderKind,
    pub dimension: usize,
    pub reason: String,
}

/// Lexical feature-hashing embedder: stemmed words (weight 1) and character trigrams of each word
/// (weight 0.5), with sublinear term frequency (1 + ln tf), signed hashing, L2-normalised.
pub struct HashEmbedder {
    name: String,
    dimension: usize,
}

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is",
    "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with",
    "what", "which", "who", "how", "do", "does", "did", "i", "we", "you", "our", "my",
];

/// FNV-1a, 64 bit: stable across platforms and releases (vectors are stored).
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Lower-cased alphanumeric words of a text.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

impl HashEmbedder {
    pub fn new(name: &str, dimension: usize) -> Self {
        HashEmbedder {
            name: name.to_string(),
            dimension,
        }
    }

    /// Synchronous embedding, for callers already off the async runtime.
    pub fn embed_texts(&self, texts: &[String]) -> Vec<Vec<f32>> {
        let stemmer = Stemmer::create(Algorithm::English);
        texts.iter().map(|t| self.embed_one(&stemmer, t)).collect()
    }

    fn embed_one(&self, stemmer: &Stemmer, text: &str) -> Vec<f32> {
        use std::collections::HashMap;
        let mut features: HashMap<String, f32> = HashMap::new();
        for word in words(text) {
            if STOPWORDS.contains(&word.as_str()) {
                continue;
            }
            let stem = stemmer.stem(&word).into_owned();
            *features.entry(format!("w:{stem}")).or_default() += 1.0;
            let padded: Vec<char> = format!("#{word}#").chars().collect();
            if padded.len() >= 5 {
                for tri in padded.windows(3) {
                    let gram: String = tri.iter().collect();
                    *features.entry(format!("g:{gram}")).or_default() += 0.5;
                }
            }
        }
        let mut v = vec![0f32; self.dimension];
        for (feature, tf) in features {
            let weight = if feature.starts_with("w:") {
                1.0 + tf.ln()
            } else {
                0.5 * (1.0 + (tf / 0.5).ln())
            };
            let h = fnv1a(feature.as_bytes(), 0);
            let idx = (h % self.dimension as u64) as usize;
            let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
            v[idx] += sign * weight;
        }
        normalize(&mut v);
        v
    }
}

impl Embedder for HashEmbedder {
    fn name(&self) -> &str {
        &self.name
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn kind(&self) -> EmbedderKind {
        EmbedderKind::Lexical
    }
    fn embed(self: Arc<Self>, texts: Vec<String>) -> EmbedFuture {
        embed_blocking(move || Ok(self.embed_texts(&texts)))
    }
}

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embed(t: &str) -> Vec<f32> {
        HashEmbedder::new("h", 384)
            .embed_texts(&[t.to_string()])
            .remove(0)
    }

    #[test]
    fn vectors_are_deterministic_and_unit_length() {
        let a = embed("The quick brown fox jumps");
        assert_eq!(a, embed("The quick brown fox jumps"));
        assert_eq!(a.len(), 384);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert!(embed("").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn shared_word_stems_score_higher_than_unrelated_text() {
        let q = embed("running a marathon");
        let related = embed("She runs marathons every spring");
        let unrelated = embed("Quarterly tax filing deadlines");
        assert!(dot(&q, &related) > dot(&q, &unrelated) + 0.2);
    }

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = embed("bytes");
        assert_eq!(from_bytes(&to_bytes(&v)), v);
    }
}
