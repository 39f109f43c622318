//! Benchmarks with a seed-data generator.
//!
//! `cargo run --release --bin bench -- search [--memories 100000] [--database-url URL]`
//! ingests short memories through `createMemories` (batches of 1000, builtin embedder) and
//! reports ingest memories/s, then search p50/p99 per mode at 10k and at the full size, all in
//! one space, executed through the GraphQL schema in-process (no network in the figures).
//!
//! `cargo run --release --bin bench -- embed [--model-dir DIR] [--texts 2000] [--batch B]`
//! embeds deterministic ~18-word English sentences with the in-process neural embedder
//! (`minilm-l6-v2`, installed by `scripts/fetch-model`) and reports sentences/s.
use std::time::{Duration, Instant};

use async_graphql::{Request, Variables};
use clap::{Parser, Subcommand};
use memspace::{auth as keys, search::neural, Config};
use memspace_graphql::context::LoaderSlot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ingest and search benchmark.
    Search {
        /// Total memories to ingest.
        #[arg(long, default_value_t = 100_000)]
        memories: usize,
        /// Database (default: a fresh SQLite file in a temp dir).
        #[arg(long)]
        database_url: Option<String>,
        /// Searches per mode and size.
        #[arg(long, default_value_t = 200)]
        searches: usize,
        /// Embedder of the benchmark's space (e.g. `minilm-l6-v2`, after scripts/fetch-model).
        #[arg(long, default_value = "builtin-hash-384")]
        embedder: String,
        /// Memories made of English words (14–22 per memory, as `embed` uses) instead of
        /// synthetic words, which split into ~3× more word pieces for a neural tokenizer.
        #[arg(long)]
        english: bool,
    },
    /// Neural embedding throughput (minilm-l6-v2 on CPU).
    Embed {
        /// Model directory (default: models/all-MiniLM-L6-v2).
        #[arg(long)]
        model_dir: Option<std::path::PathBuf>,
        /// Sentences to embed.
        #[arg(long, default_value_t = 2000)]
        texts: usize,
        /// Texts per `embed` call (default: all in one call).
        #[arg(long)]
        batch: Option<usize>,
    },
}

struct Bench {
    app: memspace::App,
    key: String,
}

impl Bench {
    async fn run(&self, query: &str, vars: serde_json::Value) -> serde_json::Value {
        let principal = keys::authenticate(&self.app.db.read, &self.key)
            .await
            .map_err(|e| e.message())
            .expect("admin key authenticates");
        let loaders = LoaderSlot::new(&self.app.db.read, Some(principal.clone()));
        let req = Request::new(query)
            .variables(Variables::from_json(vars))
            .data(principal)
            .data(loaders);
        let resp = self.app.schema.execute(req).await;
        assert!(resp.errors.is_empty(), "errors: {:?}", resp.errors);
        resp.data.into_json().expect("JSON data")
    }
}

fn vocabulary() -> Vec<String> {
    // Pronounceable synthetic words, so stems and trigrams behave like text.
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "an", "el", "or", "us", "ti",
        "ba", "de", "fu", "go", "hi",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    (0..3000)
        .map(|_| {
            let n = rng.gen_range(2..=4);
            (0..n)
                .map(|_| syllables[rng.gen_range(0..syllables.len())])
                .collect::<String>()
        })
        .collect()
}

