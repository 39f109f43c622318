//! searchMemories: relevance of the three modes on a fixed fixture, recall counts and activity,
//! minScore and limit, argument errors, the scope (readable spaces, explicit spaceIds, linked
//! spaces) and filters.
use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::common::{GqlResponse, TestApp};
use memspace::config::KeywordEngine;

const MODES: [&str; 3] = ["KEYWORD", "SEMANTIC", "HYBRID"];

async fn search(app: &TestApp, key: &str, input: Value) -> GqlResponse {
    app.search_as(key, input).await
}

fn hits(r: &GqlResponse) -> Vec<Value> {
    r.data()["searchMemories"].as_array().unwrap().clone()
}

fn scores(r: &GqlResponse) -> Vec<f64> {
    hits(r)
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect()
}

fn ids_set(ids: Vec<String>) -> HashSet<String> {
    ids.into_iter().collect()
}

async fn recall_count(app: &TestApp, id: &str) -> i64 {
    app.gql(
        "query($id:ID!){ memory(id:$id){ recallCount } }",
        json!({ "id": id }),
    )
    .await
    .data()["memory"]["recallCount"]
        .as_i64()
        .unwrap()
}

async fn last_activity(app: &TestApp, space_id: &str) -> Option<DateTime<Utc>> {
    let r = app
        .gql(
            "query($s:ID!){ space(id:$s){ lastActivityAt } }",
            json!({ "s": space_id }),
        )
        .await;
    r.data()["space"]["lastActivityAt"]
        .as_str()
        .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
}

async fn link(app: &TestApp, key: &str, space: &str, linked: &str) -> GqlResponse {
    app.gql_as(
        Some(key),
        "mutation($a:ID!,$b:ID!){ linkSpace(id:$a,linkedSpaceId:$b){ id linkedSpaces{ id } } }",
        json!({ "a": space, "b": linked }),
    )
    .await
}

async fn unlink(app: &TestApp, key: &str, space: &str, linked: &str) -> GqlResponse {
    app.gql_as(
        Some(key),
        "mutation($a:ID!,$b:ID!){ unlinkSpace(id:$a,linkedSpaceId:$b){ id linkedSpaces{ id } } }",
        json!({ "a": space, "b": linked }),
    )
    .await
}

