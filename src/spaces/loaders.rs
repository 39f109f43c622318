//! DataLoaders for a space's labels and tags, so a page of spaces costs one query for each.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use entity::{space_label, space_tag};

/// Labels by space id, ordered by key.
pub struct SpaceLabelsLoader(pub DatabaseConnection);

impl Loader<Uuid> for SpaceLabelsLoader {
    type Value = Vec<(String, String)>;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = space_label::Entity::find()
            .filter(space_label::Column::SpaceId.is_in(keys.iter().copied()))
            .order_by_asc(space_label::Column::Key)
            .all(&self.0)
            .await?;
        let mut out: HashMap<Uuid, Self::Value> = HashMap::new();
        for l in rows {
            out.entry(l.space_id).or_default().push((l.key, l.value));
        }
        Ok(out)
    }
}

/// Tags by space id, in alphabetical order.
pub struct SpaceTagsLoader(pub DatabaseConnection);

impl Loader<Uuid> for SpaceTagsLoader {
    type Value = Vec<String>;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = space_tag::Entity::find()
            .filter(space_tag::Column::SpaceId.is_in(keys.iter().copied()))
            .order_by_asc(space_tag::Column::Tag)
            .all(&self.0)
            .await?;
        let mut out: HashMap<Uuid, Self::Value> = HashMap::new();
        for t in rows {
            out.entry(t.space_id).or_default().push(t.tag);
        }
        Ok(out)
    }
}
