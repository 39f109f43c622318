//! Field errors shaped as the GraphQL spec says ("Handling Field Errors", "Errors and
//! Non-Nullability"): a field that fails is `null` in `data`, and when its type is non-null the
//! `null` moves to the nearest nullable parent (or makes `data` itself `null`).
//!
//! async-graphql 7.2.1 instead drops a failed field's key from its object (and an object whose
//! only selected field failed becomes `null` even when its own type is non-null), so a client
//! sees `{"data": null}` for `{ space(id: "unknown") { id } }` and a missing key beside a
//! sibling. The fix lives in the engine's `resolve` hook, which sees every field and list item
//! with its declared return type: a failed nullable one resolves to `null` (its error kept), a
//! failed non-null one is recorded and fails its parent, recursively. Failures that only carry a
//! child's `null` upwards use a marker error that is removed before the response leaves.
//!
//! The same hook puts every object's keys back in selection order ("CollectFields"): 7.2.1
//! resolves an object's fields concurrently and inserts each into the result as it completes,
//! so `viewer { roles principal }` could come back as `{"principal", "roles"}` from one run to
//! the next.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextResolve, NextSubscribe, ResolveInfo,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, FragmentDefinition, OperationType,
    Selection, SelectionSet,
};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{
    Name, Positioned, QueryPathNode, QueryPathSegment, Request, Response, ServerError,
    ServerResult, Value, Variables,
};
use futures_util::stream::{BoxStream, StreamExt};

/// The message of the marker error that carries a non-null failure to the parent.
const PROPAGATED: &str = "\u{0}memspace: null propagated from a non-null field";

/// Installs spec-conformant error propagation on a schema.
pub struct FieldErrors;

