//! all-MiniLM-L6-v2 (sentence-transformers) run in-process on CPU with candle.
//!
//! The model files are installed by `scripts/fetch-model` into `models/all-MiniLM-L6-v2`.
//! Embedding follows sentence-transformers: WordPiece ids truncated to 256 tokens, the BERT
//! encoder, mean pooling over real tokens, L2 normalisation.
mod bert;

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};

pub use crate::minilm::{DIMENSION, INSTALL_HINT, NAME};

/// sentence-transformers' `max_seq_length` for this model; longer texts are truncated.
const MAX_TOKENS: usize = 256;
/// At most this many texts per forward pass (throughput is flat from 32 to 128 texts a batch
/// of short sentences, and drops below 32)...
const BATCH_TEXTS: usize = 64;
/// ...and this many tokens, so batches of long texts stay small.
const BATCH_TOKENS: usize = 4096;

/// Where the model files are looked for by default: `models/all-MiniLM-L6-v2` (relative to cwd).
pub fn default_model_dir() -> PathBuf {
    PathBuf::from("models").join("all-MiniLM-L6-v2")
}

/// The loaded model. Immutable after `load`, so one instance serves every thread.
pub struct MiniLm {
    model: bert::BertModel,
    tokenizer: Tokenizer,
}

impl MiniLm {
    /// Loads config.json, tokenizer.json and model.safetensors from `dir`. Errors name the missing file.
    pub fn load(dir: &Path) -> anyhow::Result<MiniLm> {
        let file = |name: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            anyhow::ensure!(
                path.is_file(),
                "model file {} is missing (install the model with {INSTALL_HINT})",
                path.display()
            );
            Ok(path)
        };
        let config_path = file("config.json")?;
        let tokenizer_path = file("tokenizer.json")?;
        let weights_path = file("model.safetensors")?;

        let config: bert::Config = serde_json::from_slice(
            &std::fs::read(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?,
        )
        .with_context(|| format!("parsing {}", config_path.display()))?;
        config.check()?;
        anyhow::ensure!(
            config.hidden_size == DIMENSION,
            "{} has hidden_size {}, expected {DIMENSION}",
            config_path.display(),
            config.hidden_size
        );

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", tokenizer_path.display()))?;
        // The shipped tokenizer pads everything to 128 and truncates at 128. Sequences are
        // packed without padding (see `bert`), and cut at the model's 256.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS.min(config.max_position_embeddings),
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("configuring the tokenizer: {e}"))?;

        // Read, not memory-mapped: mapping is `unsafe` (the file could change under us) and
        // saves nothing, since the tensors are copied out once at load.
        let weights = std::fs::read(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .with_context(|| format!("parsing {}", weights_path.display()))?;
        let model = bert::BertModel::load(vb, &config)
            .with_context(|| format!("loading weights from {}", weights_path.display()))?;
        Ok(MiniLm { model, tokenizer })
    }

