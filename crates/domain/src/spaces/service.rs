//! The space slice's public surface, one file per phase: `input` (validation), `load` (one
//! space with the caller's permission), `write` (create, update, delete, restore, purge) and
//! `list` (filters, cursors, pages, counts).
pub use super::input::*;
pub use super::list::*;
pub use super::load::*;
pub use super::write::*;

#[cfg(test)]
mod tests {
    use super::*;
    use entity::space;

    /// `SpaceRow` reads columns by position: the entity's columns must be these, in this
    /// order (the order of the `space_model!` fields).
    #[test]
    fn space_rows_read_every_column_of_the_entity_in_order() {
        use sea_orm::{IdenStatic, Iterable};
        let columns: Vec<String> = space::Column::iter()
            .map(|c| c.as_str().to_string())
            .collect();
        assert_eq!(
            columns,
            [
                "id",
                "organization_id",
                "owner_id",
                "owner_kind",
                "name",
                "description",
                "access_mode",
                "embedder",
                "chunk_size",
                "chunk_overlap",
                "agent_id",
                "workspace_id",
                "vector_version",
                "memory_count",
                "memory_bytes",
                "duplicate_policy",
                "duplicate_threshold",
                "last_activity_at",
                "created_at",
                "updated_at",
                "deleted_at",
            ],
            "space::Model changed: update space_model! to its fields, in order"
        );
        assert_eq!(columns.len(), SPACE_COLUMNS);
    }

    #[test]
    fn chunking_overlap_must_be_below_size() {
        assert!(chunking(Chunking {
            size: 800,
            overlap: 100
        })
        .is_ok());
        assert!(chunking(Chunking {
            size: 800,
            overlap: 800
        })
        .is_err());
        assert!(chunking(Chunking {
            size: 10,
            overlap: 0
        })
        .is_err());
        assert!(chunking(Chunking {
            size: 800,
            overlap: -1
        })
        .is_err());
    }

    #[test]
    fn labels_reject_duplicates_and_bad_keys() {
        let ok = labels("labels", vec![("team".into(), "ml".into())]).unwrap();
        assert_eq!(ok, vec![("team".to_string(), "ml".to_string())]);
        let dup = labels(
            "labels",
            vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        );
        assert!(dup.is_err());
        assert!(labels("labels", vec![("".into(), "x".into())]).is_err());
        assert!(labels("labels", vec![("k".repeat(64), "x".into())]).is_err());
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        assert_eq!(
            tags("tags", vec![" a ".into(), "a".into(), "b".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert!(tags("tags", vec!["x".repeat(65)]).is_err());
        assert!(tags("tags", (0..51).map(|i| i.to_string()).collect()).is_err());
    }
}
