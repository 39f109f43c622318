//! Names stored before input names were normalised (issue 17, item 14) are normalised now, as
//! `validate::name` does on input: NFC, then whitespace and invisible characters trimmed from
//! both ends. Every column that path writes: space, workspace, role, department, organization,
//! user, agent and API key names.
//!
//! - Rows are read in batches of [`BATCH`] in id order; only a name that changes is written.
//! - Where the name is unique in a scope (spaces per owner among live spaces; workspaces, roles
//!   and departments per organization), a normalised name that another row already holds is
//!   suffixed ` (2)`, ` (3)`, … so both rows are kept and stay apart; each case is logged. The
//!   row that already held the normalised name keeps it.
//! - A name that is blank once normalised (only invisible characters) becomes `unnamed`
//!   (suffixed likewise where it must be unique), and is logged.
//!
//! The rule is copied here, not imported from `memspace-core`: migrations sit below every crate,
//! and a landed migration must keep doing what it did when the rule later changes.
//! Not undone by `down`: the original spellings are not kept.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::prelude::{DateTimeUtc, Uuid};
use sea_orm_migration::sea_orm::{ConnectionTrait, QueryResult};
use unicode_normalization::UnicodeNormalization;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Rows read per statement.
const BATCH: u64 = 500;

/// What a name that is blank once normalised becomes.
const BLANK_NAME: &str = "unnamed";

/// One table whose `name` column the input path normalises.
struct Target {
    table: &'static str,
    /// The columns that, with `name`, form a unique index (empty: names need not be unique).
    scope: &'static [&'static str],
    /// The unique index covers live rows only (`deleted_at IS NULL`).
    live_only: bool,
    max_chars: usize,
}