    /// CPU, synchronous (the caller runs it on tokio's blocking pool). One L2-normalised
    /// 384-dim vector per text, in input order. Empty/whitespace text → a valid vector anyway (the model
    /// sees [CLS][SEP]). Must be Send + Sync (the struct is shared in an Arc across threads).
    pub fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        // Sorted by length, so a batch holds texts of similar size: its attention work is
        // alike and a batch of long texts stays small.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let batches = batches(&order, |i| encodings[i].len());
        // Batches run in parallel, one per core: each GEMM then runs on one thread with no
        // barrier per layer (measured 1.3× the throughput of splitting every GEMM across the
        // cores). A single batch, such as a search query, still spreads over the pool.
        let results: Vec<anyhow::Result<Vec<Vec<f32>>>> = batches
            .par_iter()
            .map(|batch| {
                let ids: Vec<&[u32]> = batch.iter().map(|&i| encodings[i].get_ids()).collect();
                self.embed_batch(&ids)
            })
            .collect();
        let mut out = vec![Vec::new(); texts.len()];
        for (batch, vectors) in batches.iter().zip(results) {
            for (&i, vector) in batch.iter().zip(vectors?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// Embeds token sequences packed back to back (no padding).
    fn embed_batch(&self, sequences: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        let ids: Vec<u32> = sequences.concat();
        let hidden = self
            .model
            .forward(&ids, &lengths)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        // Mean pooling over each sequence's tokens, then unit length.
        let mut rows = hidden.chunks_exact(DIMENSION);
        let mut out = Vec::with_capacity(lengths.len());
        for &len in &lengths {
            let mut mean = vec![0f32; DIMENSION];
            for row in rows.by_ref().take(len) {
                for (m, x) in mean.iter_mut().zip(row) {
                    *m += x;
                }
            }
            let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            for m in &mut mean {
                *m /= norm;
            }
            out.push(mean);
        }
        Ok(out)
    }
}

/// Splits `order` (indices sorted by length) into consecutive batches within the limits, and
/// into at least as many batches as there are threads when there is enough input.
fn batches(order: &[usize], tokens: impl Fn(usize) -> usize) -> Vec<&[usize]> {
    let threads = rayon::current_num_threads().max(1);
    let max_texts = order.len().div_ceil(threads).clamp(1, BATCH_TEXTS);
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (at, &i) in order.iter().enumerate() {
        let n = tokens(i);
        if at > start && (at - start == max_texts || used + n > BATCH_TOKENS) {
            out.push(&order[start..at]);
            (start, used) = (at, 0);
        }
        used += n;
    }
    if start < order.len() {
        out.push(&order[start..]);
    }
    out
}

/// The number of threads embedding runs on (rayon's global pool).
pub fn compute_threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    const _: fn() = || {
        fn shared_across_threads<T: Send + Sync>() {}
        shared_across_threads::<MiniLm>();
    };

    /// The model from `MEMSPACE_MODEL_DIR` or the workspace root's `models/` (where
    /// `scripts/fetch-model` puts it; this crate sits two levels below the root); `None` (test
    /// skipped) when absent, unless `MEMSPACE_REQUIRE_MODEL=1`.
    fn model() -> Option<MiniLm> {
        let dir = std::env::var_os("MEMSPACE_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../..")
                    .join(default_model_dir())
            });
        if !dir.join("model.safetensors").is_file() {
            let required = std::env::var("MEMSPACE_REQUIRE_MODEL").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "MEMSPACE_REQUIRE_MODEL=1 but no model in {} (run {INSTALL_HINT})",
                dir.display()
            );
            eprintln!(
                "skipping: no model in {} (run {INSTALL_HINT})",
                dir.display()
            );
            return None;
        }
        match MiniLm::load(&dir) {
            Ok(m) => Some(m),
            Err(e) => panic!("loading {}: {e:#}", dir.display()),
        }
    }

    fn embed(model: &MiniLm, texts: &[&str]) -> Vec<Vec<f32>> {
        match model.embed(texts) {
            Ok(v) => v,
            Err(e) => panic!("embed: {e:#}"),
        }
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn example_sentence_matches_the_reference_vector() {
        let Some(model) = model() else { return };
        let v = embed(&model, &["This is an example sentence"]).remove(0);
        // From an independent float64 numpy forward pass over the same weights and token ids.
        let reference = [
            0.0677, 0.0635, 0.0487, 0.0793, 0.0374, 0.0027, 0.0394, -0.0071,
        ];
        assert_eq!(v.len(), DIMENSION);
        for (i, (got, want)) in v.iter().zip(reference).enumerate() {
            assert!((got - want).abs() < 1e-4, "component {i}: {got} vs {want}");
        }
        let norm = cosine(&v, &v).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    #[test]
    fn paraphrases_score_higher_than_unrelated_sentences() {
        let Some(model) = model() else { return };
        let v = embed(
            &model,
            &[
                "How do I reset my password?",
                "I forgot my login credentials and need new ones",
                "The weather is sunny today",
            ],
        );
        let related = cosine(&v[0], &v[1]);
        let unrelated = cosine(&v[0], &v[2]);
        assert!(
            related > unrelated + 0.2,
            "related {related} unrelated {unrelated}"
        );
    }

    #[test]
    fn a_batch_embeds_like_one_text_at_a_time_in_input_order() {
        let Some(model) = model() else { return };
        // ~560 tokens: more than the 512 positions the model has, so this also shows truncation.
        let long = "a much longer text that goes on and on about memory servers, ".repeat(40);
        let texts = [
            "short",
            long.as_str(),
            "",
            "   ",
            "The quick brown fox jumps over the lazy dog",
            "short",
            "Memspace stores memories for agents and searches them by meaning",
        ];
        let batched = embed(&model, &texts);
        assert_eq!(batched.len(), texts.len());
        for (text, got) in texts.iter().zip(&batched) {
            let alone = embed(&model, &[text]).remove(0);
            let diff = got
                .iter()
                .zip(&alone)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "{text:?}: max diff {diff}");
            assert!((cosine(got, got).sqrt() - 1.0).abs() < 1e-5);
        }
        assert!(cosine(&batched[0], &batched[5]) > 0.9999);
    }

    #[test]
    fn many_texts_come_back_in_input_order() {
        let Some(model) = model() else { return };
        let texts: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    "note {i}: {}",
                    "the meeting moved to next week ".repeat(i % 7)
                )
            })
            .collect();
        let forward: Vec<&str> = texts.iter().map(String::as_str).collect();
        let backward: Vec<&str> = forward.iter().rev().copied().collect();
        let (a, b) = (embed(&model, &forward), embed(&model, &backward));
        for (i, v) in a.iter().enumerate() {
            let w = &b[texts.len() - 1 - i];
            assert!(cosine(v, w) > 0.9999, "text {i} moved");
        }
        // The check can tell the texts apart: the closest pair differs more than that.
        assert!(cosine(&a[0], &a[7]) < 0.999);
    }

    #[test]
    fn no_texts_give_no_vectors() {
        let Some(model) = model() else { return };
        assert!(embed(&model, &[]).is_empty());
    }

    #[test]
    fn batches_keep_the_order_and_respect_the_limits() {
        let order: Vec<usize> = (0..300).collect();
        let short = batches(&order, |_| 10);
        assert!(short.iter().all(|b| b.len() <= BATCH_TEXTS));
        assert_eq!(short.concat(), order);
        let long = batches(&order, |_| 256);
        assert!(long.iter().all(|b| b.len() * 256 <= BATCH_TOKENS));
        assert_eq!(long.concat(), order);
        let huge = batches(&order[..3], |_| BATCH_TOKENS + 1);
        assert_eq!(huge, vec![&[0][..], &[1], &[2]]);
        assert!(batches(&[], |_| 1).is_empty());
    }

    #[test]
    fn a_few_texts_are_split_across_the_threads() {
        let order: Vec<usize> = (0..10).collect();
        let split = batches(&order, |_| 10);
        assert_eq!(split.len(), rayon::current_num_threads().clamp(1, 10));
    }

    #[test]
    fn a_missing_model_file_is_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("memspace-no-model-{}", std::process::id()));
        let Err(e) = MiniLm::load(&dir) else {
            panic!("loading from an empty dir succeeded");
        };
        let message = format!("{e:#}");
        assert!(message.contains("config.json"), "{message}");
        assert!(message.contains(INSTALL_HINT), "{message}");
    }
}
