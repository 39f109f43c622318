//! DataLoaders for the directory: organizations, users, agents, and a user's roles/departments.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use entity::{agent, department, organization, role, user, user_department, user_role};

macro_rules! by_id_loader {
    ($name:ident, $entity:ident) => {
        pub struct $name(pub DatabaseConnection);

        impl Loader<Uuid> for $name {
            type Value = $entity::Model;
            type Error = Arc<DbErr>;

            async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
                Ok($entity::Entity::find()
                    .filter($entity::Column::Id.is_in(keys.iter().copied()))
                    .all(&self.0)
                    .await?
                    .into_iter()
                    .map(|m| (m.id, m))
                    .collect())
            }
        }
    };
}

by_id_loader!(OrganizationLoader, organization);
by_id_loader!(UserLoader, user);
by_id_loader!(AgentLoader, agent);

/// A user's roles, by user id, ordered by name.
pub struct UserRolesLoader(pub DatabaseConnection);

impl Loader<Uuid> for UserRolesLoader {
    type Value = Vec<role::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = user_role::Entity::find()
            .filter(user_role::Column::UserId.is_in(keys.iter().copied()))
            .find_also_related(role::Entity)
            .order_by_asc(role::Column::Name)
            .all(&self.0)
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
}

/// A user's departments, by user id, ordered by name.
pub struct UserDepartmentsLoader(pub DatabaseConnection);

impl Loader<Uuid> for UserDepartmentsLoader {
    type Value = Vec<department::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = user_department::Entity::find()
            .filter(user_department::Column::UserId.is_in(keys.iter().copied()))
            .find_also_related(department::Entity)
            .order_by_asc(department::Column::Name)
            .all(&self.0)
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
}
