//! Query limits checked before execution: depth, complexity and aliases, with errors that name
//! the limit and the measured value (QUERY_TOO_COMPLEX).
//!
//! Complexity is our own score: every field costs 1, and a field with a `first` (or `last`) argument
//! multiplies what is selected under it by `first` *after clamping* it to [1, 1000] (default
//! 50), so `first: 5000` never errors and a page of 1000 with its counts stays well inside the
//! default limit. Introspection (all root fields `__…`) is exempt from depth and complexity so
//! GraphiQL's schema query works; the parser's recursion guard still applies to it.
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, FragmentDefinition, OperationDefinition,
    Selection, SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Value, Variables};

use memspace_core::page::page_size;

/// The depth allowed to introspection queries (GraphiQL's full schema query is ~13 deep).
pub const INTROSPECTION_DEPTH: usize = 20;

/// How deep fragments may spread into fragments (F0 spreads F1, which spreads F2, …). A spread
/// adds no field level, so without this bound a chain of fragments drives the walk as deep as
/// the client likes; the walk's recursion is bounded by `64 + MAX_FRAGMENT_NESTING` frames.
/// Relay's deepest generated chains are a few tens long.
pub const MAX_FRAGMENT_NESTING: usize = 64;

/// Connection fields: paginated by `first`, which defaults to 50 when absent.
const CONNECTIONS: &[&str] = &["spaces", "memories", "workspaces", "members", "auditEvents"];

/// Lists sized by a `limit` argument (directly or inside `input`): (field, default, maximum).
/// `memorySearch` pages by `first` (default: its input's `limit`), to the same maximum.
const LIMITED: &[(&str, i32, i32)] = &[
    ("searchMemories", 10, memspace_domain::search::MAX_LIMIT),
    ("memorySearch", 10, memspace_domain::search::MAX_LIMIT),
];

/// Fields whose own work (ranking a space's memories) outweighs what they return, scored on
/// top of their list: a search costs 5,000, so the default limit allows at most 50 in one
/// operation, however few hits each asks for.
const HEAVY: &[(&str, usize)] = &[("searchMemories", 5_000), ("memorySearch", 5_000)];

/// Lists without pagination, scored as if they held this many items: their cap where the
/// domain has one (labels, tags, batch results), otherwise a nominal size that keeps a page of
/// 1,000 spaces with such a list above the default limit.
const UNPAGINATED: &[(&str, usize)] = &[
    ("labels", 64),
    ("tags", 50),
    ("grants", 100),
    ("tokens", 100),
    ("linkedSpaces", 100),
    ("roles", 50),
    ("departments", 50),
    ("agents", 100),
    ("embedders", 10),
    ("createMemories", 1000),
    ("addThreadMessages", 1000),
];

#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_aliases: usize,
    /// Fields of the operation once every fragment spread is expanded. The engine resolves a
    /// field once per place it is reached from (a fragment spread twice is resolved twice), so
    /// a "fan" of fragments each spreading the next several times turns a few hundred bytes
    /// into thousands of resolver calls (5 levels of 5 spreads: 7,812 SQL statements), while
    /// scoring low on complexity.
    pub max_fields: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_depth: 12,
            max_complexity: 250_000,
            max_aliases: 200,
            max_fields: 2_000,
        }
    }
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooComplex {
    pub kind: &'static str,
    pub limit: usize,
    pub measured: usize,
}

impl TooComplex {
    pub fn message(&self) -> String {
        format!(
            "query {} is {}, above the limit of {}",
            self.kind, self.measured, self.limit
        )
    }
}

/// Nesting of brackets in the raw text, ignoring strings and comments. Run before parsing so
/// a hostile document can never drive the recursive parser deep.
fn raw_nesting(query: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Skip a string (block strings are skipped quote by quote, which is enough).
                while let Some(s) = chars.next() {
                    if s == '\\' {
                        chars.next();
                    } else if s == '"' {
                        break;
                    }
                }
            }
            '#' => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        break;
                    }
                }
            }
            '{' | '(' | '[' => {
                depth += 1;
                max = max.max(depth);
            }
            '}' | ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

struct Walker<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    aliases: usize,
    /// Fields met, fragments expanded (see [`QueryLimits::max_fields`]).
    fields: usize,
    /// (depth, cost, aliases, fields) of each fragment, computed once: a fragment spread many
    /// times (a "fragment bomb") costs its size times the spreads, not exponential time.
    memo: std::collections::HashMap<Name, (usize, usize, usize, usize)>,
    /// Fragments (spreads and inline) entered and not yet left.
    fragment_nesting: usize,
    /// The deepest fragment nesting met; above `MAX_FRAGMENT_NESTING` the walk stopped there.
    deepest_fragment: usize,
}

