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
        let mut out: HashMap<Uuid, Self::Value> =
            keys.iter().map(|k| (*k, Default::default())).collect();
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
        let mut out: HashMap<Uuid, Self::Value> =
            keys.iter().map(|k| (*k, Default::default())).collect();
        for t in rows {
            out.entry(t.space_id).or_default().push(t.tag);
        }
        Ok(out)
    }
}

/// Spaces with their grants and the request principal's permission, by id (for `Memory.space`).
/// Invisible spaces are absent.
pub struct SpaceAccessLoader {
    pub db: DatabaseConnection,
    pub principal: Option<crate::auth::Principal>,
}

impl Loader<Uuid> for SpaceAccessLoader {
    type Value = crate::spaces::service::SpaceAccess;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        use entity::{space, space_grant};
        let Some(principal) = &self.principal else {
            return Ok(HashMap::new());
        };
        let spaces = space::Entity::find()
            .filter(space::Column::Id.is_in(keys.iter().copied()))
            .all(&self.db)
            .await?;
        let mut grants: HashMap<Uuid, Vec<space_grant::Model>> = HashMap::new();
        for g in space_grant::Entity::find()
            .filter(space_grant::Column::SpaceId.is_in(keys.iter().copied()))
            .order_by_asc(space_grant::Column::CreatedAt)
            .all(&self.db)
            .await?
        {
            grants.entry(g.space_id).or_default().push(g);
        }
        let mut out = HashMap::new();
        for space in spaces {
            let mine = grants.remove(&space.id).unwrap_or_default();
            let permission = crate::access::permission(principal, &space, &mine);
            if permission >= crate::access::Permission::View {
                out.insert(
                    space.id,
                    crate::spaces::service::SpaceAccess {
                        space,
                        grants: mine,
                        permission,
                        stats: None,
                    },
                );
            }
        }
        Ok(out)
    }
}
