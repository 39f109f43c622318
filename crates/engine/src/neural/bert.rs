//! BERT encoder forward pass (inference only), enough for sentence-transformers models.
//!
//! Adapted from candle-transformers' `models/bert.rs` (https://github.com/huggingface/candle),
//! Copyright (c) The Candle Authors, dual-licensed Apache-2.0 / MIT; same weight names and
//! computation. Trimmed to an encoder (no dropout, absolute positions, GELU only) and
//! reorganised for CPU speed:
//! - sequences are packed, not padded: a batch is one `(tokens, hidden)` matrix, so each
//!   linear layer is a single GEMM over real tokens only and no padding can leak into a result;
//! - Q/K/V are one fused projection;
//! - everything besides the GEMMs (bias + GELU, bias + residual + LayerNorm, attention) is a
//!   fused custom op over rayon, compiled for AVX-512/AVX2 when the CPU has them. candle's own
//!   element-wise ops run on a second, spinning thread pool that competes with rayon (and
//!   gemm) for the cores: 17–24% slower on 2 cores.
use candle_core::{CpuStorage, CustomOp1, Device, InplaceOp1, InplaceOp2, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Deserialize;

/// Compiles a kernel three times — for AVX-512, for AVX2+FMA and for the baseline target —
/// and picks the best the CPU supports at run time. The build targets plain x86-64 (SSE2), so
/// without this the element-wise loops would use 4 lanes where the machine has 16.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// The fields of a Hugging Face `config.json` that the forward pass reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".to_string()
}

impl Config {
    /// Rejects configurations this forward pass would compute wrongly.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.hidden_act == "gelu",
            "unsupported hidden_act {:?} (only \"gelu\")",
            self.hidden_act
        );
        anyhow::ensure!(
            self.position_embedding_type == "absolute",
            "unsupported position_embedding_type {:?}",
            self.position_embedding_type
        );
        anyhow::ensure!(
            self.num_attention_heads > 0
                && self.hidden_size.is_multiple_of(self.num_attention_heads),
            "hidden_size {} is not a multiple of num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        anyhow::ensure!(self.type_vocab_size > 0, "type_vocab_size is 0");
        Ok(())
    }
}

/// LayerNorm parameters.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            gamma: vb.get(size, "weight")?.to_vec1()?,
            beta: vb.get(size, "bias")?.to_vec1()?,
            eps: eps as f32,
        })
    }

    /// Normalises `row` in place.
    #[inline(always)]
    fn apply(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = sum(row) / n;
        for x in row.iter_mut() {
            *x -= mean;
        }
        let inv = 1.0 / (dot(row, row) / n + self.eps).sqrt();
        for ((x, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
            *x = *x * inv * g + b;
        }
    }
}

/// Below this many rows (tokens), `x·Wᵀ` is computed as `(W·xᵀ)ᵀ`. For a handful of rows gemm
/// otherwise spends most of its time packing the weight; one ~20-token query embeds 1.5×
/// faster. Above, the plain product is faster (crossover measured between 40 and 120 rows).
const FEW_ROWS: usize = 64;

/// A linear layer. The weight stays as stored, `(out, in)`, and is used through a transposed
/// view: for batches that was ~10% faster than a contiguous `(in, out)` copy. The bias is
/// applied by the fused op that follows the GEMM.
struct Linear {
    weight: Tensor,
    bias: Vec<f32>,
}

impl Linear {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((outputs, inputs), "weight")?.contiguous()?,
            bias: vb.get(outputs, "bias")?.to_vec1()?,
        })
    }

    /// `x·Wᵀ`, without the bias.
    fn matmul(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if xs.dim(0)? < FEW_ROWS {
            self.weight.matmul(&xs.t()?)?.t()?.contiguous()
        } else {
            xs.matmul(&self.weight.t()?)
        }
    }
}

