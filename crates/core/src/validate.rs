//! Small validation rules shared by the slices. Each returns VALIDATION_ERROR naming the field.
use crate::error::{AppError, AppResult};

/// Rejects text holding a NUL character: PostgreSQL cannot store it, and no client means it.
pub fn no_nul(field: &str, value: &str) -> AppResult<()> {
    if value.contains('\0') {
        return Err(AppError::validation(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(())
}

/// Trims `value` and checks its length in characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> AppResult<String> {
    no_nul(field, value)?;
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(if min == 1 {
            AppError::validation(field, "must not be blank")
        } else {
            AppError::validation(field, format!("must be at least {min} characters"))
        });
    }
    if len > max {
        return Err(AppError::validation(
            field,
            format!("must be at most {max} characters (got {len})"),
        ));
    }
    Ok(trimmed.to_string())
}

/// A handle: 1–63 characters of ASCII letters, digits, `-`, `_` and `.`, starting with a letter
/// or digit.
pub fn handle(field: &str, value: &str) -> AppResult<String> {
    let v = text(field, value, 1, 63)?;
    let ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(AppError::validation(
            field,
            "must start with a letter or digit and contain only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(v)
}

/// A plausible e-mail address: one `@` with text on both sides, no whitespace, ≤ 320 characters.
pub fn email(field: &str, value: &str) -> AppResult<String> {
    let v = text(field, value, 1, 320)?;
    let ok = match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !v.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !ok {
        return Err(AppError::validation(field, "must be an e-mail address"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(text("name", "  a  ", 1, 3).unwrap(), "a");
        assert_eq!(
            text("name", "   ", 1, 3).unwrap_err().code(),
            "VALIDATION_ERROR"
        );
        assert!(text("name", "abcd", 1, 3).is_err());
        assert!(
            text("name", "äöü", 1, 3).is_ok(),
            "length counts characters, not bytes"
        );
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let err = text("name", "a\0b", 1, 10).unwrap_err();
        assert_eq!(err.code(), "VALIDATION_ERROR");
        assert!(err.message().starts_with("name:"));
    }

    #[test]
    fn handles_and_emails() {
        assert!(handle("handle", "research-bot_1.v2").is_ok());
        assert!(handle("handle", "-bad").is_err());
        assert!(handle("handle", "has space").is_err());
        assert!(email("email", "a@b.c").is_ok());
        assert!(email("email", "nope").is_err());
        assert!(email("email", "a@b@c").is_err());
    }
}