async fn linked_spaces(app: &TestApp, key: &str, space: &str) -> Vec<String> {
    let r = app
        .gql_as(
            Some(key),
            "query($s:ID!){ space(id:$s){ linkedSpaces{ id } } }",
            json!({ "s": space }),
        )
        .await;
    r.data()["space"]["linkedSpaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Relevance

/// Memories on distinct topics; the first 20 are the answers to `QUERIES`, the rest are
/// distractors that share a word or two with some query.
const FIXTURE: &[&str] = &[
    "Our cat Miso gets fed twice a day, at 7am and 6pm.",
    "The production database is backed up every night at 2am to cold storage.",
    "Quarterly tax payments are due on the 15th of April, June, September and January.",
    "Maria drinks her espresso with oat milk and never takes sugar.",
    "Grandma's lasagna recipe layers ricotta, mozzarella and a slow-cooked beef ragu.",
    "The marathon training plan peaks with a 32 km long run three weeks before the race.",
    "The dentist appointment was moved to Thursday at 4:30pm.",
    "The car needs winter tires fitted before the first snowfall in November.",
    "Merging a pull request into main automatically deploys the build to staging.",
    "Water the basil and tomato plants on the balcony every evening during summer.",
    "Flight LH401 to Frankfurt departs at 10:15 from terminal 1.",
    "The public API allows 100 requests per second per key, with bursts up to 200.",
    "Tom is allergic to peanuts and always carries an epinephrine injector.",
    "The guitar is tuned half a step down for the band's rehearsals.",
    "Library books are due back on the 3rd and can be renewed online twice.",
    "The board meeting on Friday will review the engineering hiring budget.",
    "The rooftop solar panels produced 420 kWh in July, a new monthly record.",
    "The dog's rabies vaccination expires next March.",
    "Cardboard and paper go in the blue recycling bin; glass goes to the bottle bank.",
    "The Wi-Fi password for the guest network is printed on the router.",
    // Distractors.
    "The neighbour's cat sleeps on our porch most afternoons.",
    "The staging database is wiped and reseeded every Sunday night.",
    "Maria is leading the design review for the mobile app.",
    "Our car insurance renewal is due in October.",
    "The tomato soup recipe needs two cans of crushed tomatoes.",
    "Flight prices to Lisbon usually drop in February.",
    "The dog walker comes at noon on weekdays.",
    "Team lunch is on Friday at the Thai place around the corner.",
    "The printer on the third floor jams when printing double-sided pages.",
    "Password rules: at least 14 characters, rotated every 90 days.",
    "Piano lessons for the kids are on Wednesday afternoons.",
    "The electricity bill doubled in January because of the heat pump.",
    "Our hiking trip to the Dolomites is planned for the second week of August.",
    "The key for the bike shed hangs on the hook by the back door.",
    "Running shoes should be replaced every 800 km.",
    "The book club is reading a novel about a lighthouse keeper this month.",
    "The office coffee machine is descaled on the first Monday of each month.",
    "Emergency contacts: the building manager's number is on the fridge.",
    "Vacation days must be requested at least two weeks in advance.",
    "The team retrospective happens every second Thursday.",
    "Laptop backups go to an external drive every Sunday.",
    "The garden hose leaks at the tap connector and needs a new washer.",
    "Guests should park in the visitor spots near the main entrance.",
    "The new intern starts on Monday and needs a laptop and a badge.",
    "The cat's vet appointment is next Thursday.",
    "The production server was patched on Tuesday night.",
    "The guest bedroom needs new curtains before the holidays.",
    "Recycling pickup is every other Wednesday.",
];

/// Each query with the index in `FIXTURE` of the memory it is looking for.
const QUERIES: &[(&str, usize)] = &[
    ("when is the cat fed", 0),
    ("how often is the production database backed up", 1),
    ("due dates for quarterly tax payments", 2),
    ("does Maria take sugar in her espresso", 3),
    ("grandma's lasagna recipe", 4),
    ("longest run in the marathon plan", 5),
    ("when is my dentist appointment", 6),
    ("winter tires for the car", 7),
    ("how do deploys to staging get triggered", 8),
    ("watering the tomato plants", 9),
    ("which terminal does the Frankfurt flight depart from", 10),
    ("API request limit per key", 11),
    ("Tom's peanut allergy", 12),
    ("guitar tuning for band rehearsal", 13),
    ("renewing library books online", 14),
    ("hiring budget review by the board", 15),
    ("solar panel production record", 16),
    ("when does the dog's rabies vaccine expire", 17),
    ("which bin is for cardboard recycling", 18),
    ("guest network password", 19),
];

/// 1-based rank of `want` in `ids`, if present.
fn rank(ids: &[String], want: &str) -> Option<usize> {
    ids.iter().position(|id| id == want).map(|p| p + 1)
}

#[tokio::test]
async fn each_mode_ranks_the_expected_memory_first_for_most_queries_of_the_fixture() {
    fixture_ranks(KeywordEngine::Tantivy).await;
}

#[tokio::test]
async fn the_database_keyword_engine_ranks_the_fixture_as_well() {
    fixture_ranks(KeywordEngine::Database).await;
}

async fn fixture_ranks(engine: KeywordEngine) {
    let app = TestApp::spawn_with(|c| c.keyword_engine = engine).await;
    // Two spaces, so ranking also works across spaces.
    let spaces = [
        app.space_as(&app.admin_key, "fixture even", json!({}))
            .await,
        app.space_as(&app.admin_key, "fixture odd", json!({})).await,
    ];
    let mut ids = vec![String::new(); FIXTURE.len()];
    for (parity, space_id) in spaces.iter().enumerate() {
        let picked: Vec<usize> = (0..FIXTURE.len()).filter(|i| i % 2 == parity).collect();
        let contents: Vec<String> = picked.iter().map(|i| FIXTURE[*i].to_string()).collect();
        let written = app.memories_as(&app.admin_key, space_id, &contents).await;
        for (i, id) in picked.into_iter().zip(written) {
            ids[i] = id;
        }
    }
    let content_of = |id: &str| {
        ids.iter()
            .position(|x| x == id)
            .map(|i| FIXTURE[i])
            .unwrap_or("?")
    };

    let mut firsts = [0usize; 3];
    let mut top3 = [0usize; 3];
    let mut report = Vec::new();
    let mut misordered = Vec::new();
    for (query, want) in QUERIES {
        let mut line = format!("{query:<55}");
        for (m, mode) in MODES.iter().enumerate() {
            let r = search(
                &app,
                &app.admin_key,
                json!({ "query": query, "mode": mode, "limit": 10 }),
            )
            .await;
            let found: Vec<String> = r.hit_ids();
            let s = scores(&r);
            if s.windows(2).any(|w| w[0] < w[1]) {
                misordered.push(format!("{mode} {query}: scores {s:?}"));
            }
            let got = rank(&found, &ids[*want]);
            if got == Some(1) {
                firsts[m] += 1;
            }
            if got.is_some_and(|r| r <= 3) {
                top3[m] += 1;
            }
            line.push_str(&format!(
                " {mode}={}",
                got.map_or("-".to_string(), |r| r.to_string())
            ));
            if got != Some(1) {
                let above: Vec<&str> = found
                    .iter()
                    .take(got.map_or(3, |r| r - 1))
                    .map(|id| content_of(id))
                    .collect();
                line.push_str(&format!(" (above: {above:?})"));
            }
        }
        report.push(line);
    }
    let backend = if std::env::var("TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    eprintln!(
        "relevance on {backend}, keyword engine {engine:?} (rank of the expected memory per mode):"
    );
    for line in &report {
        eprintln!("  {line}");
    }
    eprintln!(
        "first: KEYWORD {}/20, SEMANTIC {}/20, HYBRID {}/20; top 3: KEYWORD {}/20, SEMANTIC {}/20, \
         HYBRID {}/20",
        firsts[0], firsts[1], firsts[2], top3[0], top3[1], top3[2]
    );

    assert!(misordered.is_empty(), "hits not best first: {misordered:?}");
    assert!(firsts[0] >= 18, "KEYWORD first for {}/20", firsts[0]);
    assert!(firsts[2] >= 18, "HYBRID first for {}/20", firsts[2]);
    assert!(top3[1] >= 15, "SEMANTIC top 3 for {}/20", top3[1]);
}

// ---------------------------------------------------------------------------------------------
// Paraphrases: the same meaning in other words

/// Questions an agent would ask about the first 20 memories of `FIXTURE`, each with the index of
/// its memory, worded so that they share no word stem with it (checked by
/// `paraphrase_queries_share_no_word_stem_with_their_memory`): only an embedder that knows
/// meaning finds them; a lexical one can at best ride on shared character trigrams or chance.
const PARAPHRASES: &[(&str, usize)] = &[
    ("what times should the kitten have its meals", 0),
    ("how often are snapshots of the live records taken", 1),
    ("deadlines for estimated income levies to the revenue service", 2),
    ("how does our colleague like coffee, any sweetener or dairy", 3),
    ("what goes into nana's oven-baked pasta with meat sauce", 4),
    ("what is the furthest I jog while preparing for the 42-kilometre event", 5),
    ("when am I seeing the tooth doctor now that it got rescheduled", 6),
    ("swap the automobile's wheels for cold-season rubber ahead of icy weather", 7),
    ("what happens once an approved code change lands on trunk, does it ship to the preview environment", 8),
    ("how often should the herbs and vegetables on the terrace be irrigated in hot months", 9),
    ("what time does my Lufthansa plane to Germany leave, and from which gate area", 10),
    ("how many calls can a client make to our web service before being throttled", 11),
    ("which snacks should never be served to Thomas because of his severe food reaction", 12),
    ("what pitch does my six-string use when practising with the group", 13),
    ("how many times may I extend the loan period for borrowed titles via the website", 14),
    ("when do the directors discuss how much we can spend recruiting developers", 15),
    ("how much energy did the photovoltaic system on the house generate in midsummer", 16),
    ("when must the puppy get another booster jab against the virus", 17),
    ("where should I throw out empty jars and boxes", 18),
    ("how can visitors get onto the wireless internet at our house", 19),
];

/// Function words carry no topic (the lexical embedder drops the same ones), so a paraphrase
/// may share them with its memory.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is",
    "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with",
    "what", "which", "who", "how", "do", "does", "did", "i", "we", "you", "our", "my",
];

/// The English (Snowball) stems of a text's words, without function words and the lone letters
/// left by splitting possessives ("dog's" → "dog", "s").
fn content_stems(text: &str) -> HashSet<String> {
    let stemmer = rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English);
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() > 1 && !FUNCTION_WORDS.contains(&w.as_str()))
        .map(|w| stemmer.stem(&w).into_owned())
        .collect()
}

