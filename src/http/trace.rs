//! Names for one request in logs, metrics and errors: its trace id and operation name.
use uuid::Uuid;

/// The name of a document's leading operation (`query Viewer { … }` → `Viewer`), for logs
/// and metrics when the request carries no `operationName`.
pub fn operation_name_of(query: &str) -> Option<String> {
    let rest = query.trim_start();
    let rest = ["query", "mutation", "subscription"]
        .iter()
        .find_map(|kw| rest.strip_prefix(kw))?;
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A fresh trace id for one request or operation (time-ordered UUIDv7, 32 hex digits), the
/// `extensions.traceId` of its errors and the `trace_id` of its log lines.
pub fn new_trace_id() -> String {
    Uuid::now_v7().simple().to_string()
}
