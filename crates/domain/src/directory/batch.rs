//! Batch reads for the directory (the GraphQL DataLoaders call these): organizations, users, agents, and a user's roles/departments.
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use std::collections::HashMap;
use uuid::Uuid;

use entity::{agent, department, organization, role, user, user_department, user_role};

macro_rules! by_id {
    ($name:ident, $entity:ident) => {
        pub async fn $name(
            db: &impl ConnectionTrait,
            keys: &[Uuid],
        ) -> Result<HashMap<Uuid, $entity::Model>, DbErr> {
            Ok($entity::Entity::find()
                .filter($entity::Column::Id.is_in(keys.iter().copied()))
                .all(db)
                .await?
                .into_iter()
                .map(|m| (m.id, m))
                .collect())
        }
    };
}

by_id!(organizations_by_id, organization);
by_id!(users_by_id, user);
by_id!(agents_by_id, agent);

/// A user's roles, by user id, ordered by name.
pub async fn roles_by_user(
    db: &impl ConnectionTrait,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, Vec<role::Model>>, DbErr> {
    let rows = user_role::Entity::find()
        .filter(user_role::Column::UserId.is_in(keys.iter().copied()))
        .find_also_related(role::Entity)
        .order_by_asc(role::Column::Name)
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<role::Model>> =
        keys.iter().map(|k| (*k, Default::default())).collect();
    for (link, role) in rows {
        if let Some(role) = role {
            out.entry(link.user_id).or_default().push(role);
        }
    }
    Ok(out)
}

/// A user's departments, by user id, ordered by name.
pub async fn departments_by_user(
    db: &impl ConnectionTrait,
    keys: &[Uuid],
) -> Result<HashMap<Uuid, Vec<department::Model>>, DbErr> {
    let rows = user_department::Entity::find()
        .filter(user_department::Column::UserId.is_in(keys.iter().copied()))
        .find_also_related(department::Entity)
        .order_by_asc(department::Column::Name)
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<department::Model>> =
        keys.iter().map(|k| (*k, Default::default())).collect();
    for (link, department) in rows {
        if let Some(department) = department {
            out.entry(link.user_id).or_default().push(department);
        }
    }
    Ok(out)
}
