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

pub const NAME: &str = "minilm-l6-v2";
pub const DIMENSION: usize = 384;
/// The command that installs the model, for messages.
pub const INSTALL_HINT: &str = "scripts/fetch-model";

/// sentence-transformers' `max_seq_length` for this model; longer texts are truncated.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass. Inputs are sorted by length first, so a batch pads little.
const BATCH: usize = 32;

/// Where the model files are looked for by default: `models/all-MiniLM-L6-v2` (relative to cwd).
pub fn default_model_dir() -> PathBuf {
    PathBuf::from("models").join("all-MiniLM-L6-v2")
}

/// The loaded model. Immutable after `load`, so one instance serves every thread.
pub struct MiniLm {
    model: bert::BertModel,
    tokenizer: Tokenizer,
    device: Device,
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

        let device = Device::Cpu;
        // SAFETY: the file is memory-mapped read-only; we do not modify it, and the mapping is
        // only read while loading (the tensors are copied out of it).
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device)
        }
        .with_context(|| format!("opening {}", weights_path.display()))?;
        let model = bert::BertModel::load(vb, &config)
            .with_context(|| format!("loading weights from {}", weights_path.display()))?;
        Ok(MiniLm {
            model,
            tokenizer,
            device,
        })
    }

    /// CPU, synchronous (the caller runs it on tokio's blocking pool). One L2-normalised
    /// 384-dim vector per text, in input order. Empty/whitespace text → a valid vector anyway (the model
    /// sees [CLS][SEP]). Must be Send + Sync (the struct is shared in an Arc across threads).
    pub fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        // Batches of similar lengths: their attention work is alike, and a batch stays small
        // when it holds long texts.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let bs: usize = std::env::var("MS_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(BATCH);
        let batches: Vec<&[usize]> = order.chunks(bs).collect();
        // One batch per core at a time: each GEMM is then single-threaded and no core waits at
        // a barrier inside a layer. A lone batch (a query) still spreads over the rayon pool.
        let embed = |chunk: &&[usize]| {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
            self.embed_batch(&ids)
        };
        let results: Vec<anyhow::Result<Vec<Vec<f32>>>> = if std::env::var("MS_MODE").as_deref() == Ok("seq") {
            batches.iter().map(embed).collect()
        } else {
            batches.par_iter().map(embed).collect()
        };
        let mut out = vec![Vec::new(); texts.len()];
        for (chunk, vectors) in batches.iter().zip(results) {
            for (&i, vector) in chunk.iter().zip(vectors?) {
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

    /// The model from `MEMSPACE_MODEL_DIR` or the repo's `models/`; `None` (test skipped) when
    /// absent, unless `MEMSPACE_REQUIRE_MODEL=1`.
    fn model() -> Option<MiniLm> {
        let dir = std::env::var_os("MEMSPACE_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default_model_dir()));
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
    fn no_texts_give_no_vectors() {
        let Some(model) = model() else { return };
        assert!(embed(&model, &[]).is_empty());
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