fn sentence(rng: &mut StdRng, vocab: &[String], words: usize) -> String {
    (0..words)
        .map(|_| {
            // Skewed towards the head of the vocabulary, like natural text.
            let r: f64 = rng.gen::<f64>();
            let i = ((r * r * r) * vocab.len() as f64) as usize;
            vocab[i.min(vocab.len() - 1)].as_str()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Search {
            memories,
            database_url,
            searches,
            embedder,
            english,
        } => search(memories, database_url, searches, embedder, english).await,
        Cmd::Embed {
            model_dir,
            texts,
            batch,
        } => embed(model_dir, texts, batch),
    }
}

async fn search(
    memories: usize,
    database_url: Option<String>,
    searches: usize,
    embedder: String,
    english: bool,
) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let url =
        database_url.unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.display()));
    let key = "bench-admin-key-0123456789".to_string();
    let mut config = Config::new(url.clone());
    config.admin_key = Some(key.clone());
    let app = memspace::build(&config).await?;
    let bench = Bench { app, key };
    eprintln!("database: {url}");

    let space = bench
        .run(
            "mutation($e: String!) { createSpace(input: {name: \"bench\", embedder: $e}) { id } }",
            json!({ "e": embedder }),
        )
        .await;
    eprintln!("embedder: {embedder}");
    let space_id = space["createSpace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vocab = vocabulary();
    let mut rng = StdRng::seed_from_u64(42);
    let english_texts = if english {
        english_sentences(memories)
    } else {
        Vec::new()
    };

    let checkpoints: Vec<usize> = [10_000, memories]
        .into_iter()
        .filter(|c| *c <= memories)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut ingested = 0usize;
    let mut ingest_time = Duration::ZERO;
    println!("| memories | mode | p50 ms | p99 ms |");
    println!("|---:|---|---:|---:|");
    let mut ingest_lines = Vec::new();
    for checkpoint in checkpoints {
        let started = Instant::now();
        let before = ingested;
        while ingested < checkpoint {
            let n = (checkpoint - ingested).min(1000);
            let inputs: Vec<serde_json::Value> = (ingested..ingested + n)
                .map(|i| match english_texts.get(i) {
                    Some(text) => json!({ "content": text }),
                    None => {
                        let words = rng.gen_range(8..=20);
                        json!({ "content": sentence(&mut rng, &vocab, words) })
                    }
                })
                .collect();
            bench
                .run(
                    "mutation($s: ID!, $i: [MemoryInput!]!) { createMemories(spaceId: $s, inputs: $i) { id } }",
                    json!({ "s": space_id, "i": inputs }),
                )
                .await;
            ingested += n;
            if ingested.is_multiple_of(10_000) {
                eprintln!("ingested {ingested}");
            }
        }
        let spent = started.elapsed();
        ingest_time += spent;
        ingest_lines.push(format!(
            "ingest {}..{}: {:.0} memories/s",
            before,
            ingested,
            (ingested - before) as f64 / spent.as_secs_f64()
        ));
        for mode in ["KEYWORD", "SEMANTIC", "HYBRID"] {
            let mut times = Vec::with_capacity(searches);
            for i in 0..searches + 5 {
                let words = rng.gen_range(2..=4);
                let q = sentence(&mut rng, &vocab, words);
                let t = Instant::now();
                bench
                    .run(
                        "query($q: String!, $m: SearchMode!, $s: [ID!]) { searchMemories(input: {query: $q, mode: $m, spaceIds: $s, limit: 10}) { score memory { id } } }",
                        json!({ "q": q, "m": mode, "s": [space_id] }),
                    )
                    .await;
                if i >= 5 {
                    times.push(t.elapsed()); // the first few warm the vector index
                }
            }
            times.sort();
            println!(
                "| {} | {} | {:.2} | {:.2} |",
                ingested,
                mode,
                percentile(&times, 0.5).as_secs_f64() * 1000.0,
                percentile(&times, 0.99).as_secs_f64() * 1000.0
            );
        }
    }
    for line in ingest_lines {
        println!("{line}");
    }
    println!(
        "ingest total: {} memories in {:.1}s = {:.0} memories/s (batches of 1000, {embedder})",
        ingested,
        ingest_time.as_secs_f64(),
        ingested as f64 / ingest_time.as_secs_f64()
    );
    Ok(())
}

/// Deterministic English-like sentences of 14 to 22 words (18 on average).
fn english_sentences(n: usize) -> Vec<String> {
    const WORDS: &str = "\
        the a user prefers dark mode and wants short answers meeting with team on monday \
        about project deadline budget review customer reported bug in login page after \
        update password reset email was sent to support ticket closed yesterday because \
        server restarted during deployment of new release database migration failed for \
        large tables we should add an index on created date column she likes coffee without \
        sugar every morning before work he travels to berlin next week for conference on \
        machine learning invoice is due end month remember call back client regarding \
        contract renewal is the api rate limit too low our mobile app crashes when offline \
        documentation needs examples search results are slow large spaces agent summarised \
        conversation notes into memory favourite programming language rust python garden \
        needs watering twice weekly summer";
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = StdRng::seed_from_u64(18);
    (0..n)
        .map(|_| {
            let count = rng.gen_range(14..=22);
            (0..count)
                .map(|_| words[rng.gen_range(0..words.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn embed(
    model_dir: Option<std::path::PathBuf>,
    texts: usize,
    batch: Option<usize>,
) -> anyhow::Result<()> {
    let dir = model_dir.unwrap_or_else(neural::default_model_dir);
    let started = Instant::now();
    let model = neural::MiniLm::load(&dir)?;
    eprintln!(
        "loaded {} from {} in {:.2}s",
        neural::NAME,
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    let sentences = english_sentences(texts);
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    model.embed(&refs[..refs.len().min(64)])?; // warm-up: first-touch allocations, thread pool
    let batch = batch.unwrap_or(texts).max(1);
    let started = Instant::now();
    let mut vectors = 0;
    for chunk in refs.chunks(batch) {
        vectors += model.embed(chunk)?.len();
    }
    let spent = started.elapsed().as_secs_f64();
    println!(
        "embed: {vectors} sentences (~18 words) in {spent:.2}s = {:.0} sentences/s \
         ({} threads, {batch} texts per call)",
        vectors as f64 / spent,
        neural::compute_threads(),
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("memspace-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
