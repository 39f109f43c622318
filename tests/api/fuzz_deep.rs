//! Issue 17, item 1's property test: generated deep and long fragment chains, fan-outs, deep
//! selections, nested list and object literals, deep JSON variables (metadata up to 10,000
//! levels of objects or arrays) and long lists, sent over HTTP and over the WebSocket. Every
//! case gets an answer (HTTP 200/4xx with coded errors; on the socket a `next`/`error` with
//! coded errors, or a close with a documented code), `/healthz` stays 200 after each, and the
//! process's RSS (the test server runs in this process) stays under a bound.
//!
//! `PROPTEST_CASES=500 cargo test --test api fuzz_deep -- --nocapture` for a longer run.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::json;

use crate::common::TestApp;
use crate::hardening::{
    check_answer, check_ws_errors, documented_close, ws_next, ws_open, ws_send_text, WsIn,
};

/// How much the process may grow over its size before the run (the server's caches, the
/// allocator's retained pages); unbounded growth or a blow-up per case would pass it quickly.
const RSS_GROWTH_BOUND_KB: u64 = 512 * 1024;

#[derive(Debug, Clone)]
enum Shape {
    /// `query{viewer{...F0}} fragment F0 on Viewer{organization{id} ...F1} … Fn on Viewer{roles{id}}`.
    FragmentChain(usize),
    /// Each fragment spreads the next one `width` times (an exponential expansion).
    FragmentFan { len: usize, width: usize },
    /// `{ viewer { viewer { … } } }`, `depth` levels.
    DeepSelection(usize),
    /// `spaceIds: [[[…["x"]…]]]` inline, `depth` levels.
    NestedListLiteral(usize),
    /// `metadata: {a: {a: … 1 …}}` inline, `depth` levels.
    NestedObjectLiteral(usize),
    /// `variables.m` nested `depth` levels of arrays or objects, as metadata of a new memory.
    DeepJsonVariable { depth: usize, arrays: bool },
    /// `variables.s` a list of `n` ids.
    LongList(usize),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (1usize..6000).prop_map(Shape::FragmentChain),
        ((1usize..40), (1usize..6)).prop_map(|(len, width)| Shape::FragmentFan { len, width }),
        (1usize..5000).prop_map(Shape::DeepSelection),
        (1usize..10_000).prop_map(Shape::NestedListLiteral),
        (1usize..10_000).prop_map(Shape::NestedObjectLiteral),
        // Under serde_json's 128 levels (the value reaches the resolvers) and far above it.
        (prop_oneof![1usize..127, 127usize..10_001], any::<bool>())
            .prop_map(|(depth, arrays)| Shape::DeepJsonVariable { depth, arrays }),
        prop_oneof![0usize..1001, 1001usize..50_000].prop_map(Shape::LongList),
    ]
}