#[test]
fn paraphrase_queries_share_no_word_stem_with_their_memory() {
    let mut shared = Vec::new();
    for (query, want) in PARAPHRASES {
        let common: Vec<String> = content_stems(query)
            .intersection(&content_stems(FIXTURE[*want]))
            .cloned()
            .collect();
        if !common.is_empty() {
            shared.push(format!(
                "{query:?} shares {common:?} with {:?}",
                FIXTURE[*want]
            ));
        }
    }
    let targets: HashSet<usize> = PARAPHRASES.iter().map(|(_, want)| *want).collect();

    assert_eq!(PARAPHRASES.len(), 20);
    assert_eq!(targets.len(), 20, "one paraphrase per memory");
    assert!(shared.is_empty(), "{}", shared.join("\n"));
}

/// How the paraphrases fared with one embedder.
struct ParaphraseRun {
    /// Paraphrases whose memory was in the top 3.
    hits: usize,
    /// A line per query: its rank, or what ranked above it.
    report: Vec<String>,
    writing: std::time::Duration,
    searching: std::time::Duration,
}

/// Writes `FIXTURE` into a new space using `embedder` and runs every paraphrase in SEMANTIC mode
/// in that space.
async fn paraphrase_hits(app: &TestApp, embedder: &str) -> ParaphraseRun {
    let space_id = app
        .space_as(&app.admin_key, embedder, json!({ "embedder": embedder }))
        .await;
    let contents: Vec<String> = FIXTURE.iter().map(|c| c.to_string()).collect();
    let started = std::time::Instant::now();
    let ids = app.memories_as(&app.admin_key, &space_id, &contents).await;
    let writing = started.elapsed();
    let started = std::time::Instant::now();
    let content_of = |id: &str| ids.iter().position(|x| x == id).map_or("?", |i| FIXTURE[i]);
    let mut hits = 0;
    let mut report = Vec::new();
    for (query, want) in PARAPHRASES {
        let r = search(
            app,
            &app.admin_key,
            json!({ "query": query, "mode": "SEMANTIC", "spaceIds": [space_id], "limit": 3 }),
        )
        .await;
        let found = r.hit_ids();
        let got = rank(&found, &ids[*want]);
        if got.is_some() {
            hits += 1;
        }
        let mut line = format!("{query:<70} {}", got.map_or("-".into(), |r| r.to_string()));
        if got != Some(1) {
            let above: Vec<&str> = found
                .iter()
                .take(got.map_or(3, |r| r - 1))
                .map(|id| content_of(id))
                .collect();
            line.push_str(&format!(" (above: {above:?})"));
        }
        report.push(line);
    }
    ParaphraseRun {
        hits,
        report,
        writing,
        searching: started.elapsed(),
    }
}

/// Whether `minilm-l6-v2` can run on this server. When it cannot, the caller skips its test,
/// unless `MEMSPACE_REQUIRE_MODEL=1` (then this fails).
async fn neural_model_available(app: &TestApp) -> bool {
    let r = app
        .gql(
            "{ embedders{ name available unavailableReason } }",
            json!({}),
        )
        .await;
    let neural = r.data()["embedders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "minilm-l6-v2")
        .cloned()
        .unwrap_or(Value::Null);
    if neural["available"] == true {
        return true;
    }
    let required = std::env::var("MEMSPACE_REQUIRE_MODEL").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "MEMSPACE_REQUIRE_MODEL=1 but minilm-l6-v2 is unavailable: {neural}"
    );
    eprintln!("skipping: minilm-l6-v2 is unavailable: {neural}");
    false
}

/// The lexical embedder matches word forms, so paraphrases sharing none mostly miss: what it
/// still finds rides on shared character trigrams or chance collisions of the hashing.
#[tokio::test]
async fn the_lexical_embedder_finds_few_paraphrases_that_share_no_word_with_their_memory() {
    let app = TestApp::spawn().await;

    let lexical = paraphrase_hits(&app, "builtin-hash-384").await;

    eprintln!("builtin-hash-384, paraphrases (rank in the top 3):");
    for line in &lexical.report {
        eprintln!("  {line}");
    }
    eprintln!(
        "builtin-hash-384: {}/20 paraphrases in the top 3",
        lexical.hits
    );
    assert!(
        lexical.hits <= LEXICAL_PARAPHRASE_HITS_AT_MOST,
        "{}/20",
        lexical.hits
    );
}

/// The lexical embedder's ceiling on the paraphrases. It finds 0/20 today, on every backend (its
/// vectors and the semantic ranking do not depend on the database): without a shared stem, only
/// a chance shared character trigram or hash collision links a query to its memory, no stronger
/// than the links to the 47 other memories. The leeway of 2 lets the fixture change without the
/// test turning into a lottery over such chance links.
const LEXICAL_PARAPHRASE_HITS_AT_MOST: usize = 2;

#[tokio::test]
async fn the_neural_embedder_finds_paraphrases_that_share_no_word_with_their_memory() {
    // The model is slow in a debug build: embedding the fixture takes longer than the default
    // 30 s request timeout there.
    let app =
        TestApp::spawn_with(|c| c.request_timeout = std::time::Duration::from_secs(600)).await;
    if !neural_model_available(&app).await {
        return;
    }

    let neural = paraphrase_hits(&app, "minilm-l6-v2").await;
    let lexical = paraphrase_hits(&app, "builtin-hash-384").await;

    eprintln!("minilm-l6-v2, paraphrases (rank in the top 3):");
    for line in &neural.report {
        eprintln!("  {line}");
    }
    eprintln!(
        "paraphrases in the top 3: minilm-l6-v2 {}/20, builtin-hash-384 {}/20 (minilm-l6-v2: \
         {} memories written in {:.1?}, 20 searches in {:.1?})",
        neural.hits,
        lexical.hits,
        FIXTURE.len(),
        neural.writing,
        neural.searching
    );
    assert!(neural.hits >= 16, "minilm-l6-v2 found {}/20", neural.hits);
    assert!(
        lexical.hits <= LEXICAL_PARAPHRASE_HITS_AT_MOST,
        "{}/20",
        lexical.hits
    );
}

// ---------------------------------------------------------------------------------------------
// Side effects of a recall