struct Layer {
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        let attention = vb.pp("attention");
        let this = attention.pp("self");
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for name in ["query", "key", "value"] {
            let p = this.pp(name);
            weights.push(p.get((h, h), "weight")?);
            biases.extend(p.get(h, "bias")?.to_vec1::<f32>()?);
        }
        Ok(Self {
            qkv: Linear {
                weight: Tensor::cat(&weights, 0)?,
                bias: biases,
            },
            attention_out: Linear::load(attention.pp("output").pp("dense"), h, h)?,
            attention_norm: Norm::load(attention.pp("output").pp("LayerNorm"), h, eps)?,
            intermediate: Linear::load(vb.pp("intermediate").pp("dense"), h, c.intermediate_size)?,
            output: Linear::load(vb.pp("output").pp("dense"), c.intermediate_size, h)?,
            output_norm: Norm::load(vb.pp("output").pp("LayerNorm"), h, eps)?,
        })
    }

    fn forward(&self, xs: &Tensor, lengths: &[usize], heads: usize) -> candle_core::Result<Tensor> {
        let context = self.qkv.matmul(xs)?.apply_op1_no_bwd(&Attention {
            bias: &self.qkv.bias,
            lengths,
            heads,
        })?;
        // The fused ops work in place on the fresh GEMM outputs: no allocation, no page faults.
        let attended = self.attention_out.matmul(&context)?;
        attended.inplace_op2(
            xs,
            &AddNorm {
                bias: &self.attention_out.bias,
                norm: &self.attention_norm,
            },
        )?;
        let inner = self.intermediate.matmul(&attended)?;
        inner.inplace_op1(&BiasGelu {
            bias: &self.intermediate.bias,
        })?;
        let out = self.output.matmul(&inner)?;
        out.inplace_op2(
            &attended,
            &AddNorm {
                bias: &self.output.bias,
                norm: &self.output_norm,
            },
        )?;
        Ok(out)
    }
}

/// The encoder: token ids in, last hidden state out.
pub struct BertModel {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    device: Device,
}

impl BertModel {
    /// Loads weights named as in Hugging Face checkpoints, with or without a `bert.` prefix.
    pub fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = c.hidden_size;
        let embeddings = vb.pp("embeddings");
        let table = |name: &str, rows: usize| -> candle_core::Result<Vec<f32>> {
            embeddings
                .pp(name)
                .get((rows, h), "weight")?
                .flatten_all()?
                .to_vec1()
        };
        let encoder = vb.pp("encoder");
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(encoder.pp(format!("layer.{i}")), c))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut token_type = table("token_type_embeddings", c.type_vocab_size)?;
        // Every input is a single segment: only token type 0 is used.
        token_type.truncate(h);
        Ok(Self {
            word: table("word_embeddings", c.vocab_size)?,
            position: table("position_embeddings", c.max_position_embeddings)?,
            token_type,
            embedding_norm: Norm::load(embeddings.pp("LayerNorm"), h, c.layer_norm_eps)?,
            layers,
            hidden: h,
            heads: c.num_attention_heads,
            vocab: c.vocab_size,
            max_positions: c.max_position_embeddings,
            device: vb.device().clone(),
        })
    }

    /// `ids` holds the sequences of a batch back to back, `lengths` their token counts.
    /// Returns the last hidden state, `(ids.len(), hidden)`, rows in the same order.
    pub fn forward(&self, ids: &[u32], lengths: &[usize]) -> candle_core::Result<Tensor> {
        if lengths.iter().sum::<usize>() != ids.len() {
            candle_core::bail!("sequence lengths do not add up to {} ids", ids.len());
        }
        if let Some(&longest) = lengths.iter().max() {
            if longest > self.max_positions {
                candle_core::bail!("sequence of {longest} tokens > {}", self.max_positions);
            }
        }
        let mut xs = Tensor::from_vec(
            self.embed(ids, lengths)?,
            (ids.len(), self.hidden),
            &self.device,
        )?;
        for layer in &self.layers {
            xs = layer.forward(&xs, lengths, self.heads)?;
        }
        Ok(xs)
    }

    /// Word + position + token-type embeddings, LayerNorm-ed.
    fn embed(&self, ids: &[u32], lengths: &[usize]) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let mut out = vec![0f32; ids.len() * h];
        let mut rows = out.chunks_exact_mut(h).zip(ids);
        for &len in lengths {
            for position in 0..len {
                let Some((row, &id)) = rows.next() else {
                    candle_core::bail!("fewer ids than lengths");
                };
                let id = id as usize;
                if id >= self.vocab {
                    candle_core::bail!("token id {id} outside the vocabulary");
                }
                let word = &self.word[id * h..(id + 1) * h];
                let pos = &self.position[position * h..(position + 1) * h];
                for (((o, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                    *o = w + p + t;
                }
                self.embedding_norm.apply(row);
            }
        }
        Ok(out)
    }
}

/// The contiguous f32 data of a custom op's input.
fn f32_slice<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 input only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input is not contiguous");
    };
    Ok(&data[start..end])
}