impl ExtensionFactory for FieldErrors {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest(Arc::default()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn path_of(node: &QueryPathNode<'_>) -> Vec<Segment> {
    let mut path = Vec::new();
    let mut at = Some(node);
    while let Some(n) = at {
        path.push(match n.segment {
            QueryPathSegment::Index(i) => Segment::Index(i),
            QueryPathSegment::Name(name) => Segment::Key(name.to_string()),
        });
        at = n.parent;
    }
    path.reverse();
    path
}

/// One per request (and per subscription), shared with a subscription's response stream.
struct PerRequest(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// The operation the request names, for the variable check of `parse_query`.
    operation_name: Mutex<Option<String>>,
    /// Set once anything failed: until then the hook costs one atomic load per field.
    any: AtomicBool,
    state: Mutex<State>,
    /// What the key order of the response depends on, from `parse_query`.
    order: OnceLock<Selections>,
}

/// The selections of the executed operation: its root selection set and type, its fragments
/// and the variables its `@skip`/`@include` read.
struct Selections {
    root: SelectionSet,
    root_type: String,
    fragments: HashMap<Name, Positioned<FragmentDefinition>>,
    variables: Variables,
}

impl Selections {
    fn of(
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
        registry: &Registry,
    ) -> Option<Selections> {
        let operation = match (&doc.operations, operation_name) {
            (DocumentOperations::Single(op), _) => op,
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
            (DocumentOperations::Multiple(_), None) => return None,
        };
        let root_type = match operation.node.ty {
            OperationType::Query => Some(registry.query_type.clone()),
            OperationType::Mutation => registry.mutation_type.clone(),
            OperationType::Subscription => registry.subscription_type.clone(),
        }?;
        Some(Selections {
            root: operation.node.selection_set.node.clone(),
            root_type,
            fragments: doc.fragments.clone(),
            variables: variables.clone(),
        })
    }

    /// Whether `@skip`/`@include` leave a selection out (a variable that is not given counts
    /// as keeping it).
    fn excluded(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|d| {
            let name = d.node.name.node.as_str();
            if name != "skip" && name != "include" {
                return false;
            }
            let condition = d
                .node
                .get_argument("if")
                .and_then(|v| {
                    let vars = &self.variables;
                    (v.node.clone())
                        .into_const_with(|var| vars.get(&var).cloned().ok_or(()))
                        .ok()
                })
                .and_then(|v| match v {
                    Value::Boolean(b) => Some(b),
                    _ => None,
                });
            matches!(
                (name, condition),
                ("skip", Some(true)) | ("include", Some(false))
            )
        })
    }

    /// The response keys `set` selects on an object of type `ty`, in order of first
    /// occurrence, each with its field name.
    fn keys<'s>(
        &'s self,
        set: &'s SelectionSet,
        ty: &str,
        registry: &Registry,
        out: &mut Vec<(&'s str, &'s str)>,
    ) {
        let applies = |on: &str| {
            on == ty
                || registry
                    .types
                    .get(on)
                    .is_some_and(|t| t.is_possible_type(ty))
        };
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    if self.excluded(&field.node.directives) {
                        continue;
                    }
                    let key = field.node.response_key().node.as_str();
                    if !out.iter().any(|(k, _)| *k == key) {
                        out.push((key, field.node.name.node.as_str()));
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if self.excluded(&spread.node.directives) {
                        continue;
                    }
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) {
                        if applies(fragment.node.type_condition.node.on.node.as_str()) {
                            self.keys(&fragment.node.selection_set.node, ty, registry, out);
                        }
                    }
                }
                Selection::InlineFragment(inline) => {
                    if self.excluded(&inline.node.directives) {
                        continue;
                    }
                    let on = inline.node.type_condition.as_ref();
                    if on.is_none_or(|c| applies(c.node.on.node.as_str())) {
                        self.keys(&inline.node.selection_set.node, ty, registry, out);
                    }
                }
            }
        }
    }

    /// Puts the keys of `object`, the value of a field of (qualified) type `return_type`
    /// selecting `set`, in selection order. Scalars (a `JSON` object) are left as they are.
    fn sort(
        &self,
        object: &mut async_graphql::indexmap::IndexMap<Name, Value>,
        set: &SelectionSet,
        return_type: &str,
        registry: &Registry,
    ) {
        if object.len() < 2 {
            return;
        }
        let named = return_type.trim_matches(|c| c == '[' || c == ']' || c == '!');
        let mut keys = Vec::new();
        match registry.types.get(named) {
            Some(MetaType::Object { .. }) => self.keys(set, named, registry, &mut keys),
            Some(ty @ (MetaType::Interface { .. } | MetaType::Union { .. })) => {
                // The runtime type is the one `__typename` names, or else the first possible
                // type whose selection is exactly the keys present.
                let mut all = Vec::new();
                self.keys(set, named, registry, &mut all);
                let typename = all.iter().find_map(|(key, field)| match object.get(*key) {
                    Some(Value::String(t)) if *field == "__typename" => Some(t.clone()),
                    _ => None,
                });
                let possible = ty.possible_types().into_iter().flatten();
                for candidate in possible {
                    if typename.as_ref().is_some_and(|t| t != candidate) {
                        continue;
                    }
                    keys.clear();
                    self.keys(set, candidate, registry, &mut keys);
                    if keys.len() == object.len()
                        && keys.iter().all(|(k, _)| object.contains_key(*k))
                    {
                        break;
                    }
                }
            }
            _ => return,
        }
        sort_keys(object, &keys);
    }
}

/// Orders `object` like `keys` (keys it does not list go last, in their current order).
fn sort_keys(object: &mut async_graphql::indexmap::IndexMap<Name, Value>, keys: &[(&str, &str)]) {
    let position = |k: &Name| {
        keys.iter()
            .position(|(key, _)| *key == k.as_str())
            .unwrap_or(usize::MAX)
    };
    if object.keys().map(position).is_sorted() {
        return;
    }
    object.sort_by(|a, _, b, _| position(a).cmp(&position(b)));
}

