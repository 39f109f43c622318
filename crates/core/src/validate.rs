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

/// Invisible characters: format controls (zero-width space/joiners, bidi controls, word
/// joiner, BOM), soft hyphen, combining grapheme joiner, Hangul fillers, variation selectors,
/// tag characters. A name made only of these (and whitespace) looks blank.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// A name as stored and compared: NFC-normalised, with whitespace and invisible characters
/// trimmed from both ends; 1..=`max` characters. So `"Cafe\u{301}"` and `"Café"` are the same
/// name (the uniqueness rule sees one), and a name of zero-width characters only is blank.
pub fn name(field: &str, value: &str, max: usize) -> AppResult<String> {
    use unicode_normalization::UnicodeNormalization;
    no_nul(field, value)?;
    // Refuse absurd lengths before normalising; the bound is checked again on the result.
    if crate::limits::chars(field, value, max.saturating_mul(4)).is_err() {
        return Err(AppError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    let normalised: String = value.nfc().collect();
    let trimmed = normalised.trim_matches(is_invisible);
    if trimmed.is_empty() {
        return Err(AppError::validation(
            field,
            "must not be blank (whitespace and invisible characters do not count)",
        ));
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(AppError::validation(
            field,
            format!("must be at most {max} characters (got {len})"),
        ));
    }
    Ok(trimmed.to_string())
}

/// A glob or look-up text compared with stored names: NFC-normalised like [`name`].
pub fn nfc(value: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    value.nfc().collect()
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
    fn names_are_nfc_and_invisible_only_names_are_blank() {
        assert_eq!(name("name", "Cafe\u{301}", 10).unwrap(), "Caf\u{e9}");
        assert_eq!(
            name("name", "\u{200B}a\u{200D}b\u{FEFF} ", 10).unwrap(),
            "a\u{200D}b"
        );
        for blank in [
            "\u{200B}\u{200C}\u{200D}",
            "\u{FEFF}",
            " \u{2060} ",
            "\u{3164}",
        ] {
            let err = name("name", blank, 10).unwrap_err();
            assert_eq!(err.code(), "VALIDATION_ERROR", "{blank:?}");
        }
        assert!(
            name("name", &"e\u{301}".repeat(10), 10).is_ok(),
            "counted after NFC"
        );
        assert!(name("name", "abcdefghijk", 10).is_err());
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
