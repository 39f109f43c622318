use sea_orm::entity::prelude::*;

/// A bearer token for one space (VIEW or EDIT). Only the SHA-256 of the secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "space_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub space_id: Uuid,
    pub name: Option<String>,
    pub permission: String,
    pub prefix: String,
    pub token_hash: String,
    /// The user or agent that minted the token: it works only while this principal holds
    /// OWNER on the space.
    pub created_by: Uuid,
    /// `USER` or `AGENT`.
    pub created_by_kind: String,
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