#[derive(Default)]
struct State {
    /// Values that are missing because a non-null field or item failed, not yet absorbed by a
    /// nullable ancestor.
    failed: Vec<Vec<Segment>>,
    /// Errors of nullable fields that resolved to `null` instead (the engine never saw them).
    errors: Vec<ServerError>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the recorded failures below `path`; true when there was one.
    fn take_failed_below(&self, path: &[Segment]) -> bool {
        let mut st = self.state();
        let before = st.failed.len();
        st.failed
            .retain(|f| !(f.len() > path.len() && f.starts_with(path)));
        st.failed.len() != before
    }

    /// Finishes a response: markers out, the nulled fields' errors in (in document order),
    /// and `data` null when a non-null root field failed.
    fn finish(&self, mut response: Response) -> Response {
        if let (Some(order), Value::Object(root)) = (self.order.get(), &mut response.data) {
            let mut keys = Vec::new();
            order.keys(
                &order.root,
                &order.root_type,
                &Registry::default(),
                &mut keys,
            );
            sort_keys(root, &keys);
        }
        if !self.any.load(Ordering::Acquire) {
            return response;
        }
        let mut st = self.state();
        response.errors.retain(|e| !is_marker(e));
        response.errors.append(&mut st.errors);
        response.errors.sort_by(|a, b| {
            let pos = |e: &ServerError| e.locations.first().map(|p| (p.line, p.column));
            pos(a).cmp(&pos(b))
        });
        if st.failed.iter().any(|f| f.len() == 1) {
            response.data = Value::Null;
        }
        st.failed.clear();
        response
    }
}

/// A request error (no `data`) for a required variable the request does not provide: the spec's
/// CoerceVariableValues fails before execution; the engine would run and fail the field instead.
fn missing_variable(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<ServerError> {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        // Several operations and no name: the engine reports that itself.
        (DocumentOperations::Multiple(_), None) => return None,
    };
    operation.node.variable_definitions.iter().find_map(|def| {
        let def = &def.node;
        let given = variables
            .get(&def.name.node)
            .is_some_and(|v| *v != Value::Null);
        (!def.var_type.node.nullable && def.default_value.is_none() && !given).then(|| {
            ServerError::new(
                format!(
                    "Variable \"${}\" of required type \"{}\" was not provided.",
                    def.name.node, def.var_type.node
                ),
                Some(def.name.pos),
            )
        })
    })
}

fn is_marker(e: &ServerError) -> bool {
    e.message == PROPAGATED
}

#[async_graphql::async_trait::async_trait]
impl Extension for PerRequest {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let shared = &self.0;
        let non_null = info.return_type.ends_with('!');
        let node = info.path_node;
        let (return_type, field) = (info.return_type, info.field);
        let mut result = next.run(ctx, info).await;
        if let (Ok(Some(Value::Object(object))), Some(order)) = (&mut result, shared.order.get()) {
            let registry = &ctx.schema_env.registry;
            order.sort(object, &field.selection_set.node, return_type, registry);
        }
        let child_failed =
            || shared.any.load(Ordering::Acquire) && shared.take_failed_below(&path_of(node));
        let failure = match result {
            Ok(value) if !child_failed() => return Ok(value),
            Ok(_) => None,
            Err(e) => {
                child_failed();
                Some(e)
            }
        };
        shared.any.store(true, Ordering::Release);
        if non_null {
            shared.state().failed.push(path_of(node));
            return Err(failure.unwrap_or_else(|| ServerError::new(PROPAGATED, None)));
        }
        if let Some(e) = failure.filter(|e| !is_marker(e)) {
            shared.state().errors.push(e);
        }
        Ok(Some(Value::Null))
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *self
            .0
            .operation_name
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let name = self
            .0
            .operation_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(e) = missing_variable(&doc, name.as_deref(), variables) {
            return Err(e);
        }
        let registry = &ctx.schema_env.registry;
        if let Some(selections) = Selections::of(&doc, name.as_deref(), variables, registry) {
            let _ = self.0.order.set(selections);
        }
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        self.0.finish(response)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let shared = self.0.clone();
        next.run(ctx, stream)
            .map(move |response| shared.finish(response))
            .boxed()
    }
}
