use sea_orm::entity::prelude::*;

/// An API key of a user or an agent. Only the SHA-256 of the secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub user_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    /// `API` (createApiKey), `CLI` (`memspace admin …`) or `BOOTSTRAP` (the admin key of the
    /// first start, replaced when `MEMSPACE_ADMIN_KEY` changes).
    pub origin: String,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