fn f32_slice_mut<'a>(
    op: &str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 input only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input is not contiguous");
    };
    Ok(&mut data[start..end])
}

/// Rows per rayon task: enough work to amortise the scheduling.
const ROWS_PER_TASK: usize = 16;

/// `gelu(x + bias)` with the exact (erf) GELU, row-wise.
struct BiasGelu<'a> {
    bias: &'a [f32],
}

impl InplaceOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let xs = f32_slice_mut(self.name(), storage, layout)?;
        let width = self.bias.len();
        if width == 0 || xs.len() % width != 0 {
            candle_core::bail!("bias-gelu: rows are not {width} wide");
        }
        xs.par_chunks_mut(width * ROWS_PER_TASK)
            .for_each(|rows| bias_gelu_rows(rows, self.bias));
        Ok(())
    }
}

multiversion! {
    fn bias_gelu_rows(rows: &mut [f32], bias: &[f32]) {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (x, &b) in row.iter_mut().zip(bias) {
                *x = gelu(*x + b);
            }
        }
    }
}

/// `LayerNorm(x + bias + residual)`, row-wise; the residual is the second input.
struct AddNorm<'a> {
    bias: &'a [f32],
    norm: &'a Norm,
}

impl InplaceOp2 for AddNorm<'_> {
    fn name(&self) -> &'static str {
        "add-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let xs = f32_slice_mut(self.name(), s1, l1)?;
        let residual = f32_slice(self.name(), s2, l2)?;
        let width = self.bias.len();
        if width == 0 || xs.len() % width != 0 || residual.len() != xs.len() {
            candle_core::bail!("add-norm: mismatched shapes");
        }
        xs.par_chunks_mut(width * ROWS_PER_TASK)
            .zip(residual.par_chunks(width * ROWS_PER_TASK))
            .for_each(|(x, r)| add_norm_rows(x, r, self.bias, self.norm));
        Ok(())
    }
}

multiversion! {
    fn add_norm_rows(rows: &mut [f32], residual: &[f32], bias: &[f32], norm: &Norm) {
        let width = bias.len();
        for (x, r) in rows.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
            for ((x, r), b) in x.iter_mut().zip(r).zip(bias) {
                *x += r + b;
            }
            norm.apply(x);
        }
    }
}

/// Multi-head self-attention over packed sequences: input the fused `(tokens, 3·hidden)`
/// Q/K/V projection (bias not yet added), output the `(tokens, hidden)` context. Each sequence
/// attends only to its own tokens, so no mask is needed.
struct Attention<'a> {
    bias: &'a [f32],
    lengths: &'a [usize],
    heads: usize,
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(self.name(), storage, layout)?;
        let hidden = self.bias.len() / 3;
        let tokens: usize = self.lengths.iter().sum();
        if hidden == 0 || !hidden.is_multiple_of(self.heads) || qkv.len() != tokens * 3 * hidden {
            candle_core::bail!("packed-attention: mismatched shapes");
        }
        let mut dst = vec![0f32; tokens * hidden];
        // Split the input and output into per-sequence slices; sequences run in parallel.
        let mut work = Vec::with_capacity(self.lengths.len());
        let (mut rest_in, mut rest_out) = (qkv, dst.as_mut_slice());
        for &len in self.lengths {
            let (input, tail_in) = rest_in.split_at(len * 3 * hidden);
            let (output, tail_out) = rest_out.split_at_mut(len * hidden);
            work.push((input, output));
            (rest_in, rest_out) = (tail_in, tail_out);
        }
        work.into_par_iter()
            .for_each(|(input, output)| attend(input, output, self.bias, self.heads));
        Ok((CpuStorage::F32(dst), Shape::from((tokens, hidden))))
    }
}