#[tokio::test]
async fn each_search_that_returns_a_memory_adds_one_to_its_recall_count() {
    let app = TestApp::spawn().await;
    let space_id = app.space_as(&app.admin_key, "recall", json!({})).await;
    let apples = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Apples ripen in September",
            json!({}),
        )
        .await;
    let pears = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Pears ripen in October",
            json!({}),
        )
        .await;

    let first = search(
        &app,
        &app.admin_key,
        json!({ "query": "apples", "mode": "KEYWORD" }),
    )
    .await;
    let after_first = recall_count(&app, &apples).await;
    let second = search(
        &app,
        &app.admin_key,
        json!({ "query": "apples", "mode": "KEYWORD" }),
    )
    .await;
    let after_second = recall_count(&app, &apples).await;
    let pears_untouched = recall_count(&app, &pears).await;
    let both = search(
        &app,
        &app.admin_key,
        json!({ "query": "ripen", "mode": "HYBRID" }),
    )
    .await;

    assert_eq!(first.hit_ids(), [apples.as_str()]);
    assert_eq!(hits(&first)[0]["memory"]["recallCount"], 1);
    assert_eq!(after_first, 1);
    assert_eq!(hits(&second)[0]["memory"]["recallCount"], 2);
    assert_eq!(after_second, 2);
    assert_eq!(pears_untouched, 0);
    assert_eq!(
        ids_set(both.hit_ids()),
        HashSet::from([apples.clone(), pears.clone()])
    );
    assert_eq!(recall_count(&app, &apples).await, 3);
    assert_eq!(recall_count(&app, &pears).await, 1);
}

#[tokio::test]
async fn a_search_moves_the_last_activity_of_the_space_it_found_memories_in() {
    let app = TestApp::spawn().await;
    let space_id = app.space_as(&app.admin_key, "active", json!({})).await;
    app.memory_as(
        &app.admin_key,
        &space_id,
        "The lighthouse keeper logs the weather at dawn",
        json!({}),
    )
    .await;
    let after_write = last_activity(&app, &space_id).await;
    // Searches record activity at most once a second per space (it keeps a popular space's
    // row from becoming a write queue).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let r = search(&app, &app.admin_key, json!({ "query": "lighthouse" })).await;

    assert_eq!(r.hit_ids().len(), 1);
    let after_search = last_activity(&app, &space_id).await;
    assert!(after_write.is_some(), "a write sets lastActivityAt");
    assert!(
        after_search > after_write,
        "{after_search:?} after {after_write:?}"
    );
}

#[tokio::test]
async fn hits_carry_the_chunk_that_matched() {
    let app = TestApp::spawn().await;
    let space_id = app
        .space_as(
            &app.admin_key,
            "chunky",
            json!({ "chunking": { "chunkSize": 60, "chunkOverlap": 0 } }),
        )
        .await;
    let content = "The first part talks about gardening and soil and compost heaps. \
        The second part is about kitchen renovations and tiles and grout. \
        The third part finally mentions the zebra crossing outside the school gate.";
    app.memory_as(&app.admin_key, &space_id, content, json!({}))
        .await;

    for mode in MODES {
        let r = search(
            &app,
            &app.admin_key,
            json!({ "query": "zebra", "mode": mode }),
        )
        .await;
        let h = hits(&r);
        assert_eq!(h.len(), 1, "{mode}: {}", r.body);
        let chunk = h[0]["chunk"].as_str().unwrap();
        assert!(chunk.contains("zebra"), "{mode}: chunk {chunk:?}");
        assert!(chunk.chars().count() <= 60, "{mode}: chunk {chunk:?}");
        assert_eq!(h[0]["memory"]["content"], content);
    }
}

// ---------------------------------------------------------------------------------------------
// minScore and limit

