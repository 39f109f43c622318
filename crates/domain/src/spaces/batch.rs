//! Batch reads of spaces' labels, tags and access, so a page of spaces costs one query for each
//! (the GraphQL DataLoaders call these).
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use std::collections::HashMap;
use uuid::Uuid;

use super::load::SpaceAccess;
use entity::{space_label, space_tag};
use memspace_core::access;
use memspace_core::principal::Principal;

/// Labels by space id, ordered by key.
pub async fn labels_by_space(
    db: &impl ConnectionTrait,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(String, String)>>, DbErr> {
    let rows = space_label::Entity::find()
        .filter(space_label::Column::SpaceId.is_in(keys.iter().copied()))
        .order_by_asc(space_label::Column::Key)
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<(String, String)>> =
        keys.iter().map(|k| (*k, Default::default())).collect();
    for l in rows {
        out.entry(l.space_id).or_default().push((l.key, l.value));
    }
    Ok(out)
}

/// Tags by space id, in alphabetical order.
pub async fn tags_by_space(
    db: &impl ConnectionTrait,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, Vec<String>>, DbErr> {
    let rows = space_tag::Entity::find()
        .filter(space_tag::Column::SpaceId.is_in(keys.iter().copied()))
        .order_by_asc(space_tag::Column::Tag)
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<String>> =
        keys.iter().map(|k| (*k, Default::default())).collect();
    for t in rows {
        out.entry(t.space_id).or_default().push(t.tag);
    }
    Ok(out)
}

/// Spaces with their grants and the request principal's permission, by id (for `Memory.space`).
/// Invisible spaces are absent.
pub async fn access_by_id(
    db: &impl ConnectionTrait,
    principal: Option<&Principal>,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, SpaceAccess>, DbErr> {
    use entity::{space, space_grant};
    let Some(principal) = principal else {
        return Ok(HashMap::new());
    };
    let spaces = space::Entity::find()
        .filter(space::Column::Id.is_in(keys.iter().copied()))
        .all(db)
        .await?;
    let mut grants: HashMap<Uuid, Vec<space_grant::Model>> = HashMap::new();
    for g in space_grant::Entity::find()
        .filter(space_grant::Column::SpaceId.is_in(keys.iter().copied()))
        .order_by_asc(space_grant::Column::CreatedAt)
        .all(db)
        .await?
    {
        grants.entry(g.space_id).or_default().push(g);
    }
    let mut out = HashMap::new();
    for space in spaces {
        let mine = grants.remove(&space.id).unwrap_or_default();
        let permission = access::permission(principal, &space, &mine);
        if permission >= access::Permission::View {
            out.insert(
                space.id,
                SpaceAccess {
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
