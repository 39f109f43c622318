//! Name globs (`Research*`, `*kb?`) as case-sensitive SQL conditions on either backend.
use sea_orm::sea_query::extension::sqlite::SqliteExpr;
use sea_orm::sea_query::{Condition, Expr, LikeExpr};
use sea_orm::{ColumnTrait, DatabaseBackend};

/// Translates a user glob (`*` any run, `?` one character; everything else literal) into a
/// case-sensitive SQL condition on `column` for the backend at hand.
pub fn condition<C: ColumnTrait>(backend: DatabaseBackend, column: C, glob: &str) -> Condition {
    let expr = match backend {
        DatabaseBackend::Sqlite => {
            // SQLite's GLOB is case-sensitive and already speaks `*` and `?`; only `[` is special.
            Expr::col(column).glob(glob.replace('[', "[[]"))
        }
        _ => Expr::col(column).like(LikeExpr::new(glob_to_like(glob)).escape('\\')),
    };
    Condition::all().add(expr)
}

fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_escaped_like_patterns() {
        assert_eq!(glob_to_like("Research*"), "Research%");
        assert_eq!(glob_to_like("*kb?"), "%kb_");
        assert_eq!(glob_to_like("100%_done\\"), "100\\%\\_done\\\\");
    }
}
