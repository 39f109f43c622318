//! Domain errors as MCP answers, with the GraphQL codes: a tool's failure is a tool result with
//! `isError` (the model reads it and can correct itself); a resource or prompt failure is a
//! JSON-RPC error whose `data` holds the same object.
use rmcp::model::{CallToolResult, ContentBlock, ErrorCode, ErrorData};
use serde_json::{json, Value};

use memspace_core::error::AppError;

/// `{code, message, traceId, …details}`: what GraphQL puts in `extensions`, plus the message.
pub fn body(err: &AppError, trace_id: &str) -> Value {
    if let AppError::Internal(cause) = err {
        tracing::error!(error = ?cause, trace_id, "internal error");
    }
    let mut out = err.details();
    out.insert("code".into(), err.code().into());
    out.insert("message".into(), err.message().into());
    out.insert("traceId".into(), trace_id.into());
    Value::Object(out)
}

/// A tool error: `structuredContent.error` holds the body, the text says code and message.
pub fn tool_error(err: &AppError, trace_id: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{}: {}",
        err.code(),
        err.message()
    ))]);
    result.structured_content = Some(json!({ "error": body(err, trace_id) }));
    result
}

/// A JSON-RPC error for resources and prompts: NOT_FOUND is MCP's "resource not found".
pub fn rpc_error(err: &AppError, trace_id: &str) -> ErrorData {
    let code = match err {
        AppError::NotFound { .. } => ErrorCode::RESOURCE_NOT_FOUND,
        AppError::Validation { .. } | AppError::InvalidArgument { .. } => ErrorCode::INVALID_PARAMS,
        AppError::Internal(_) => ErrorCode::INTERNAL_ERROR,
        // Forbidden, unauthenticated and the rest: the request was valid but refused.
        _ => ErrorCode::INVALID_REQUEST,
    };
    ErrorData::new(code, err.message(), Some(body(err, trace_id)))
}

pub use crate::http::trace::new_trace_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_tool_error_carries_the_code_and_the_existing_id() {
        let id = uuid::Uuid::now_v7();
        let err = AppError::Duplicate {
            existing_id: Some(id),
            duplicate_of_index: None,
            index: None,
        };
        let result = tool_error(&err, "t");
        assert_eq!(result.is_error, Some(true));
        let e = &result.structured_content.expect("structured")["error"];
        assert_eq!(e["code"], "DUPLICATE");
        assert_eq!(e["existingId"], id.to_string());
    }

    #[test]
    fn a_validation_error_names_its_field() {
        let e = body(&AppError::validation("content", "must not be blank"), "t");
        assert_eq!(e["code"], "VALIDATION_ERROR");
        assert_eq!(e["field"], "content");
    }

    #[test]
    fn an_internal_error_leaks_no_cause() {
        let e = body(&AppError::Internal(anyhow::anyhow!("secret dsn")), "t");
        assert_eq!(e["message"], "internal error");
    }
}