#[tokio::test]
async fn min_score_drops_the_hits_scoring_below_it_in_every_mode() {
    let app = TestApp::spawn().await;
    let space_id = app.space_as(&app.admin_key, "pies", json!({})).await;
    let contents: Vec<String> = [
        "Red apple pie with a lattice crust",
        "Apple pie is best with red apples",
        "A red bicycle leans on the apple tree",
        "Pie charts show the budget split",
        "Apple cider vinegar cleans the kettle",
        "Red wine stains come out with salt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    app.memories_as(&app.admin_key, &space_id, &contents).await;

    for mode in MODES {
        let input = json!({ "query": "red apple pie", "mode": mode, "limit": 100 });
        let all = search(&app, &app.admin_key, input.clone()).await;
        let all_scores = scores(&all);
        assert!(all_scores.len() >= 4, "{mode}: {}", all.body);
        // The lowest score above the minimum: drops the weakest hits, keeps its own ties.
        let lowest = all_scores[all_scores.len() - 1];
        let threshold = all_scores
            .iter()
            .copied()
            .filter(|s| *s > lowest)
            .fold(f64::INFINITY, f64::min);
        let expected: Vec<String> = all
            .hit_ids()
            .into_iter()
            .zip(&all_scores)
            .filter(|(_, s)| **s >= threshold)
            .map(|(id, _)| id)
            .collect();
        let mut with_min = input.clone();
        with_min["minScore"] = json!(threshold);
        let mut impossible = input.clone();
        impossible["minScore"] = json!(1e9);

        let kept = search(&app, &app.admin_key, with_min).await;
        let none = search(&app, &app.admin_key, impossible).await;

        assert!(
            expected.len() < all_scores.len(),
            "{mode}: scores {all_scores:?}"
        );
        assert_eq!(kept.hit_ids(), expected, "{mode} minScore {threshold}");
        assert!(scores(&kept).iter().all(|s| *s >= threshold), "{mode}");
        assert!(none.hit_ids().is_empty(), "{mode}: {}", none.body);
    }
}

#[tokio::test]
async fn limit_caps_the_hits_and_defaults_to_10() {
    let app = TestApp::spawn().await;
    let space_id = app.space_as(&app.admin_key, "widgets", json!({})).await;
    let contents: Vec<String> = (0..15)
        .map(|i| format!("Widget number {i} is painted a different colour"))
        .collect();
    app.memories_as(&app.admin_key, &space_id, &contents).await;

    for mode in MODES {
        let q = |limit: Option<i64>| {
            let mut input = json!({ "query": "widget painted", "mode": mode });
            if let Some(l) = limit {
                input["limit"] = json!(l);
            }
            input
        };
        let three = search(&app, &app.admin_key, q(Some(3))).await;
        let default = search(&app, &app.admin_key, q(None)).await;
        let hundred = search(&app, &app.admin_key, q(Some(100))).await;
        let one = search(&app, &app.admin_key, q(Some(1))).await;

        assert_eq!(three.hit_ids().len(), 3, "{mode}");
        assert_eq!(default.hit_ids().len(), 10, "{mode}");
        assert_eq!(hundred.hit_ids().len(), 15, "{mode}");
        assert_eq!(one.hit_ids().len(), 1, "{mode}");
    }
}

#[tokio::test]
async fn a_limit_outside_1_to_100_is_an_invalid_argument() {
    let app = TestApp::spawn().await;
    let space_id = app.space_as(&app.admin_key, "limits", json!({})).await;
    app.memory_as(&app.admin_key, &space_id, "Something to find", json!({}))
        .await;

    for limit in [0, 101, -1, 1000] {
        for mode in MODES {
            let r = search(
                &app,
                &app.admin_key,
                json!({ "query": "something", "mode": mode, "limit": limit }),
            )
            .await;
            assert_eq!(
                r.code(),
                "INVALID_ARGUMENT",
                "limit {limit} {mode}: {}",
                r.body
            );
        }
    }
}

#[tokio::test]
async fn a_blank_or_overlong_query_is_a_validation_error() {
    let app = TestApp::spawn().await;

    for query in [String::new(), "   \t ".to_string(), "q".repeat(4097)] {
        let r = search(&app, &app.admin_key, json!({ "query": query })).await;
        assert_eq!(r.code(), "VALIDATION_ERROR", "{}", r.body);
        assert_eq!(r.field(), "query");
    }
}

// ---------------------------------------------------------------------------------------------
// Scope

#[tokio::test]
async fn without_space_ids_a_search_covers_exactly_the_spaces_the_caller_can_read() {
    let app = TestApp::spawn().await;
    let (_, user) = app.user("reader", false).await;
    let other = app.other_org("acme").await;
    let mine = app.space_as(&user, "mine", json!({})).await;
    let org_wide = app
        .space_as(
            &app.admin_key,
            "org wide",
            json!({ "accessMode": "ORGANIZATION" }),
        )
        .await;
    let private = app.space_as(&app.admin_key, "private", json!({})).await;
    let public_elsewhere = app
        .space_as(&other, "public", json!({ "accessMode": "PUBLIC" }))
        .await;
    let private_elsewhere = app.space_as(&other, "theirs", json!({})).await;
    let deleted = app.space_as(&user, "deleted", json!({})).await;
    let mut expected = HashSet::new();
    for (key, space, readable) in [
        (&user, &mine, true),
        (&app.admin_key, &org_wide, true),
        (&app.admin_key, &private, false),
        (&other, &public_elsewhere, true),
        (&other, &private_elsewhere, false),
        (&user, &deleted, false),
    ] {
        let id = app
            .memory_as(key, space, "The compass points north", json!({}))
            .await;
        if readable {
            expected.insert(id);
        }
    }
    app.gql_as(
        Some(&user),
        "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
        json!({ "id": deleted }),
    )
    .await
    .data();

    for mode in MODES {
        let r = search(
            &app,
            &user,
            json!({ "query": "compass north", "mode": mode, "limit": 100 }),
        )
        .await;
        assert_eq!(ids_set(r.hit_ids()), expected, "{mode}");
    }
}

#[tokio::test]
async fn space_ids_naming_a_space_the_caller_cannot_read_is_not_found() {
    let app = TestApp::spawn().await;
    let (_, user) = app.user("reader", false).await;
    let other = app.other_org("acme").await;
    let mine = app.space_as(&user, "mine", json!({})).await;
    app.memory_as(&user, &mine, "The compass points north", json!({}))
        .await;
    let org_wide = app
        .space_as(
            &app.admin_key,
            "org wide",
            json!({ "accessMode": "ORGANIZATION" }),
        )
        .await;
    let private = app.space_as(&app.admin_key, "private", json!({})).await;
    let theirs = app.space_as(&other, "theirs", json!({})).await;
    let deleted = app.space_as(&user, "deleted", json!({})).await;
    app.gql_as(
        Some(&user),
        "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
        json!({ "id": deleted }),
    )
    .await
    .data();
    let missing = uuid::Uuid::now_v7().to_string();

    let readable = search(
        &app,
        &user,
        json!({ "query": "compass", "spaceIds": [mine, org_wide] }),
    )
    .await;
    assert_eq!(readable.hit_ids().len(), 1);
    for bad in [
        &private,
        &theirs,
        &deleted,
        &missing,
        &"not-an-id".to_string(),
    ] {
        for mode in MODES {
            let r = search(
                &app,
                &user,
                json!({ "query": "compass", "spaceIds": [mine, bad], "mode": mode }),
            )
            .await;
            assert_eq!(
                r.code(),
                "NOT_FOUND",
                "spaceIds with {bad} ({mode}): {}",
                r.body
            );
        }
    }
}

#[tokio::test]
async fn searching_a_space_also_searches_its_linked_spaces_until_they_are_unlinked() {
    let app = TestApp::spawn().await;
    let a = app.space_as(&app.admin_key, "A", json!({})).await;
    let b = app.space_as(&app.admin_key, "B", json!({})).await;
    let in_a = app
        .memory_as(
            &app.admin_key,
            &a,
            "The kayak is stored in the boathouse",
            json!({}),
        )
        .await;
    let in_b = app
        .memory_as(
            &app.admin_key,
            &b,
            "The kayak paddles are in the attic",
            json!({}),
        )
        .await;
    let kayak =
        |mode: &str| json!({ "query": "kayak", "spaceIds": [a], "mode": mode, "limit": 100 });
    let before: Vec<HashSet<String>> = {
        let mut v = Vec::new();
        for mode in MODES {
            v.push(ids_set(
                search(&app, &app.admin_key, kayak(mode)).await.hit_ids(),
            ));
        }
        v
    };

    let linked = link(&app, &app.admin_key, &a, &b).await;
    let mut while_linked = Vec::new();
    for mode in MODES {
        while_linked.push(ids_set(
            search(&app, &app.admin_key, kayak(mode)).await.hit_ids(),
        ));
    }
    let only_b = search(
        &app,
        &app.admin_key,
        json!({ "query": "kayak", "spaceIds": [b], "limit": 100 }),
    )
    .await;
    let listed = linked_spaces(&app, &app.admin_key, &a).await;
    let unlinked = unlink(&app, &app.admin_key, &a, &b).await;
    let mut after = Vec::new();
    for mode in MODES {
        after.push(ids_set(
            search(&app, &app.admin_key, kayak(mode)).await.hit_ids(),
        ));
    }

    let just_a = HashSet::from([in_a.clone()]);
    let a_and_b = HashSet::from([in_a.clone(), in_b.clone()]);
    for m in 0..3 {
        assert_eq!(before[m], just_a, "{} before linking", MODES[m]);
        assert_eq!(while_linked[m], a_and_b, "{} while linked", MODES[m]);
        assert_eq!(after[m], just_a, "{} after unlinking", MODES[m]);
    }
    assert_eq!(
        linked.data()["linkSpace"]["linkedSpaces"],
        json!([{ "id": b }])
    );
    assert_eq!(listed, [b.as_str()]);
    assert_eq!(only_b.hit_ids(), [in_b], "links are one-way");
    assert_eq!(unlinked.data()["unlinkSpace"]["linkedSpaces"], json!([]));
}

#[tokio::test]
async fn a_linked_space_the_caller_cannot_read_is_not_searched() {
    let app = TestApp::spawn().await;
    let (_, reader) = app.user("reader", false).await;
    let a = app
        .space_as(
            &app.admin_key,
            "org wide",
            json!({ "accessMode": "ORGANIZATION" }),
        )
        .await;
    let b = app.space_as(&app.admin_key, "admins only", json!({})).await;
    let in_a = app
        .memory_as(
            &app.admin_key,
            &a,
            "The canoe is stored in the boathouse",
            json!({}),
        )
        .await;
    let in_b = app
        .memory_as(
            &app.admin_key,
            &b,
            "The canoe has a secret repair kit",
            json!({}),
        )
        .await;
    link(&app, &app.admin_key, &a, &b).await.data();

    for mode in MODES {
        let input = json!({ "query": "canoe", "spaceIds": [a], "mode": mode, "limit": 100 });
        let by_admin = search(&app, &app.admin_key, input.clone()).await;
        let by_reader = search(&app, &reader, input).await;
        let by_reader_everywhere = search(
            &app,
            &reader,
            json!({ "query": "canoe", "mode": mode, "limit": 100 }),
        )
        .await;
        assert_eq!(
            ids_set(by_admin.hit_ids()),
            HashSet::from([in_a.clone(), in_b.clone()]),
            "{mode}"
        );
        assert_eq!(by_reader.hit_ids(), [in_a.as_str()], "{mode}");
        assert_eq!(by_reader_everywhere.hit_ids(), [in_a.as_str()], "{mode}");
    }
    assert_eq!(linked_spaces(&app, &app.admin_key, &a).await, [b.as_str()]);
    assert!(linked_spaces(&app, &reader, &a).await.is_empty());
}

#[tokio::test]
async fn a_linked_space_stops_being_searched_when_the_caller_loses_access_or_it_is_deleted() {
    let app = TestApp::spawn().await;
    let (reader_id, reader) = app.user("reader", false).await;
    let (_, sharer) = app.user("sharer", false).await;
    let a = app.space_as(&reader, "mine", json!({})).await;
    let b = app
        .space_as(
            &sharer,
            "shared with reader",
            json!({ "grants": [{ "subjectKind": "USER", "subjectId": reader_id, "permission": "VIEW" }] }),
        )
        .await;
    let c = app
        .space_as(&sharer, "org wide", json!({ "accessMode": "ORGANIZATION" }))
        .await;
    let in_b = app
        .memory_as(
            &sharer,
            &b,
            "The sailing club meets at the marina",
            json!({}),
        )
        .await;
    let in_c = app
        .memory_as(&sharer, &c, "The sailing regatta starts at ten", json!({}))
        .await;
    link(&app, &reader, &a, &b).await.data();
    link(&app, &reader, &a, &c).await.data();
    let sailing = json!({ "query": "sailing", "spaceIds": [a], "limit": 100 });
    let before = ids_set(search(&app, &reader, sailing.clone()).await.hit_ids());

    app.gql_as(
        Some(&sharer),
        "mutation($id:ID!,$g:[GrantInput!]!){ unshareSpace(id:$id,grants:$g){ id } }",
        json!({ "id": b, "g": [{ "subjectKind": "USER", "subjectId": reader_id }] }),
    )
    .await
    .data();
    let after_unshare = ids_set(search(&app, &reader, sailing.clone()).await.hit_ids());
    app.gql_as(
        Some(&sharer),
        "mutation($id:ID!){ deleteSpace(id:$id){ id } }",
        json!({ "id": c }),
    )
    .await
    .data();
    let after_delete = ids_set(search(&app, &reader, sailing).await.hit_ids());

    assert_eq!(before, HashSet::from([in_b, in_c.clone()]));
    assert_eq!(after_unshare, HashSet::from([in_c]));
    assert!(after_delete.is_empty(), "{after_delete:?}");
}

// ---------------------------------------------------------------------------------------------
// Filters

#[tokio::test]
async fn search_filters_by_tags_thread_and_agent_in_every_mode() {
    let app = TestApp::spawn().await;
    let space_id = app.space_as(&app.admin_key, "filtered", json!({})).await;
    let (agent_id, _) = app.agent("planner").await;
    let work = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Meeting notes: the meeting moved to room 4",
            json!({ "tags": ["work", "notes"] }),
        )
        .await;
    let home = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Meeting the plumber at home on Saturday",
            json!({ "tags": ["home"], "threadId": "house" }),
        )
        .await;
    let agent_note = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Meeting summary drafted by the planner agent",
            json!({ "agentId": agent_id }),
        )
        .await;
    let cases = [
        (json!({ "tags": ["work"] }), vec![&work]),
        (json!({ "tags": ["home", "notes"] }), vec![&work, &home]),
        (json!({ "tags": ["nothing"] }), vec![]),
        (json!({ "threadId": "house" }), vec![&home]),
        (json!({ "agentId": agent_id }), vec![&agent_note]),
        (json!({}), vec![&work, &home, &agent_note]),
    ];

    let mut failures = Vec::new();
    for (filter, expected) in &cases {
        let expected: HashSet<String> = expected.iter().map(|s| s.to_string()).collect();
        for mode in MODES {
            let r = search(
                &app,
                &app.admin_key,
                json!({ "query": "meeting", "mode": mode, "filter": filter, "limit": 100 }),
            )
            .await;
            let got = ids_set(r.hit_ids());
            if got != expected {
                failures.push(format!("{mode} {filter}: {got:?}, expected {expected:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// No write on the read path

#[tokio::test]
async fn a_search_writes_nothing_to_the_database_before_it_answers() {
    // Flushes far apart, so any write seen below would be the searches' own.
    let app = TestApp::spawn_with(|c| c.recall_flush_interval = Duration::from_secs(3600)).await;
    let space_id = app.space_as(&app.admin_key, "quiet", json!({})).await;
    let apples = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Apples ripen in September",
            json!({}),
        )
        .await;
    app.warm(&app.admin_key).await;
    let before = app.writes();

    for mode in MODES {
        for input in [
            json!({ "query": "apples ripen", "mode": mode }),
            json!({ "query": "apples ripen", "mode": mode, "spaceIds": [space_id] }),
        ] {
            let r = search(&app, &app.admin_key, input).await;
            assert_eq!(r.hit_ids(), [apples.as_str()], "{mode}");
        }
    }

    assert_eq!(app.writes() - before, 0, "writes on the read path");
    assert_eq!(
        recall_count(&app, &apples).await,
        6,
        "pending recalls are shown"
    );
}

#[tokio::test]
async fn recall_counters_are_flushed_and_correct_after_a_burst_of_searches() {
    let app = TestApp::spawn_with(|c| c.recall_flush_interval = Duration::from_millis(50)).await;
    let space_id = app.space_as(&app.admin_key, "burst", json!({})).await;
    let apples = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Apples ripen in September",
            json!({}),
        )
        .await;
    let pears = app
        .memory_as(
            &app.admin_key,
            &space_id,
            "Pears ripen in October",
            json!({}),
        )
        .await;

    let searches = (0..40).map(|i| {
        let query = if i % 2 == 0 { "apples" } else { "ripen" };
        search(
            &app,
            &app.admin_key,
            json!({ "query": query, "mode": "KEYWORD" }),
        )
    });
    let results = futures::future::join_all(searches).await;
    app.recall.flush().await.expect("flushed");

    assert!(results.iter().all(|r| !r.hit_ids().is_empty()));
    use sea_orm::EntityTrait;
    let stored = |id: &str| {
        let id = uuid::Uuid::parse_str(id).unwrap();
        let db = app.db.read.clone();
        async move {
            entity::memory::Entity::find_by_id(id)
                .one(&db)
                .await
                .unwrap()
                .unwrap()
                .recall_count
        }
    };
    assert_eq!(stored(&apples).await, 40, "every search found apples");
    assert_eq!(stored(&pears).await, 20, "the 'ripen' searches found pears");
    assert_eq!(
        recall_count(&app, &apples).await,
        40,
        "nothing counted twice"
    );
}

#[tokio::test]
async fn a_cross_tenant_search_is_audited_before_it_answers_and_an_own_search_is_not() {
    let app = TestApp::spawn_with(|c| c.recall_flush_interval = Duration::from_secs(3600)).await;
    let other_admin = app.other_org("reader-org").await;
    let (_, reader_key) = app.user_in(&other_admin, "reader", false).await;
    let reader_org = app.org_id_of(&reader_key).await;
    let space = app
        .space_as(
            &app.admin_key,
            "shared-out",
            json!({ "allowedTenantIds": [reader_org] }),
        )
        .await;
    let apples = app
        .memory_as(
            &app.admin_key,
            &space,
            "Apples ripen in September",
            json!({}),
        )
        .await;

    let own = search(&app, &app.admin_key, json!({ "query": "apples" })).await;
    let theirs = search(&app, &reader_key, json!({ "query": "apples" })).await;
    let audit = app
        .gql(
            "query($r:ID){ auditEvents(filter:{resourceId:$r, action:\"memory.search\"}){ \
               totalCount edges{ node{ actorOrganization{ id } } } } }",
            json!({ "r": space }),
        )
        .await;

    assert_eq!(own.hit_ids(), [apples.as_str()]);
    assert_eq!(theirs.hit_ids(), [apples.as_str()]);
    let events = &audit.data()["auditEvents"];
    assert_eq!(events["totalCount"], 1, "{}", audit.body);
    assert_eq!(
        events["edges"][0]["node"]["actorOrganization"]["id"],
        reader_org
    );
}

// ---------------------------------------------------------------------------------------------
// The vector index across restarts

/// Two memories of a space for the restart tests: one to keep, one to delete later.
async fn lighthouse_memories(app: &TestApp, key: &str, space: &str) -> (String, String) {
    let kept = app
        .memory_as(
            key,
            space,
            "The lighthouse keeper logs the weather at dawn",
            json!({}),
        )
        .await;
    let doomed = app
        .memory_as(
            key,
            space,
            "The lighthouse lamp was replaced in spring",
            json!({}),
        )
        .await;
    (kept, doomed)
}

#[tokio::test]
async fn a_restarted_server_reopens_its_vector_index_and_catches_up_with_writes_made_since() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_path_buf();
    // The in-process index's persistence (pgvector, where available, keeps no file).
    let first = TestApp::spawn_with(|c| {
        c.data_dir = Some(dir.clone());
        c.vector_store.mode = memspace::config::VectorStore::Memory;
    })
    .await;
    let key = first.admin_key.clone();
    let space = first.space_as(&key, "kept", json!({})).await;
    let (kept, doomed) = lighthouse_memories(&first, &key, &space).await;
    let input = json!({ "query": "lighthouse", "mode": "SEMANTIC", "spaceIds": [space] });
    assert_eq!(search(&first, &key, input.clone()).await.hit_ids().len(), 2);
    first.index.save().await.expect("saved");
    // After the save, so the file does not know them: written while "the index was away".
    let added = first
        .memory_as(
            &key,
            &space,
            "A lighthouse foghorn sounds in the night",
            json!({}),
        )
        .await;
    let deleted = first
        .gql(
            "mutation($id:ID!){ deleteMemory(id:$id) }",
            json!({ "id": doomed }),
        )
        .await;
    deleted.data();

    let second = first
        .reopen(|c| {
            c.data_dir = Some(dir.clone());
            c.vector_store.mode = memspace::config::VectorStore::Memory;
        })
        .await;
    let reopened = second.index.reopened_spaces();
    let r = search(&second, &key, input).await;

    assert_eq!(
        reopened, 1,
        "the space came from the file, not the database"
    );
    assert_eq!(
        ids_set(r.hit_ids()),
        HashSet::from([kept.clone(), added.clone()])
    );
    let space_id = uuid::Uuid::parse_str(&space).unwrap();
    assert_eq!(
        second.index.memories_of(space_id).await,
        Some(2),
        "the deleted memory left the reopened index (drift check)"
    );
}

#[tokio::test]
async fn a_damaged_index_file_is_ignored_and_the_space_loads_from_the_database() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_path_buf();
    // The in-process index's persistence (pgvector, where available, keeps no file).
    let first = TestApp::spawn_with(|c| {
        c.data_dir = Some(dir.clone());
        c.vector_store.mode = memspace::config::VectorStore::Memory;
    })
    .await;
    let key = first.admin_key.clone();
    let space = first.space_as(&key, "kept", json!({})).await;
    let kept = first
        .memory_as(
            &key,
            &space,
            "The lighthouse keeper logs the weather at dawn",
            json!({}),
        )
        .await;
    let input = json!({ "query": "lighthouse", "mode": "SEMANTIC", "spaceIds": [space] });
    search(&first, &key, input.clone()).await;
    first.index.save().await.expect("saved");
    let file = dir.join("vectors.msvi");
    let mut bytes = std::fs::read(&file).expect("index file");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).expect("damaged");

    let second = first
        .reopen(|c| {
            c.data_dir = Some(dir.clone());
            c.vector_store.mode = memspace::config::VectorStore::Memory;
        })
        .await;
    let r = search(&second, &key, input).await;

    assert_eq!(second.index.reopened_spaces(), 0);
    assert_eq!(r.hit_ids(), [kept.as_str()]);
}

