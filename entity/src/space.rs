use sea_orm::entity::prelude::*;

/// `owner_kind` is `USER` or `AGENT`; `access_mode` is `PRIVATE`, `ORGANIZATION` or `PUBLIC`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "spaces")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub owner_id: Uuid,
    pub owner_kind: String,
    pub name: String,
    pub description: Option<String>,
    pub access_mode: String,
    pub embedder: String,
    pub chunk_size: i32,
    pub chunk_overlap: i32,
    /// The agent assigned to work in this space (holds EDIT).
    pub agent_id: Option<Uuid>,
    /// The workspace the space belongs to, if any.
    pub workspace_id: Option<Uuid>,
    /// Bumped by every memory write; see `memories.index_seq`.
    pub vector_version: i64,
    /// Memories of the space that are not superseded, expired-but-unswept ones included; kept
    /// by every memory write in its own transaction.
    pub memory_count: i64,
    /// Sum of `content_bytes` over the memories `memory_count` counts.
    pub memory_bytes: i64,
    /// ALLOW, REJECT, SUPERSEDE or MERGE.
    pub duplicate_policy: String,
    /// Cosine at or above which two memories are duplicates.
    pub duplicate_threshold: f64,
    pub last_activity_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
