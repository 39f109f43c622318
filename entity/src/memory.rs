use sea_orm::entity::prelude::*;

/// A piece of text in a space. `metadata` is a JSON object serialised as text; `author_kind` is
/// USER, AGENT or SPACE_TOKEN. On PostgreSQL the table also has a generated `content_tsv`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "memories")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub space_id: Uuid,
    pub content: String,
    pub content_bytes: i32,
    pub metadata: Option<String>,
    pub importance: i32,
    pub confidence: f64,
    pub recall_count: i32,
    pub author_kind: String,
    pub author_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub thread_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    /// The space's `vector_version` of the write that last set this memory's vectors.
    pub index_seq: i64,
    /// Goes up by one on every change (optimistic concurrency).
    pub version: i32,
    /// SHA-256 of the normalised content (lower case, single spaces).
    pub content_hash: String,
    /// The newer memory that replaced this one (SUPERSEDE policy).
    pub superseded_by: Option<Uuid>,
    /// The older memory this one replaced.
    pub supersedes: Option<Uuid>,
    /// The id this memory had in the system it was imported from.
    pub external_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::space::Entity",
        from = "Column::SpaceId",
        to = "super::space::Column::Id",
        on_delete = "Cascade"
    )]
    Space,
}

impl Related<super::space::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Space.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