impl Walker<'_> {
    /// An integer argument, or an integer field of an input-object argument (`input: {limit}`),
    /// with variables substituted.
    fn int_arg(&self, field: &Field, name: &str) -> Option<i32> {
        let as_int = |value: &Value| match value {
            Value::Number(n) => n
                .as_i64()
                .map(|i| i.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
            _ => None,
        };
        field.arguments.iter().find_map(|(n, v)| {
            let value = v
                .node
                .clone()
                .into_const_with(|var| {
                    Ok::<_, ()>(self.variables.get(&var).cloned().unwrap_or(Value::Null))
                })
                .ok()?;
            if n.node.as_str() == name {
                return as_int(&value);
            }
            match &value {
                Value::Object(obj) => obj.get(name).and_then(as_int),
                _ => None,
            }
        })
    }

    /// How many times what is selected under `field` may be repeated in the answer.
    fn multiplier(&self, field: &Field) -> usize {
        let name = field.name.node.as_str();
        let has = |arg: &str| field.arguments.iter().any(|(n, _)| n.node.as_str() == arg);
        if let Some((_, default, max)) = LIMITED.iter().find(|(n, _, _)| *n == name) {
            return self
                .int_arg(field, "first")
                .or_else(|| self.int_arg(field, "limit"))
                .unwrap_or(*default)
                .clamp(1, *max) as usize;
        }
        if has("last") {
            return page_size(self.int_arg(field, "last")) as usize;
        }
        if has("first") || CONNECTIONS.contains(&name) {
            return page_size(self.int_arg(field, "first")) as usize;
        }
        // `nodes(ids:)` (a connection's `nodes` shortcut has no `ids` and repeats nothing more).
        if name == "nodes" && has("ids") {
            return memspace_domain::nodes::MAX_NODE_IDS;
        }
        UNPAGINATED
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(1, |(_, cap)| *cap)
    }

    /// (depth, complexity) of a selection set; fragments are expanded, cycles cut.
    fn walk(
        &mut self,
        set: &SelectionSet,
        visiting: &mut HashSet<Name>,
        level: usize,
    ) -> (usize, usize) {
        if level > 64 {
            return (level, usize::MAX / 4);
        }
        let (mut depth, mut cost) = (0usize, 0usize);
        for sel in &set.items {
            let (d, c) = match &sel.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    if f.alias.is_some() {
                        self.aliases += 1;
                    }
                    self.fields = self.fields.saturating_add(1);
                    let (sub_d, sub_c) = self.walk(&f.selection_set.node, visiting, level + 1);
                    let multiplier = self.multiplier(f);
                    let own = HEAVY
                        .iter()
                        .find(|(n, _)| *n == f.name.node.as_str())
                        .map_or(1, |(_, cost)| *cost);
                    (
                        1 + sub_d,
                        own.saturating_add(multiplier.saturating_mul(sub_c)),
                    )
                }
                Selection::InlineFragment(_) | Selection::FragmentSpread(_)
                    if !self.enter_fragment() =>
                {
                    return (level, usize::MAX / 4);
                }
                Selection::InlineFragment(fr) => {
                    let walked = self.walk(&fr.node.selection_set.node, visiting, level);
                    self.fragment_nesting -= 1;
                    walked
                }
                Selection::FragmentSpread(sp) => {
                    let name = sp.node.fragment_name.node.clone();
                    let walked = if let Some((d, c, a, f)) = self.memo.get(&name).copied() {
                        self.aliases = self.aliases.saturating_add(a);
                        self.fields = self.fields.saturating_add(f);
                        (d, c)
                    } else {
                        match self.doc.fragments.get(&name) {
                            Some(def) if visiting.insert(name.clone()) => {
                                let (aliases, fields) = (self.aliases, self.fields);
                                let (d, c) = self.walk_fragment(def, visiting, level);
                                visiting.remove(&name);
                                let a = self.aliases.saturating_sub(aliases);
                                let f = self.fields.saturating_sub(fields);
                                self.memo.insert(name, (d, c, a, f));
                                (d, c)
                            }
                            _ => (0, 0),
                        }
                    };
                    self.fragment_nesting -= 1;
                    walked
                }
            };
            depth = depth.max(d);
            cost = cost.saturating_add(c);
        }
        (depth, cost)
    }

    /// Counts one more fragment level; false (and the walk stops) past the bound.
    fn enter_fragment(&mut self) -> bool {
        self.fragment_nesting += 1;
        self.deepest_fragment = self.deepest_fragment.max(self.fragment_nesting);
        if self.fragment_nesting > MAX_FRAGMENT_NESTING {
            self.fragment_nesting -= 1;
            return false;
        }
        true
    }

    fn walk_fragment(
        &mut self,
        def: &Positioned<FragmentDefinition>,
        visiting: &mut HashSet<Name>,
        level: usize,
    ) -> (usize, usize) {
        self.walk(&def.node.selection_set.node, visiting, level)
    }
}

