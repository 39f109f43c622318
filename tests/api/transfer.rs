//! `memspace export` / `memspace import`: the real binary as a CLI against an in-process server
//! (round trip, resuming a killed import, line-numbered errors, `--skip-invalid`), and the
//! example client generated from `schema.graphql` run against one.
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::TestApp;

const MEMSPACE: &str = env!("CARGO_BIN_EXE_memspace");

// ---------------------------------------------------------------------------------------------
// Helpers

/// What a finished process left.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// `memspace <args>` with `--url`/`--key` of `app` and nothing from this process's environment.
fn cli(app: &TestApp, args: &[&str]) -> Command {
    let mut cmd = Command::new(MEMSPACE);
    cmd.args(args)
        .args(["--url", &format!("{}/graphql", app.url)])
        .args(["--key", &app.admin_key])
        .env_remove("MEMSPACE_URL")
        .env_remove("MEMSPACE_KEY")
        .stdin(Stdio::null());
    cmd
}

/// Runs a command to the end on the blocking pool: the server under test shares this runtime.
async fn run(mut cmd: Command) -> Run {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("the command starts");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn memspace(app: &TestApp, args: &[&str]) -> Run {
    run(cli(app, args)).await
}

/// Panics with the output unless the run succeeded.
fn ok(r: Run) -> Run {
    assert!(r.status.success(), "memspace failed: {r:#?}");
    r
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write the JSONL file");
}

fn read_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}")))
        .collect()
}

/// A line without what a new space gives anew: its id and creation time.
fn portable(mut line: Value) -> Value {
    let obj = line.as_object_mut().expect("a line is an object");
    obj.remove("id");
    obj.remove("createdAt");
    line
}

/// A JSONL line with `id` = `rec-{n}` and a unique content.
fn record(n: usize) -> String {
    json!({
        "id": format!("rec-{n}"),
        "content": format!("Record {n}: the quarterly report for region {} was filed", n % 17),
        "tags": ["import", format!("batch-{}", n / 100)],
        "importance": 1 + n % 10,
    })
    .to_string()
}

async fn space(app: &TestApp, name: &str) -> String {
    app.space_as(&app.admin_key, name, json!({})).await
}

async fn memory_count(app: &TestApp, space_id: &str) -> i64 {
    app.gql(
        "query($s:ID!){ space(id:$s){ memoryCount } }",
        json!({ "s": space_id }),
    )
    .await
    .data()["space"]["memoryCount"]
        .as_i64()
        .expect("memoryCount")
}

/// Every memory's `externalId` in the space, page by page.
async fn external_ids(app: &TestApp, space_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let r = app
            .gql(
                "query($s:ID!,$a:String){ space(id:$s){ memories(first:1000,after:$a,order:ASC){ \
                   edges{ node{ externalId } } pageInfo{ hasNextPage endCursor } } } }",
                json!({ "s": space_id, "a": after }),
            )
            .await;
        let conn = &r.data()["space"]["memories"];
        for e in conn["edges"].as_array().expect("edges") {
            out.push(
                e["node"]["externalId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an imported memory without externalId: {e}"))
                    .to_string(),
            );
        }
        if conn["pageInfo"]["hasNextPage"] != json!(true) {
            return out;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
}