/// Copies the files of a directory (the keyword index is flat).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("snapshot dir");
    for entry in std::fs::read_dir(from).expect("index dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).expect("copied");
        }
    }
}

async fn keyword_ids(app: &TestApp, key: &str, space: &str, query: &str) -> HashSet<String> {
    let input = json!({ "query": query, "mode": "KEYWORD", "spaceIds": [space], "limit": 100 });
    ids_set(search(app, key, input).await.hit_ids())
}

#[tokio::test]
async fn a_restarted_server_reopens_its_keyword_index_and_catches_up_with_writes_made_since() {
    let data = tempfile::tempdir().expect("temp dir");
    let (dir, snapshot) = (data.path().join("live"), data.path().join("snapshot"));
    let first = TestApp::spawn_with(|c| c.data_dir = Some(dir.clone())).await;
    let key = first.admin_key.clone();
    let space = first.space_as(&key, "kept", json!({})).await;
    let (kept, doomed) = lighthouse_memories(&first, &key, &space).await;
    assert_eq!(
        keyword_ids(&first, &key, &space, "lighthouse").await,
        HashSet::from([kept.clone(), doomed.clone()])
    );
    // The index as a crash right now would leave it: committed (the search committed it).
    copy_dir(&dir.join("keyword"), &snapshot.join("keyword"));
    // Written while "the index was away": a new memory, a deletion, a changed content.
    let added = first
        .memory_as(
            &key,
            &space,
            "A lighthouse foghorn sounds in the night",
            json!({}),
        )
        .await;
    first
        .gql(
            "mutation($id:ID!){ deleteMemory(id:$id) }",
            json!({ "id": doomed }),
        )
        .await
        .data();
    first
        .gql(
            "mutation($id:ID!){ updateMemory(id:$id, input:{content:\"The lighthouse keeper logs the tides at dawn\"}){ id } }",
            json!({ "id": kept }),
        )
        .await
        .data();

    let second = first.reopen(|c| c.data_dir = Some(snapshot.clone())).await;
    let keyword = second
        .index
        .keyword()
        .expect("the tantivy engine is the default");
    assert_eq!(
        keyword.reopened_spaces(),
        1,
        "the space came from the snapshot"
    );
    assert_eq!(
        keyword_ids(&second, &key, &space, "lighthouse").await,
        HashSet::from([kept.clone(), added.clone()]),
        "caught up: the new memory found, the deleted one not"
    );
    assert_eq!(
        keyword_ids(&second, &key, &space, "tides").await,
        HashSet::from([kept.clone()])
    );
    assert!(
        keyword_ids(&second, &key, &space, "weather")
            .await
            .is_empty(),
        "the old content is gone"
    );
    assert!(keyword.num_docs() >= 2);
}