fn is_introspection(op: &OperationDefinition) -> bool {
    !op.selection_set.node.items.is_empty()
        && op.selection_set.node.items.iter().all(|s| match &s.node {
            Selection::Field(f) => f.node.name.node.starts_with("__"),
            _ => false,
        })
}

/// Parsed documents by query text, most recently used kept. Clients send the same few query
/// texts over and over; parsing one (a PEG parser) cost more than cloning its syntax tree.
/// Only documents that parsed and passed the nesting guard are kept; variables and limits
/// are still checked per request, and the engine still validates every document.
pub struct Documents(Mutex<LruCache<Box<str>, ExecutableDocument>>);

/// Texts longer than this are parsed every time rather than kept.
const MAX_CACHED_QUERY_BYTES: usize = 16 * 1024;

impl Documents {
    pub fn new(capacity: usize) -> Documents {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Documents(Mutex::new(LruCache::new(capacity)))
    }

    fn get(&self, query: &str) -> Option<ExecutableDocument> {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(query).cloned()
    }

    fn put(&self, query: &str, doc: &ExecutableDocument) {
        if query.len() <= MAX_CACHED_QUERY_BYTES {
            let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            cache.put(query.into(), doc.clone());
        }
    }
}

impl Default for Documents {
    fn default() -> Self {
        Documents::new(512)
    }
}

/// Checks a request's query against the limits. Documents that do not parse pass through (the
/// engine reports them), except when the parser's recursion guard trips. A document that
/// parsed is returned, for the engine to execute without parsing it again.
pub fn check(
    query: &str,
    operation_name: Option<&str>,
    variables: &Variables,
    limits: &QueryLimits,
    documents: &Documents,
) -> Result<Option<ExecutableDocument>, TooComplex> {
    let doc = match documents.get(query) {
        Some(doc) => doc,
        None => {
            let doc = parse(query, limits)?;
            if let Some(doc) = &doc {
                documents.put(query, doc);
            }
            match doc {
                Some(doc) => doc,
                None => return Ok(None),
            }
        }
    };
    check_document(doc, operation_name, variables, limits)
}

/// Parses a query, refusing absurd nesting before the recursive parser sees it; `None` when it
/// does not parse (the engine reports the syntax error itself, with its position).
fn parse(query: &str, limits: &QueryLimits) -> Result<Option<ExecutableDocument>, TooComplex> {
    // Brackets per level: `{` of the selection plus `(`/`[` of arguments; allow some slack.
    let nesting_cap = limits.max_depth * 2 + 16;
    let nesting = raw_nesting(query);
    if nesting > nesting_cap.max(48) {
        return Err(TooComplex {
            kind: "nesting",
            limit: nesting_cap.max(48),
            measured: nesting,
        });
    }
    match async_graphql::parser::parse_query(query) {
        Ok(doc) => Ok(Some(doc)),
        Err(async_graphql::parser::Error::RecursionLimitExceeded) => Err(TooComplex {
            kind: "depth",
            limit: limits.max_depth,
            measured: 64,
        }),
        Err(_) => Ok(None),
    }
}