/// The line numbers a CLI output names: the first `line N` of each output line (a JSON
/// parser's own "at line 1 column 2" comes later on its line).
fn line_numbers(stderr: &str) -> BTreeSet<usize> {
    stderr
        .lines()
        .filter_map(|l| {
            let at = l.find("line ")? + "line ".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn rec_ids(numbers: impl IntoIterator<Item = usize>) -> BTreeSet<String> {
    numbers.into_iter().map(|n| format!("rec-{n}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Export and import

#[tokio::test]
async fn export_then_import_into_an_empty_space_gives_the_same_lines() {
    let app = TestApp::spawn().await;
    let (agent_id, _) = app.agent("scribe").await;
    let source = space(&app, "source").await;
    let mut inputs: Vec<Value> = (0..25)
        .map(|i| {
            json!({
                "content": format!("Fact {i}: the build cache lives in bucket {}", i * 7),
                "tags": if i % 3 == 0 { json!([]) } else { json!(["ops", format!("t{i}")]) },
                "importance": 1 + i % 10,
            })
        })
        .collect();
    inputs[1]["metadata"] = json!({ "source": "wiki", "nested": { "page": 12, "ok": true } });
    inputs[2]["confidence"] = json!(0.25);
    inputs[3]["threadId"] = json!("thread-9");
    inputs[4]["agentId"] = json!(agent_id);
    inputs[5]["expiresAt"] = json!("2099-01-01T00:00:00Z");
    inputs[6]["content"] =
        json!("Unicode survives: naïve café, 東京, emoji 🚀, \"quotes\"\nand a newline");
    app.gql(
        "mutation($s:ID!,$i:[MemoryInput!]!){ createMemories(spaceId:$s,inputs:$i){ id } }",
        json!({ "s": source, "i": inputs }),
    )
    .await
    .data();
    for i in 0..3 {
        app.memory_as(
            &app.admin_key,
            &source,
            &format!("Written alone {i}"),
            json!({}),
        )
        .await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let exported = dir.path().join("source.jsonl");
    let target = space(&app, "target").await;

    ok(memspace(
        &app,
        &[
            "export",
            "--space",
            &source,
            "--out",
            exported.to_str().unwrap(),
        ],
    )
    .await);
    ok(memspace(
        &app,
        &["import", "--space", &target, exported.to_str().unwrap()],
    )
    .await);
    let again = ok(memspace(&app, &["export", "--space", &target]).await);

    let before = read_lines(&std::fs::read_to_string(&exported).unwrap());
    let after = read_lines(&again.stdout);
    assert_eq!(before.len(), 28);
    assert_eq!(
        after.into_iter().map(portable).collect::<Vec<_>>(),
        before.iter().cloned().map(portable).collect::<Vec<_>>()
    );
    assert_eq!(before[4]["agent"], "scribe");
    assert_eq!(before[1]["metadata"]["nested"]["page"], 12);
    assert_eq!(memory_count(&app, &target).await, 28);
    // The source's ids became the target's externalIds.
    let sources: BTreeSet<String> = before
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    let imported: BTreeSet<String> = external_ids(&app, &target).await.into_iter().collect();
    assert_eq!(imported, sources);
}

#[tokio::test]
async fn the_cli_reads_the_url_and_key_from_the_environment() {
    let app = TestApp::spawn().await;
    let s = space(&app, "env").await;
    app.memory_as(&app.admin_key, &s, "From the environment", json!({}))
        .await;

    let mut cmd = Command::new(MEMSPACE);
    cmd.args(["export", "--space", &s])
        .env("MEMSPACE_URL", format!("{}/graphql", app.url))
        .env("MEMSPACE_KEY", &app.admin_key)
        .stdin(Stdio::null());
    let r = ok(run(cmd).await);

    let lines = read_lines(&r.stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["content"], "From the environment");
}

#[tokio::test]
async fn an_import_killed_part_way_finishes_on_a_rerun_with_every_line_once() {
    let app = TestApp::spawn().await;
    let s = space(&app, "resume").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("big.jsonl");
    let total = 3000;
    write_lines(&file, &(1..=total).map(record).collect::<Vec<_>>());
    let args = [
        "import",
        "--space",
        &s,
        file.to_str().unwrap(),
        "--batch-size",
        "100",
    ];

    let mut child = cli(&app, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memspace import starts");
    // Kill it a third of the way in, well clear of both ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let at_kill = loop {
        let n = memory_count(&app, &s).await;
        if n >= total as i64 / 3 {
            child.kill().expect("kill the import");
            break n;
        }
        if let Some(status) = child.try_wait().expect("poll the import") {
            panic!("the import ended ({status}) with {n} written, before it could be killed");
        }
        assert!(Instant::now() < deadline, "{n} written after 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("reap the import");
    // A request in flight at the kill may still land; batches are all or nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let partial = memory_count(&app, &s).await;
    assert!(
        partial >= at_kill && partial < total as i64,
        "killed with {at_kill} written, then {partial}: not part-way"
    );
    assert_eq!(partial % 100, 0, "a batch was split: {partial}");

    let rerun = ok(memspace(&app, &args).await);

    assert_eq!(memory_count(&app, &s).await, total as i64);
    let ids = external_ids(&app, &s).await;
    assert_eq!(ids.len(), total);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), total, "an externalId appears twice");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), rec_ids(1..=total));
    // Progress on a non-terminal is plain lines: no bar redrawing, no colours.
    assert!(
        !rerun.stderr.contains('\r') && !rerun.stderr.contains('\u{1b}'),
        "{:?}",
        rerun.stderr
    );
}

#[tokio::test]
async fn an_invalid_json_line_stops_the_import_before_its_batch() {
    let app = TestApp::spawn().await;
    let s = space(&app, "bad-json").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.jsonl");
    let mut lines: Vec<String> = (1..=100).map(record).collect();
    lines[56] = r#"{"id": "rec-57", "content": "cut off"#.to_string();
    write_lines(&file, &lines);

    let r = memspace(
        &app,
        &[
            "import",
            "--space",
            &s,
            file.to_str().unwrap(),
            "--batch-size",
            "10",
        ],
    )
    .await;

    assert!(!r.status.success(), "{r:#?}");
    assert!(line_numbers(&r.stderr).contains(&57), "{}", r.stderr);
    let stored: BTreeSet<String> = external_ids(&app, &s).await.into_iter().collect();
    assert_eq!(
        stored,
        rec_ids(1..=50),
        "lines 51–60 are one batch: none of it is written"
    );
}

#[tokio::test]
async fn a_line_breaking_a_server_rule_is_reported_with_its_line_number() {
    let app = TestApp::spawn().await;
    let s = space(&app, "bad-rule").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rule.jsonl");
    let mut lines: Vec<String> = (1..=40).map(record).collect();
    lines[22] = json!({ "id": "rec-23", "content": "too important", "importance": 11 }).to_string();
    write_lines(&file, &lines);

    let r = memspace(
        &app,
        &[
            "import",
            "--space",
            &s,
            file.to_str().unwrap(),
            "--batch-size",
            "10",
        ],
    )
    .await;

    assert!(!r.status.success(), "{r:#?}");
    assert!(line_numbers(&r.stderr).contains(&23), "{}", r.stderr);
    assert!(r.stderr.contains("VALIDATION_ERROR"), "{}", r.stderr);
    let stored: BTreeSet<String> = external_ids(&app, &s).await.into_iter().collect();
    assert_eq!(
        stored,
        rec_ids(1..=20),
        "lines 21–30 are one batch: none of it is written"
    );
}

#[tokio::test]
async fn skip_invalid_writes_the_rest_and_names_every_skipped_line() {
    let app = TestApp::spawn().await;
    let s = space(&app, "skip").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("mixed.jsonl");
    let mut lines: Vec<String> = (1..=60).map(record).collect();
    lines[6] = "this is not JSON".into();
    lines[18] = json!({ "id": "rec-19" }).to_string();
    lines[22] = json!({ "id": "rec-23", "content": "x", "importance": 11 }).to_string();
    lines[29] = String::new(); // a blank line: ignored, but it still counts as a line
    lines[40] = json!({ "id": "rec-41", "content": "   " }).to_string();
    lines[43] = json!({ "id": "rec-44", "content": "x", "confidence": 2.5 }).to_string();
    lines[57] = json!({ "id": "rec-58", "content": "x", "tags": [1, 2] }).to_string();
    write_lines(&file, &lines);
    let skipped = [7, 19, 23, 41, 44, 58];

    let r = ok(memspace(
        &app,
        &[
            "import",
            "--space",
            &s,
            file.to_str().unwrap(),
            "--batch-size",
            "10",
            "--skip-invalid",
        ],
    )
    .await);

    assert_eq!(
        line_numbers(&r.stderr),
        skipped.into_iter().collect(),
        "{}",
        r.stderr
    );
    let summary = r.stderr.lines().last().unwrap_or_default();
    for n in skipped {
        assert!(
            summary.contains(&n.to_string()),
            "summary misses {n}: {summary}"
        );
    }
    let stored: BTreeSet<String> = external_ids(&app, &s).await.into_iter().collect();
    let expected = rec_ids((1..=60).filter(|n| *n != 30 && !skipped.contains(n)));
    assert_eq!(stored, expected);
    assert_eq!(memory_count(&app, &s).await, 53);
}

#[tokio::test]
async fn an_import_with_a_key_that_may_only_view_the_space_fails_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let s = space(&app, "read-only").await;
    let (viewer_id, viewer_key) = app.user("viewer", false).await;
    app.share_as(
        &app.admin_key,
        &s,
        json!([{ "subjectKind": "USER", "subjectId": viewer_id, "permission": "VIEW" }]),
    )
    .await
    .data();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("lines.jsonl");
    write_lines(&file, &(1..=5).map(record).collect::<Vec<_>>());

    let mut cmd = Command::new(MEMSPACE);
    cmd.args(["import", "--space", &s, file.to_str().unwrap()])
        .args(["--url", &format!("{}/graphql", app.url)])
        .args(["--key", &viewer_key])
        .stdin(Stdio::null());
    let r = run(cmd).await;

    assert!(!r.status.success(), "{r:#?}");
    assert!(r.stderr.contains("FORBIDDEN"), "{}", r.stderr);
    assert_eq!(memory_count(&app, &s).await, 0);
}

// ---------------------------------------------------------------------------------------------
// The example client (examples/client), generated from schema.graphql

/// The built example next to the `memspace` binary (same target dir and profile).
fn client_example() -> Option<PathBuf> {
    let dir = Path::new(MEMSPACE).parent()?;
    let exe = dir.join(format!(
        "memspace-client-example{}",
        std::env::consts::EXE_SUFFIX
    ));
    exe.is_file().then_some(exe)
}

/// The example binary, or `None` (skip) when it is not built and not required.
fn require_client_example() -> Option<PathBuf> {
    let found = client_example();
    if found.is_none() {
        let hint = "build it first: cargo build -p memspace-client-example";
        if std::env::var("MEMSPACE_REQUIRE_CLIENT").as_deref() == Ok("1") {
            panic!("MEMSPACE_REQUIRE_CLIENT=1 but memspace-client-example is not built; {hint}");
        }
        eprintln!("skipped: memspace-client-example is not built ({hint})");
    }
    found
}

#[tokio::test]
async fn the_generated_client_example_writes_and_searches_against_a_server() {
    let Some(exe) = require_client_example() else {
        return;
    };
    let app = TestApp::spawn().await;

    let mut cmd = Command::new(exe);
    cmd.env("MEMSPACE_URL", format!("{}/graphql", app.url))
        .env("MEMSPACE_KEY", &app.admin_key)
        .stdin(Stdio::null());
    let r = run(cmd).await;

    assert!(r.status.success(), "{r:#?}");
    let spaces = app
        .gql(
            "{ spaces(first:10){ edges{ node{ id memoryCount } } } }",
            json!({}),
        )
        .await;
    let edges = spaces.data()["spaces"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 1, "the example made one space: {edges:?}");
    let written = edges[0]["node"]["memoryCount"].as_i64().unwrap();
    assert!(written > 0);
    let hits: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("hit ")).collect();
    assert!(
        hits.first().is_some_and(|h| h.contains("staging")),
        "the best hit is the staging memory: {}",
        r.stdout
    );
}

#[tokio::test]
async fn the_generated_client_example_exits_non_zero_on_a_graphql_error() {
    let Some(exe) = require_client_example() else {
        return;
    };
    let app = TestApp::spawn().await;

    let mut cmd = Command::new(exe);
    cmd.env("MEMSPACE_URL", format!("{}/graphql", app.url))
        .env("MEMSPACE_KEY", "not-a-key")
        .stdin(Stdio::null());
    let r = run(cmd).await;

    assert!(!r.status.success(), "{r:#?}");
    assert!(r.stderr.contains("UNAUTHENTICATED"), "{}", r.stderr);
}
