//! `memspace export` and `memspace import`: JSONL in and out of a space, through a running
//! server's public GraphQL API (so they work against any deployment, with an ordinary API key
//! and its permissions).
//!
//! One memory per line: `{"id","content","tags","metadata","importance","confidence",
//! "threadId","agent","createdAt","expiresAt"}` (`agent` is the agent's handle). Import sends
//! batches through `createMemories` with each line's `id` as the memory's `externalId`, so a
//! re-run (after an interruption) skips what is already there and every line lands exactly once.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Map, Value};

/// Where the server is and how to authenticate.
#[derive(Clone, Debug, clap::Args)]
pub struct Remote {
    /// GraphQL endpoint of the server.
    #[arg(
        long,
        env = "MEMSPACE_URL",
        default_value = "http://127.0.0.1:8080/graphql"
    )]
    pub url: String,
    /// API key (or space token) to act with.
    #[arg(long, env = "MEMSPACE_KEY", hide_env_values = true)]
    pub key: String,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The space to export.
    #[arg(long)]
    pub space: String,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The space to import into.
    #[arg(long)]
    pub space: String,
    /// The JSONL file.
    pub file: PathBuf,
    /// Write the valid lines and report the invalid ones (default: stop at the first bad
    /// line, before its batch, with nothing of that batch written).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Memories per `createMemories` call (1–1000).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
}

struct Client {
    http: reqwest::Client,
    remote: Remote,
}

impl Client {
    fn new(remote: Remote) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Client { http, remote })
    }

    /// Runs an operation; GraphQL errors come back as the `errors` array.
    async fn run(
        &self,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Result<Value, Vec<Value>>> {
        let resp = self
            .http
            .post(&self.remote.url)
            .bearer_auth(&self.remote.key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.remote.url))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("the server answered {status} without a JSON body"))?;
        match body.get("errors").and_then(Value::as_array) {
            Some(errors) if !errors.is_empty() => Ok(Err(errors.clone())),
            _ => Ok(Ok(body.get("data").cloned().unwrap_or(Value::Null))),
        }
    }

    async fn data(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        self.run(query, variables)
            .await?
            .map_err(|errors| anyhow!(describe(&errors)))
    }
}

fn describe(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{} ({})",
                e["message"].as_str().unwrap_or("error"),
                e["extensions"]["code"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

const EXPORT_PAGE: &str = "query($s: ID!, $after: String) { space(id: $s) { memories(first: 1000, after: $after, orderBy: { direction: ASC }) { edges { node { id content tags metadata importance confidence threadId agent { handle } createdAt expiresAt } } pageInfo { hasNextPage endCursor } } } }";

/// Streams a space's memories, oldest first, one JSON object per line (constant memory).
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = Client::new(args.remote)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut after: Option<String> = None;
    let mut count = 0usize;
    loop {
        let data = client
            .data(EXPORT_PAGE, json!({ "s": args.space, "after": after }))
            .await?;
        let conn = &data["space"]["memories"];
        for edge in conn["edges"].as_array().cloned().unwrap_or_default() {
            let n = &edge["node"];
            let line = json!({
                "id": n["id"],
                "content": n["content"],
                "tags": n["tags"],
                "metadata": n["metadata"],
                "importance": n["importance"],
                "confidence": n["confidence"],
                "threadId": n["threadId"],
                "agent": n["agent"]["handle"],
                "createdAt": n["createdAt"],
                "expiresAt": n["expiresAt"],
            });
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        if conn["pageInfo"]["hasNextPage"].as_bool() != Some(true) {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    out.flush()?;
    eprintln!("exported {count} memories");
    Ok(())
}

/// A line turned into a `MemoryInput`, or the rule it breaks.
fn to_input(line: &str, agents: &HashMap<String, String>) -> Result<Map<String, Value>, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("a line must be a JSON object")?;
    let mut input = Map::new();
    match obj.get("content") {
        Some(Value::String(c)) if !c.trim().is_empty() => {
            input.insert("content".into(), json!(c));
        }
        Some(Value::String(_)) => return Err("content: must not be blank".into()),
        _ => return Err("content: required, a string".into()),
    }
    match obj.get("id") {
        Some(Value::String(id)) if !id.is_empty() => {
            input.insert("externalId".into(), json!(id));
        }
        Some(Value::Number(n)) => {
            input.insert("externalId".into(), json!(n.to_string()));
        }
        _ => return Err("id: required (it makes the import resumable)".into()),
    }
    for (field, key) in [
        ("tags", "tags"),
        ("metadata", "metadata"),
        ("importance", "importance"),
        ("confidence", "confidence"),
        ("threadId", "threadId"),
        ("expiresAt", "expiresAt"),
    ] {
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(value) => {
                let ok = match field {
                    "tags" => value
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_string)),
                    "metadata" => value.is_object(),
                    "importance" => value.as_i64().is_some(),
                    "confidence" => value.as_f64().is_some(),
                    _ => value.is_string(),
                };
                if !ok {
                    return Err(format!("{field}: wrong type"));
                }
                input.insert(key.into(), value.clone());
            }
        }
    }
    if let Some(Value::String(handle)) = obj.get("agent") {
        match agents.get(handle) {
            Some(id) => {
                input.insert("agentId".into(), json!(id));
            }
            None => {
                return Err(format!(
                    "agent: no agent with handle {handle:?} in this organization"
                ))
            }
        }
    }
    Ok(input)
}