const TARGETS: &[Target] = &[
    Target {
        table: "spaces",
        scope: &["owner_id"],
        live_only: true,
        max_chars: 255,
    },
    Target {
        table: "workspaces",
        scope: &["organization_id"],
        live_only: false,
        max_chars: 100,
    },
    Target {
        table: "roles",
        scope: &["organization_id"],
        live_only: false,
        max_chars: 255,
    },
    Target {
        table: "departments",
        scope: &["organization_id"],
        live_only: false,
        max_chars: 255,
    },
    Target {
        table: "organizations",
        scope: &[],
        live_only: false,
        max_chars: 255,
    },
    Target {
        table: "users",
        scope: &[],
        live_only: false,
        max_chars: 255,
    },
    Target {
        table: "agents",
        scope: &[],
        live_only: false,
        max_chars: 255,
    },
    Target {
        table: "api_keys",
        scope: &[],
        live_only: false,
        max_chars: 255,
    },
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for target in TARGETS {
            let changed = normalise_table(db, target).await?;
            if changed > 0 {
                tracing::info!(table = target.table, changed, "names NFC-normalised");
            }
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

/// A stored row's key, scope and name.
struct Row {
    id: Uuid,
    scope: Vec<Uuid>,
    live: bool,
    name: String,
}

fn row_of(target: &Target, row: &QueryResult) -> Result<Row, DbErr> {
    let scope = target
        .scope
        .iter()
        .map(|c| row.try_get::<Uuid>("", c))
        .collect::<Result<Vec<_>, _>>()?;
    let live = if target.live_only {
        row.try_get::<Option<DateTimeUtc>>("", "deleted_at")?
            .is_none()
    } else {
        true
    };
    Ok(Row {
        id: row.try_get("", "id")?,
        scope,
        live,
        name: row.try_get("", "name")?,
    })
}

/// Normalises every name of `target`'s table; returns how many changed.
async fn normalise_table<C: ConnectionTrait>(db: &C, target: &Target) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut after: Option<Uuid> = None;
    let mut changed = 0;
    loop {
        let mut select = Query::select();
        select
            .column(Alias::new("id"))
            .column(Alias::new("name"))
            .from(Alias::new(target.table))
            .order_by(Alias::new("id"), Order::Asc)
            .limit(BATCH);
        for c in target.scope {
            select.column(Alias::new(*c));
        }
        if target.live_only {
            select.column(Alias::new("deleted_at"));
        }
        if let Some(last) = after {
            select.and_where(Expr::col(Alias::new("id")).gt(last));
        }
        let rows = db.query_all(backend.build(&select)).await?;
        let Some(last) = rows.last() else {
            return Ok(changed);
        };
        after = Some(last.try_get("", "id")?);
        let full = rows.len() as u64 == BATCH;
        for row in &rows {
            let row = row_of(target, row)?;
            let normalised = normalise(&row.name, target.max_chars);
            if normalised == row.name {
                continue;
            }
            let name = if target.scope.is_empty() || !row.live {
                normalised
            } else {
                free_name(db, target, &row, &normalised).await?
            };
            if normalised_blank(&row.name) {
                tracing::warn!(
                    table = target.table,
                    id = %row.id,
                    name = %name,
                    "a name made only of invisible characters was renamed"
                );
            }
            let mut update = Query::update();
            update
                .table(Alias::new(target.table))
                .value(Alias::new("name"), name)
                .and_where(Expr::col(Alias::new("id")).eq(row.id));
            db.execute(backend.build(&update)).await?;
            changed += 1;
        }
        if !full {
            return Ok(changed);
        }
    }
}

/// `wanted`, or `wanted (2)`, `wanted (3)`, … : the first that no other row of the same scope
/// holds under the unique index.
async fn free_name<C: ConnectionTrait>(
    db: &C,
    target: &Target,
    row: &Row,
    wanted: &str,
) -> Result<String, DbErr> {
    let mut candidate = wanted.to_string();
    let mut n = 2u64;
    while taken(db, target, row, &candidate).await? {
        candidate = suffixed(wanted, n, target.max_chars);
        n += 1;
    }
    if candidate != wanted {
        tracing::warn!(
            table = target.table,
            id = %row.id,
            wanted = %wanted,
            stored = %candidate,
            "two names became equal once NFC-normalised; this one was suffixed"
        );
    }
    Ok(candidate)
}

async fn taken<C: ConnectionTrait>(
    db: &C,
    target: &Target,
    row: &Row,
    name: &str,
) -> Result<bool, DbErr> {
    let mut select = Query::select();
    select
        .column(Alias::new("id"))
        .from(Alias::new(target.table))
        .and_where(Expr::col(Alias::new("name")).eq(name))
        .and_where(Expr::col(Alias::new("id")).ne(row.id))
        .limit(1);
    for (c, v) in target.scope.iter().zip(&row.scope) {
        select.and_where(Expr::col(Alias::new(*c)).eq(*v));
    }
    if target.live_only {
        select.and_where(Expr::col(Alias::new("deleted_at")).is_null());
    }
    let backend = db.get_database_backend();
    Ok(db.query_one(backend.build(&select)).await?.is_some())
}

/// `base (n)` within `max` characters (the base is cut to make room).
fn suffixed(base: &str, n: u64, max: usize) -> String {
    let suffix = format!(" ({n})");
    let room = max.saturating_sub(suffix.chars().count());
    let cut: String = base.chars().take(room).collect();
    format!("{}{suffix}", cut.trim_end_matches(is_invisible))
}

/// The name as the input path stores it (blank ones become [`BLANK_NAME`]), cut to `max`.
fn normalise(name: &str, max: usize) -> String {
    let nfc: String = name.nfc().collect();
    let trimmed = nfc.trim_matches(is_invisible);
    if trimmed.is_empty() {
        return BLANK_NAME.to_string();
    }
    let cut: String = trimmed.chars().take(max).collect();
    cut.trim_end_matches(is_invisible).to_string()
}

fn normalised_blank(name: &str) -> bool {
    name.nfc().all(is_invisible)
}

/// As `memspace_core::validate::is_invisible` was when this migration landed.
fn is_invisible(c: char) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_the_input_path_does() {
        assert_eq!(normalise("Cafe\u{301}", 255), "Café");
        assert_eq!(normalise("\u{200B} Team \u{FEFF}", 255), "Team");
        assert_eq!(normalise("\u{200B}\u{200D}", 255), BLANK_NAME);
        assert!(normalised_blank("\u{200B}\u{200D} "));
        assert_eq!(normalise("plain", 255), "plain");
    }

    #[test]
    fn a_suffix_fits_within_the_column() {
        assert_eq!(suffixed("Café", 2, 255), "Café (2)");
        let long = "x".repeat(100);
        let s = suffixed(&long, 12, 100);
        assert_eq!(s.chars().count(), 100);
        assert!(s.ends_with(" (12)"));
    }
}
