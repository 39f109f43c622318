//! The one error type of the service layer and its mapping to GraphQL error codes.
//!
//! Codes are part of the public API (DESIGN.md §6): this file is the only place they are written.
use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, SqlErr};

pub type AppResult<T> = Result<T, AppError>;

/// Deliberately not `Display`: async-graphql converts every `Display` type into an error without
/// extensions, so a `?` would silently drop the code. Without it, `?` in a resolver can only use
/// the conversion below, which always sets `code`, `field` and the details.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated,
    Forbidden(String),
    OwnerOnly(&'static str),
    NotFound {
        resource: &'static str,
        id: String,
    },
    Validation {
        field: String,
        message: String,
        /// Extra machine-readable details (for example the ids that were refused).
        details: Option<serde_json::Value>,
    },
    AlreadyExists(String),
    InvalidArgument {
        field: String,
        message: String,
    },
    /// A subscriber fell further behind than its buffer; its stream ends.
    SubscriberLagged(u64),
    /// The write duplicates an existing memory and the policy is REJECT.
    Duplicate {
        /// The stored memory it duplicates (None when it duplicates an earlier batch item).
        existing_id: Option<uuid::Uuid>,
        /// The earlier item of the same batch it duplicates.
        duplicate_of_index: Option<usize>,
        index: Option<usize>,
    },
    /// `expectedVersion` is stale: someone changed the memory since it was read.
    Conflict {
        current_version: i32,
    },
    /// The space's embedder failed (down, timed out, wrong answer); nothing was stored.
    EmbedderUnavailable {
        embedder: String,
        reason: String,
    },
    Internal(anyhow::Error),
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::OwnerOnly(_) => "OWNER_ONLY",
            AppError::NotFound { .. } => "NOT_FOUND",
            AppError::Validation { .. } => "VALIDATION_ERROR",
            AppError::AlreadyExists(_) => "ALREADY_EXISTS",
            AppError::InvalidArgument { .. } => "INVALID_ARGUMENT",
            AppError::SubscriberLagged(_) => "SUBSCRIBER_LAGGED",
            AppError::Duplicate { .. } => "DUPLICATE",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::EmbedderUnavailable { .. } => "EMBEDDER_UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// The message a client sees (never the cause of an internal error).
    pub fn message(&self) -> String {
        match self {
            AppError::Unauthenticated => "a valid API key or space token is required".into(),
            AppError::Forbidden(m) | AppError::AlreadyExists(m) => m.clone(),
            AppError::OwnerOnly(what) => {
                format!("only the owner of this {what} (or an organization admin) may do this")
            }
            AppError::NotFound { resource, id } => format!("{resource} {id} was not found"),
            AppError::Validation { field, message, .. }
            | AppError::InvalidArgument { field, message } => format!("{field}: {message}"),
            AppError::SubscriberLagged(n) => format!(
                "this subscriber fell {n} events behind and was disconnected; resubscribe and \
                 re-read the space"
            ),
            AppError::Duplicate {
                existing_id,
                duplicate_of_index,
                index,
            } => {
                let what = match (existing_id, duplicate_of_index) {
                    (Some(id), _) => format!("memory {id}"),
                    (None, Some(i)) => format!("item {i} of this batch"),
                    (None, None) => "an existing memory".to_string(),
                };
                match index {
                    Some(i) => format!("item {i}: duplicates {what}"),
                    None => format!("this memory duplicates {what}"),
                }
            }
            AppError::Conflict { current_version } => format!(
                "the memory changed since you read it (now at version {current_version}); \
                 re-read it and retry"
            ),
            AppError::EmbedderUnavailable { embedder, reason } => format!(
                "embedder {embedder:?} is unavailable ({reason}); nothing was stored, retry later"
            ),
            AppError::Internal(_) => "internal error".into(),
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.into(),
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(resource: &'static str, id: impl ToString) -> Self {
        AppError::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    pub fn invalid_argument(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// EMBEDDER_UNAVAILABLE for the embedder `name`, from the engine's reason.
    pub fn embedder<E: std::fmt::Display>(name: &str) -> impl FnOnce(E) -> AppError {
        let embedder = name.to_string();
        move |err| {
            let reason = err.to_string();
            tracing::warn!(embedder = %embedder, reason = %reason, "embedder failed");
            AppError::EmbedderUnavailable { embedder, reason }
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden(message.into())
    }

    /// Maps a failed insert/update: a unique-index violation becomes ALREADY_EXISTS with `what`,
    /// anything else is internal.
    pub fn unique(what: impl Into<String>) -> impl FnOnce(DbErr) -> AppError {
        move |err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => AppError::AlreadyExists(what.into()),
            _ => AppError::from(err),
        }
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        AppError::Internal(err.into())
    }
}

impl AppError {
    /// The machine-readable details a client gets besides `code` (`field`, `existingId`,
    /// `currentVersion`, …): GraphQL puts them in `extensions`, MCP in a tool error's
    /// structured content, under the same names.
    pub fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut out = serde_json::Map::new();
        match self {
            AppError::Validation { field, details, .. } => {
                out.insert("field".into(), Value::from(field.as_str()));
                if let Some(Value::Object(map)) = details {
                    for (k, v) in map {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            AppError::InvalidArgument { field, .. } => {
                out.insert("field".into(), Value::from(field.as_str()));
            }
            AppError::Duplicate {
                existing_id,
                duplicate_of_index,
                index,
            } => {
                if let Some(id) = existing_id {
                    out.insert("existingId".into(), Value::from(id.to_string()));
                }
                if let Some(i) = duplicate_of_index {
                    out.insert("duplicateOfIndex".into(), Value::from(*i as i64));
                }
                if let Some(i) = index {
                    out.insert("index".into(), Value::from(*i as i64));
                }
            }
            AppError::Conflict { current_version } => {
                out.insert("currentVersion".into(), Value::from(*current_version));
            }
            AppError::EmbedderUnavailable { embedder, .. } => {
                out.insert("embedder".into(), Value::from(embedder.as_str()));
            }
            _ => {}
        }
        out
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        if let AppError::Internal(cause) = &err {
            // The trace id is a field of the enclosing request span, so this line carries it.
            tracing::error!(error = ?cause, "internal error");
        }
        let code = err.code();
        let details = err.details();
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", code);
            for (k, v) in details {
                if let Ok(v) = async_graphql::Value::from_json(v) {
                    ext.set(k.as_str(), v);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(err: AppError) -> String {
        let gql: async_graphql::Error = err.into();
        let ext = gql.extensions.expect("extensions are always set");
        match ext.get("code") {
            Some(async_graphql::Value::String(s)) => s.clone(),
            other => panic!("code missing: {other:?}"),
        }
    }

    #[test]
    fn every_variant_maps_to_its_documented_code() {
        let cases = [
            (AppError::Unauthenticated, "UNAUTHENTICATED"),
            (AppError::forbidden("x"), "FORBIDDEN"),
            (AppError::OwnerOnly("space"), "OWNER_ONLY"),
            (AppError::not_found("space", "1"), "NOT_FOUND"),
            (AppError::validation("name", "too long"), "VALIDATION_ERROR"),
            (AppError::AlreadyExists("x".into()), "ALREADY_EXISTS"),
            (
                AppError::invalid_argument("after", "bad cursor"),
                "INVALID_ARGUMENT",
            ),
            (AppError::Internal(anyhow::anyhow!("db down")), "INTERNAL"),
        ];
        for (err, code) in cases {
            assert_eq!(code_of(err), code);
        }
    }

    #[test]
    fn validation_errors_name_the_field_and_carry_details() {
        let err = AppError::Validation {
            field: "grants".into(),
            message: "unknown ids".into(),
            details: Some(serde_json::json!({"invalidIds": ["a"]})),
        };
        let gql: async_graphql::Error = err.into();
        let ext = gql.extensions.unwrap();
        assert_eq!(
            ext.get("field"),
            Some(&async_graphql::Value::from("grants"))
        );
        assert!(ext.get("invalidIds").is_some());
        assert!(gql.message.starts_with("grants:"));
    }

    #[test]
    fn internal_errors_leak_no_details() {
        let gql: async_graphql::Error =
            AppError::Internal(anyhow::anyhow!("password=hunter2")).into();
        assert!(!gql.message.contains("hunter2"));
    }
}
