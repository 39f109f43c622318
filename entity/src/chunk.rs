use sea_orm::entity::prelude::*;

/// A window of a memory's text and its embedding (little-endian f32s).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chunks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub memory_id: Uuid,
    pub space_id: Uuid,
    pub ord: i32,
    pub text: String,
    pub embedding: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