multiversion! {
    /// One sequence: `qkv` is `(len, 3·hidden)`, `out` is `(len, hidden)`.
    fn attend(qkv: &[f32], out: &mut [f32], bias: &[f32], heads: usize) {
        let hidden = bias.len() / 3;
        let len = out.len() / hidden;
        let d = hidden / heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Per head: K gathered transposed (d, padded len) so the scores of one query are built
        // by axpy over all keys (no horizontal sums); V gathered (len, d). Padding the key count
        // to whole vectors keeps every inner loop free of scalar remainders.
        let padded = len.div_ceil(LANES) * LANES;
        let mut kt = vec![0f32; d * padded];
        let mut v = vec![0f32; len * d];
        let mut q = vec![0f32; d];
        let mut scores = vec![0f32; padded];
        for head in 0..heads {
            let (qo, ko, vo) = (head * d, hidden + head * d, 2 * hidden + head * d);
            for (t, (row, v)) in qkv
                .chunks_exact(3 * hidden)
                .zip(v.chunks_exact_mut(d))
                .enumerate()
            {
                for (j, (x, b)) in row[ko..ko + d].iter().zip(&bias[ko..ko + d]).enumerate() {
                    kt[j * padded + t] = x + b;
                }
                for (v, (x, b)) in v.iter_mut().zip(row[vo..vo + d].iter().zip(&bias[vo..vo + d])) {
                    *v = x + b;
                }
            }
            for (row, ctx) in qkv.chunks_exact(3 * hidden).zip(out.chunks_exact_mut(hidden)) {
                for (q, (x, b)) in q.iter_mut().zip(row[qo..qo + d].iter().zip(&bias[qo..qo + d])) {
                    *q = (x + b) * scale;
                }
                for (c, s) in scores.chunks_exact_mut(LANES).enumerate() {
                    // One vector of keys at a time, accumulated in a register.
                    let mut acc = [0f32; LANES];
                    for (&qj, keys) in q.iter().zip(kt.chunks_exact(padded)) {
                        let k = &keys[c * LANES..(c + 1) * LANES];
                        for i in 0..LANES {
                            acc[i] += qj * k[i];
                        }
                    }
                    s.copy_from_slice(&acc);
                }
                scores[len..].fill(f32::NEG_INFINITY);
                let mut lane_max = [f32::NEG_INFINITY; LANES];
                for s in scores.chunks_exact(LANES) {
                    for i in 0..LANES {
                        lane_max[i] = lane_max[i].max(s[i]);
                    }
                }
                let max = lane_max.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                for s in scores.iter_mut() {
                    *s = exp(*s - max);
                }
                scores[len..].fill(0.0);
                let inv = 1.0 / sum(&scores);
                let ctx = &mut ctx[qo..qo + d];
                if d.is_multiple_of(LANES) {
                    // As for the scores: one register of the output at a time.
                    for (c, out) in ctx.chunks_exact_mut(LANES).enumerate() {
                        let mut acc = [0f32; LANES];
                        for (&p, value) in scores.iter().zip(v.chunks_exact(d)) {
                            let x = &value[c * LANES..(c + 1) * LANES];
                            for i in 0..LANES {
                                acc[i] += p * x[i];
                            }
                        }
                        for i in 0..LANES {
                            out[i] = acc[i] * inv;
                        }
                    }
                } else {
                    ctx.fill(0.0);
                    for (&p, value) in scores.iter().zip(v.chunks_exact(d)) {
                        for (c, x) in ctx.iter_mut().zip(value) {
                            *c += p * inv * x;
                        }
                    }
                }
            }
        }
    }
}

/// Lanes of the partial sums below: enough independent accumulators for the compiler to
/// vectorise a float reduction (which it may not reorder by itself).
const LANES: usize = 16;

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Exact GELU, `x·½·(1 + erf(x/√2))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf for f32, branch-free so loops over it vectorise: Abramowitz & Stegun 7.1.26,
/// max absolute error ~1.5e-7 (f32 epsilon near 1). libm's `erff` is a scalar call.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-ax * ax);
    y.copysign(x)
}

/// e^x for f32, branch-free (Cephes' expf polynomial, relative error ~2e-7); `x` below ~-87
/// gives 0, which is all softmax and erf need.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_66;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2ⁿ built from bits. Not `n as i32`: that cast saturates and checks NaN lane by lane.
    // In `n + 127 + 2²³` the mantissa holds the integer n + 127; shifting it into the
    // exponent field drops the rest.
    y * f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate_to_f32_precision() {
        let worst = (-8700..=8800)
            .map(|i| i as f32 / 100.0)
            .map(|x| {
                let want = (x as f64).exp();
                ((exp(x) as f64 - want) / want).abs()
            })
            .fold(0f64, f64::max);
        assert!(worst < 5e-7, "max relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(-87.0) < 1e-37);
    }

    #[test]
    fn fast_erf_matches_libm_erf() {
        let worst = (-600..=600)
            .map(|i| i as f64 / 100.0)
            .map(|x| (erf(x as f32) as f64 - candle_core::cpu::erf::erf_f64(x)).abs())
            .fold(0f64, f64::max);
        assert!(worst < 5e-7, "max |erf - libm::erf| = {worst}");
    }
}