#[tokio::test]
async fn a_space_the_keyword_index_does_not_hold_is_searched_in_the_database_while_it_loads() {
    let first = TestApp::spawn().await;
    let key = first.admin_key.clone();
    let space = first.space_as(&key, "big", json!({})).await;
    let contents: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("harbour crane number {i} lifts containers"),
            _ => format!("garden bed {i} needs compost"),
        })
        .collect();
    let written = first.memories_as(&key, &space, &contents).await;
    let cranes: HashSet<String> = written.iter().step_by(4).cloned().collect();

    // A second server (an empty index in RAM) for which the space is "large".
    let second = first.reopen(|c| c.keyword_inline_load_max = 5).await;
    let keyword = second.index.keyword().expect("tantivy engine");
    assert_eq!(keyword.num_docs(), 0);
    assert_eq!(
        keyword_ids(&second, &key, &space, "cranes lifting").await,
        cranes,
        "answered by the database while the space loads"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while keyword.num_docs() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the space never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        keyword_ids(&second, &key, &space, "cranes lifting").await,
        cranes
    );
    // Written after the load: found at once.
    let late = second
        .memory_as(&key, &space, "a floating crane arrives", json!({}))
        .await;
    assert!(keyword_ids(&second, &key, &space, "crane")
        .await
        .contains(&late));
    assert_eq!(keyword.num_docs(), 41);
}