/// The operation as `(query, raw JSON text of the variables)`: deep values are written as text,
/// never built as `serde_json::Value`s (whose drop would recurse in the test itself).
fn operation(shape: &Shape, space: &str) -> (String, String) {
    match shape {
        Shape::FragmentChain(n) => {
            let mut q = String::from("query{viewer{...F0}} ");
            for k in 0..*n {
                q.push_str(&format!(
                    "fragment F{k} on Viewer{{organization{{id}} ...F{}}} ",
                    k + 1
                ));
            }
            q.push_str(&format!("fragment F{n} on Viewer{{roles{{id}}}}"));
            (q, "{}".into())
        }
        Shape::FragmentFan { len, width } => {
            let mut q = String::from("query{viewer{...F0}} ");
            for k in 0..*len {
                let spreads = format!("...F{} ", k + 1).repeat(*width);
                q.push_str(&format!(
                    "fragment F{k} on Viewer{{roles{{id}} {spreads}}} "
                ));
            }
            q.push_str(&format!("fragment F{len} on Viewer{{organization{{id}}}}"));
            (q, "{}".into())
        }
        Shape::DeepSelection(depth) => {
            let q = format!(
                "{}__typename{}",
                "{ viewer ".repeat(*depth),
                " }".repeat(*depth)
            );
            (q, "{}".into())
        }
        Shape::NestedListLiteral(depth) => {
            let q = format!(
                "{{ searchMemories(input:{{query:\"q\",spaceIds:{}\"x\"{}}}){{ score }} }}",
                "[".repeat(*depth),
                "]".repeat(*depth)
            );
            (q, "{}".into())
        }
        Shape::NestedObjectLiteral(depth) => {
            let q = format!(
                "mutation{{ createMemory(input:{{spaceId:\"{space}\",content:\"deep\",metadata:{}1{}}}){{ id }} }}",
                "{a:".repeat(*depth),
                "}".repeat(*depth)
            );
            (q, "{}".into())
        }
        Shape::DeepJsonVariable { depth, arrays } => {
            let (open, close) = if *arrays {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            // Metadata must be an object: the nesting sits under one key.
            let vars = format!(
                "{{\"s\":\"{space}\",\"m\":{{\"deep\":{}1{}}}}}",
                open.repeat(*depth),
                close.repeat(*depth)
            );
            let q = "mutation($s:ID!,$m:JSON){ createMemory(input:{spaceId:$s,content:\"deep\",metadata:$m}){ id } }";
            (q.into(), vars)
        }
        Shape::LongList(n) => {
            let ids: Vec<String> = (0..*n).map(|i| format!("\"id{i}\"")).collect();
            let vars = format!("{{\"s\":[{}]}}", ids.join(","));
            let q = "query($s:[ID!]){ searchMemories(input:{query:\"q\",spaceIds:$s}){ score } }";
            (q.into(), vars)
        }
    }
}

/// `query{viewer{...F0}}`, each fragment selecting `roles{id}` and spreading the next `width`
/// times: the engine resolves a field once per place it is reached from.
fn fan(len: usize, width: usize) -> String {
    operation(&Shape::FragmentFan { len, width }, "").0
}

#[tokio::test]
async fn a_fan_of_fragments_is_query_too_complex_by_fields_before_any_sql_over_both_transports() {
    let app = TestApp::spawn().await;
    app.warm(&app.admin_key).await;
    // 5 levels of 5 spreads: 3,906 places reach `roles`; the engine ran 7,812 statements.
    let before = app.statements();
    let r = app.gql(&fan(5, 5), json!({})).await;
    assert_eq!(r.code(), "QUERY_TOO_COMPLEX", "{}", r.body);
    assert_eq!(r.error()["extensions"]["kind"], "fields");
    assert_eq!(r.error()["extensions"]["limit"], 2000);
    assert_eq!(app.statements(), before, "refused before any SQL");

    let auth = json!({ "authorization": format!("Bearer {}", app.admin_key) });
    let (mut ws, ack) = ws_open(&app.url, auth).await.expect("socket");
    ack.expect("acknowledged");
    let msg = json!({ "id": "fan", "type": "subscribe", "payload": { "query": fan(5, 5) } });
    ws_send_text(&mut ws, msg.to_string()).await.expect("sent");
    let answer = match ws_next(&mut ws).await.expect("answer") {
        WsIn::Text(m) => m,
        WsIn::Closed(code) => panic!("closed {code:?}"),
    };
    let errors = if answer["type"] == "error" {
        answer["payload"].clone()
    } else {
        answer["payload"]["errors"].clone()
    };
    assert_eq!(
        errors[0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{answer}"
    );
    assert_eq!(errors[0]["extensions"]["kind"], "fields");

    // A smaller fan is answered.
    let small = app.gql(&fan(3, 5), json!({})).await;
    assert!(small.data()["viewer"]["roles"].is_array());
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

struct Target {
    url: String,
    admin: String,
    space: String,
    client: reqwest::Client,
}

async fn over_http(t: &Target, query: &str, vars: &str) -> Result<String, String> {
    let body = format!("{{\"query\":{},\"variables\":{vars}}}", json!(query));
    let resp = t
        .client
        .post(format!("{}/graphql", t.url))
        .bearer_auth(&t.admin)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
    let codes = check_answer(status, &bytes).map_err(|why| {
        format!(
            "HTTP {status}: {why}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })?;
    Ok(format!("HTTP {status} {codes:?}"))
}

async fn over_ws(t: &Target, query: &str, vars: &str) -> Result<String, String> {
    let auth = json!({ "authorization": format!("Bearer {}", t.admin) });
    let (mut ws, ack) = ws_open(&t.url, auth).await?;
    ack.map_err(|code| format!("init refused: {code:?}"))?;
    let text = format!(
        "{{\"id\":\"p\",\"type\":\"subscribe\",\"payload\":{{\"query\":{},\"variables\":{vars}}}}}",
        json!(query)
    );
    ws_send_text(&mut ws, text).await?;
    let mut codes = Vec::new();
    loop {
        match ws_next(&mut ws).await? {
            WsIn::Closed(code) => return documented_close(code).map(|c| format!("{c:?}")),
            WsIn::Text(m) => match m["type"].as_str() {
                Some("next") => {
                    if !m["payload"]["errors"].is_null() {
                        codes.extend(check_ws_errors(&m["payload"]["errors"])?);
                    }
                }
                Some("error") => {
                    codes.extend(check_ws_errors(&m["payload"])?);
                    break;
                }
                Some("complete") => break,
                Some("pong") => {}
                _ => return Err(format!("unexpected message: {m}")),
            },
        }
    }
    let _ = ws.close(None).await;
    Ok(format!("ws {codes:?}"))
}

async fn healthz(t: &Target) -> Result<(), String> {
    let status = t
        .client
        .get(format!("{}/healthz", t.url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("/healthz: {e}"))?
        .status();
    if status != 200 {
        return Err(format!("/healthz answered {status}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_documents_and_variables_over_http_and_websocket_are_answered_and_the_server_stays_up_and_bounded(
) {
    let app = TestApp::spawn().await;
    let space = app.space_as(&app.admin_key, "deep", json!({})).await;
    let target = Arc::new(Target {
        url: app.url.clone(),
        admin: app.admin_key.clone(),
        space,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
    });
    let baseline = rss_kb();
    let peak = Arc::new(AtomicU64::new(baseline));
    let tally: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(96);
    let handle = tokio::runtime::Handle::current();
    let (t, p, seen) = (target.clone(), peak.clone(), tally.clone());
    let result = tokio::task::spawn_blocking(move || {
        let config = Config {
            cases,
            max_shrink_iters: 16,
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut runner = TestRunner::new_with_rng(config, rng);
        runner.run(&(shape(), any::<bool>()), |(shape, websocket)| {
            let (query, vars) = operation(&shape, &t.space);
            let answer = handle.block_on(async {
                let answer = if websocket {
                    over_ws(&t, &query, &vars).await
                } else {
                    over_http(&t, &query, &vars).await
                };
                healthz(&t).await.and(answer)
            });
            p.fetch_max(rss_kb(), Ordering::Relaxed);
            match answer {
                Ok(what) => {
                    let kind = format!("{shape:?}");
                    let kind = kind.split(['(', ' ']).next().unwrap_or("");
                    let key = format!("{kind} -> {what}");
                    *seen.lock().unwrap().entry(key).or_default() += 1;
                    Ok(())
                }
                Err(why) => Err(TestCaseError::fail(format!(
                    "{shape:?} over {}: {why}",
                    if websocket { "WebSocket" } else { "HTTP" }
                ))),
            }
        })
    })
    .await
    .expect("the property run finished");
    if let Err(e) = result {
        panic!("{e}");
    }
    let peak = peak.load(Ordering::Relaxed);
    for (answer, n) in tally.lock().unwrap().iter() {
        eprintln!("fuzz_deep answer: {answer}: {n}");
    }
    eprintln!(
        "fuzz_deep: {cases} cases; RSS {} MB before, peak {} MB",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        peak.saturating_sub(baseline) < RSS_GROWTH_BOUND_KB,
        "RSS grew from {baseline} kB to {peak} kB"
    );
    // Still serving ordinary requests.
    let r = app
        .gql("{ viewer { organization { handle } } }", json!({}))
        .await;
    assert_eq!(r.data()["viewer"]["organization"]["handle"], "default");
}