/// Depth, complexity and aliases of the operation(s) of a parsed document.
fn check_document(
    doc: ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    limits: &QueryLimits,
) -> Result<Option<ExecutableDocument>, TooComplex> {
    let ops: Vec<&Positioned<OperationDefinition>> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(map) => match operation_name {
            Some(name) => map
                .iter()
                .filter(|(n, _)| n.as_str() == name)
                .map(|(_, op)| op)
                .collect(),
            None => map.values().collect(),
        },
    };
    for op in ops {
        // Introspection is scored separately: GraphiQL's schema query nests ~13 deep, so it
        // gets its own depth limit; complexity and aliases count as for any query.
        let max_depth = if is_introspection(&op.node) {
            limits.max_depth.max(INTROSPECTION_DEPTH)
        } else {
            limits.max_depth
        };
        let mut walker = Walker {
            doc: &doc,
            variables,
            aliases: 0,
            fields: 0,
            memo: Default::default(),
            fragment_nesting: 0,
            deepest_fragment: 0,
        };
        let (depth, complexity) = walker.walk(&op.node.selection_set.node, &mut HashSet::new(), 1);
        if walker.deepest_fragment > MAX_FRAGMENT_NESTING {
            return Err(TooComplex {
                kind: "fragment nesting",
                limit: MAX_FRAGMENT_NESTING,
                measured: walker.deepest_fragment,
            });
        }
        if depth > max_depth {
            return Err(TooComplex {
                kind: "depth",
                limit: max_depth,
                measured: depth,
            });
        }
        if complexity > limits.max_complexity {
            return Err(TooComplex {
                kind: "complexity",
                limit: limits.max_complexity,
                measured: complexity,
            });
        }
        if walker.aliases > limits.max_aliases {
            return Err(TooComplex {
                kind: "aliases",
                limit: limits.max_aliases,
                measured: walker.aliases,
            });
        }
        if walker.fields > limits.max_fields {
            return Err(TooComplex {
                kind: "fields",
                limit: limits.max_fields,
                measured: walker.fields,
            });
        }
    }
    Ok(Some(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(q: &str) -> Result<(), TooComplex> {
        check(
            q,
            None,
            &Variables::default(),
            &QueryLimits::default(),
            &Documents::default(),
        )
        .map(|_| ())
    }

    fn nested(depth: usize) -> String {
        let mut q = String::new();
        for _ in 0..depth - 1 {
            q.push_str("{ a ");
        }
        q.push_str("{ b ");
        for _ in 0..depth {
            q.push('}');
        }
        q
    }

    /// `query{viewer{...F0}}`, each fragment selecting `roles{id}` and spreading the next one
    /// `width` times.
    fn fan(len: usize, width: usize) -> String {
        let mut q = String::from("query{viewer{...F0}} ");
        for k in 0..len {
            let spreads = format!("...F{} ", k + 1).repeat(width);
            q.push_str(&format!(
                "fragment F{k} on Viewer{{roles{{id}} {spreads}}} "
            ));
        }
        q.push_str(&format!("fragment F{len} on Viewer{{roles{{id}}}}"));
        q
    }

    #[test]
    fn fields_are_counted_with_fragments_expanded() {
        // 1 + 5 + 25 + 125 places reach `roles{id}`: 1 + 156 × 2 fields.
        assert!(run(&fan(3, 5)).is_ok());
        let err = run(&fan(5, 5)).unwrap_err();
        assert_eq!((err.kind, err.limit), ("fields", 2_000));
        assert_eq!(err.measured, 1 + 3906 * 2);
    }

    #[test]
    fn depth_is_counted_in_fields_and_limited() {
        assert!(run(&nested(12)).is_ok());
        let err = run(&nested(13)).unwrap_err();
        assert_eq!((err.kind, err.limit, err.measured), ("depth", 12, 13));
    }

    #[test]
    fn absurd_nesting_is_refused_before_parsing() {
        let q = "{".repeat(100_000);
        assert_eq!(run(&q).unwrap_err().kind, "nesting");
    }

    #[test]
    fn first_is_clamped_before_scoring() {
        let page = "{ spaces(first: 5000) { edges { node { id name memoryCount usedStorage owner { __typename } } } } }";
        assert!(run(page).is_ok());
        let nested_pages = "{ spaces(first: 1000) { edges { node { memories(first: 1000) { edges { node { id content } } } } } } }";
        assert_eq!(run(nested_pages).unwrap_err().kind, "complexity");
    }

    #[test]
    fn variables_feed_first() {
        let q = "query($n: Int) { spaces(first: $n) { edges { node { memories(first: $n) { edges { node { id } } } } } } }";
        // One cache for both: the second check reuses the parsed document with new variables.
        let docs = Documents::default();
        let small = Variables::from_json(serde_json::json!({"n": 10}));
        assert!(check(q, None, &small, &QueryLimits::default(), &docs).is_ok());
        let big = Variables::from_json(serde_json::json!({"n": 1000}));
        assert!(check(q, None, &big, &QueryLimits::default(), &docs).is_err());
    }

    #[test]
    fn introspection_is_exempt_and_fragments_count() {
        // `__schema` plus 13 levels: deeper than ordinary queries may go, fine for introspection.
        let intro = format!("{{ __schema {} }}", nested(13));
        assert!(run(&intro).is_ok());
        let too_deep_intro = format!("{{ __schema {} }}", nested(20));
        assert_eq!(run(&too_deep_intro).unwrap_err().kind, "depth");
        let q = "query { ...F } fragment F on Query { a { b { c { d { e { f { g { h { i { j { k { l { m } } } } } } } } } } } } }";
        assert_eq!(run(q).unwrap_err().kind, "depth");
        let cyclic = "query { ...F } fragment F on Query { a { ...F } }";
        assert!(
            run(cyclic).is_ok(),
            "a fragment cycle is cut, not followed forever"
        );
    }

    #[test]
    fn a_fragment_bomb_is_scored_in_linear_time_and_refused() {
        let mut q =
            String::from("query { ...F40 } fragment F0 on Query { viewer { __typename } } ");
        for k in 1..=40 {
            q.push_str(&format!(
                "fragment F{k} on Query {{ ...F{p} ...F{p} }} ",
                p = k - 1
            ));
        }
        let started = std::time::Instant::now();
        assert_eq!(run(&q).unwrap_err().kind, "complexity");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    /// A chain of fragments each spreading the next: the walk stops at the bound instead of
    /// recursing once per fragment (5,000 of them overflowed the stack and killed the server).
    #[test]
    fn a_long_fragment_chain_is_refused_without_deep_recursion() {
        let chain = |n: usize| {
            let mut q = String::from("query { viewer { ...F0 } } ");
            for k in 0..n {
                q.push_str(&format!(
                    "fragment F{k} on Viewer {{ organization {{ id }} ...F{} }} ",
                    k + 1
                ));
            }
            q.push_str(&format!("fragment F{n} on Viewer {{ roles {{ id }} }}"));
            q
        };
        // Run on a thread with a small stack: the walk must not need one frame per fragment.
        let refused = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || run(&chain(50_000)))
            .unwrap()
            .join()
            .expect("the walk must not overflow the stack");
        let err = refused.unwrap_err();
        assert_eq!(
            (err.kind, err.limit),
            ("fragment nesting", MAX_FRAGMENT_NESTING)
        );
        assert!(run(&chain(MAX_FRAGMENT_NESTING - 1)).is_ok());
    }

    #[test]
    fn search_limit_and_unpaginated_lists_are_scored_by_their_size() {
        let one = |limit: i32| {
            format!("s: searchMemories(input: {{query: \"x\", limit: {limit}}}) {{ score chunk memory {{ id content }} }}")
        };
        let q = |n: usize, limit: i32| {
            let fields: String = (0..n).map(|i| format!("a{i}{} ", one(limit))).collect();
            format!("{{ {fields} }}")
        };
        assert!(run(&q(10, 100)).is_ok());
        let err = run(&q(60, 1)).unwrap_err();
        assert_eq!(err.kind, "complexity");
        assert!(err.measured >= 60 * 5_000);
        // `limit` counts like `first`, from the variables too.
        let with_var = "query($i: SearchInput!) { searchMemories(input: $i) { memory { space { spaces { edges { node { id } } } } } } }";
        let docs = Documents::default();
        let vars =
            |l: i32| Variables::from_json(serde_json::json!({"i": {"query": "x", "limit": l}}));
        let tight = QueryLimits {
            max_complexity: 10_000,
            ..QueryLimits::default()
        };
        assert!(check(with_var, None, &vars(1), &tight, &docs).is_ok());
        let big = check(with_var, None, &vars(100), &tight, &docs).unwrap_err();
        assert!(big.measured > 5_000 + 100 * 50 * 2, "{big:?}");
        // A connection without `first` counts its default page of 50, a grant list its 100.
        let grants = "{ spaces(first: 1000) { edges { node { grants { subjectId permission subjectKind } } } } }";
        assert_eq!(run(grants).unwrap_err().kind, "complexity");
    }

    #[test]
    fn aliases_are_limited() {
        let fields: String = (0..201)
            .map(|i| format!("a{i}: viewer {{ __typename }} "))
            .collect();
        assert_eq!(run(&format!("{{ {fields} }}")).unwrap_err().kind, "aliases");
    }
}