#[tokio::test]
async fn a_replicas_first_keyword_search_over_many_spaces_loads_them_in_a_few_statements() {
    let first = TestApp::spawn().await;
    let key = first.admin_key.clone();
    let mut harbours = HashSet::new();
    for s in 0..60 {
        let space = first.space_as(&key, &format!("space {s}"), json!({})).await;
        let contents = vec![format!("harbour log {s}"), format!("garden note {s}")];
        harbours.insert(first.memories_as(&key, &space, &contents).await[0].clone());
    }
    let second = first.reopen(|_| {}).await;
    second.warm(&key).await;
    let before = second.statements();
    let input = json!({ "query": "harbour", "mode": "KEYWORD", "limit": 100 });
    let found = ids_set(search(&second, &key, input.clone()).await.hit_ids());
    let statements = second.statements() - before;

    assert_eq!(found, harbours);
    assert_eq!(second.index.keyword().expect("tantivy").num_docs(), 120);
    assert!(
        statements <= 12,
        "{statements} statements for a first search over 60 spaces"
    );
    // Held now: the next search reads nothing of the spaces.
    let before = second.statements();
    assert_eq!(
        ids_set(search(&second, &key, input).await.hit_ids()),
        harbours
    );
    assert!(second.statements() - before <= 6);
}