const CREATE: &str =
    "mutation($s: ID!, $i: [MemoryInput!]!) { createMemories(spaceId: $s, inputs: $i) { id } }";

/// Imports a JSONL file in batches, resumably, with progress.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    if !(1..=1000).contains(&args.batch_size) {
        bail!("--batch-size must be 1–1000");
    }
    let client = Client::new(args.remote.clone())?;
    // The space must exist and be writable; fail fast with the server's words.
    client
        .data(
            "query($s: ID!) { space(id: $s) { id viewerPermission } }",
            json!({ "s": args.space }),
        )
        .await
        .context("cannot open the space")?;
    let agents: HashMap<String, String> = client
        .data("{ agents { id handle } }", json!({}))
        .await?
        .get("agents")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    Some((
                        a["handle"].as_str()?.to_string(),
                        a["id"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();

    let total_lines = BufReader::new(std::fs::File::open(&args.file)?)
        .lines()
        .filter(|l| l.as_ref().is_ok_and(|l| !l.trim().is_empty()))
        .count() as u64;
    let progress = Progress::new(total_lines);
    let reader = BufReader::new(
        std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?,
    );
    let mut batch: Vec<(usize, Map<String, Value>)> = Vec::with_capacity(args.batch_size);
    let mut skipped: Vec<(usize, String)> = Vec::new();
    let mut written = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("line {number}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        match to_input(&line, &agents) {
            Ok(input) => batch.push((number, input)),
            Err(rule) if args.skip_invalid => {
                eprintln!("skipping line {number}: {rule}");
                skipped.push((number, rule));
                progress.inc(1);
            }
            Err(rule) => {
                progress.finish();
                bail!(
                    "line {number}: {rule}; stopped before its batch ({written} memories written before it; fix the line and re-run: written lines are skipped)"
                );
            }
        }
        if batch.len() == args.batch_size {
            written += send(&client, &args, &mut batch, &mut skipped, &progress).await?;
        }
    }
    if !batch.is_empty() {
        written += send(&client, &args, &mut batch, &mut skipped, &progress).await?;
    }
    progress.finish();
    eprintln!(
        "imported {written} lines into space {} ({} skipped{})",
        args.space,
        skipped.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(
                ": lines {}",
                skipped
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(())
}

/// Sends one batch; a server-side rule broken by an item is reported with its line number.
async fn send(
    client: &Client,
    args: &ImportArgs,
    batch: &mut Vec<(usize, Map<String, Value>)>,
    skipped: &mut Vec<(usize, String)>,
    progress: &Progress,
) -> anyhow::Result<u64> {
    loop {
        if batch.is_empty() {
            return Ok(0);
        }
        let inputs: Vec<Value> = batch
            .iter()
            .map(|(_, i)| Value::Object(i.clone()))
            .collect();
        match client
            .run(CREATE, json!({ "s": args.space, "i": inputs }))
            .await?
        {
            Ok(_) => {
                let n = batch.len() as u64;
                progress.inc(n);
                batch.clear();
                return Ok(n);
            }
            Err(errors) => {
                let index = errors
                    .first()
                    .and_then(|e| e["extensions"]["index"].as_u64())
                    .map(|i| i as usize)
                    .filter(|i| *i < batch.len());
                let Some(index) = index else {
                    bail!("the server refused a batch: {}", describe(&errors));
                };
                let (number, _) = batch[index];
                let rule = describe(&errors);
                if !args.skip_invalid {
                    progress.finish();
                    bail!(
                        "line {number}: {rule}; stopped before its batch (nothing of it written)"
                    );
                }
                eprintln!("skipping line {number}: {rule}");
                skipped.push((number, rule));
                batch.remove(index);
                progress.inc(1);
            }
        }
    }
}

/// A progress bar with rate and ETA on a terminal; plain periodic lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: std::sync::atomic::AtomicU64,
    started: Instant,
    last_line: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} memories  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            total,
            done: Default::default(),
            started: Instant::now(),
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(2) {
            *last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!("{done}/{} lines, {rate:.0}/s", self.total);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
