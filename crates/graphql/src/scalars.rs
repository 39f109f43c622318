//! This API's own scalars (beyond async-graphql's `DateTime`, which already carries
//! `@specifiedBy` RFC 3339): each names the specification of its wire format.
use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// The `JSON` scalar; its description is the impl's doc comment (async-graphql reads it there).
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub serde_json::Value);

/// A JSON value (RFC 8259), sent as itself rather than as a string: an object, array,
/// string, number, boolean or null. Fields that take one say which values they accept
/// (`metadata`: an object of at most 16 KiB).
#[Scalar(
    name = "JSON",
    specified_by_url = "https://www.rfc-editor.org/rfc/rfc8259"
)]
impl ScalarType for Json {
    fn parse(value: Value) -> InputValueResult<Self> {
        // The same conversion `async_graphql::Json` makes, so the wire format is unchanged.
        async_graphql::from_value(value)
            .map(Json)
            .map_err(InputValueError::custom)
    }

    fn to_value(&self) -> Value {
        async_graphql::to_value(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_value_goes_in_and_out_unchanged() {
        let json = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
        let value = Value::from_json(json.clone()).unwrap();
        let parsed = <Json as ScalarType>::parse(value.clone()).unwrap();
        assert_eq!(parsed.0, json);
        assert_eq!(parsed.to_value(), value);
    }
}
