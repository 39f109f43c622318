use sea_orm::entity::prelude::*;

/// A grant of VIEW or EDIT on a space. `subject_kind` is USER, ROLE, DEPARTMENT, AGENT, TENANT or
/// ALL_USERS; for ALL_USERS `subject_id` is the space's own organization.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "space_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub space_id: Uuid,
    pub subject_kind: String,
    pub subject_id: Uuid,
    pub permission: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
