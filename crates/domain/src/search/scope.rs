//! Scope: the spaces a search runs over, each readable by the principal and not deleted.
use sea_orm::sea_query::SelectStatement;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait};
use uuid::Uuid;

use crate::spaces::service as spaces;
use entity::{space, space_grant, space_link};
use memspace_core::access::{self, Permission};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;
use memspace_engine::vector_index::ScopeEntry;

/// What a search needs of a space in scope (not its whole row).
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeSpace {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub embedder: String,
    pub vector_version: i64,
}

/// The spaces in scope, and how the keyword query names them: the visible-spaces condition
/// as a subquery when no `spaceIds` were given (the database evaluates it where it filters,
/// no id list), the ids otherwise.
pub struct Scope {
    pub spaces: Vec<ScopeSpace>,
    pub visible: Option<SelectStatement>,
}

impl Scope {
    pub fn ids(&self) -> Vec<Uuid> {
        self.spaces.iter().map(|s| s.id).collect()
    }
}

impl ScopeSpace {
    /// The space as the indexes see it: its id and the version the database holds.
    pub fn entry(&self) -> ScopeEntry {
        ScopeEntry {
            space_id: self.id,
            version: self.vector_version,
        }
    }
}

type Row = (Uuid, Uuid, String, i64);

fn columns<Q: QuerySelect>(q: Q) -> Q {
    q.select_only()
        .column(space::Column::Id)
        .column(space::Column::OrganizationId)
        .column(space::Column::Embedder)
        .column(space::Column::VectorVersion)
}

fn from_row((id, organization_id, embedder, vector_version): Row) -> ScopeSpace {
    ScopeSpace {
        id,
        organization_id,
        embedder,
        vector_version,
    }
}

fn from_model(s: &space::Model) -> ScopeSpace {
    ScopeSpace {
        id: s.id,
        organization_id: s.organization_id,
        embedder: s.embedder.clone(),
        vector_version: s.vector_version,
    }
}

/// Resolves the scope: with no `space_ids`, one statement over the visible-spaces condition;
/// otherwise each named space is checked (NOT_FOUND when unreadable or deleted) and its
/// readable linked spaces join.
pub async fn resolve(
    db: &impl ConnectionTrait,
    principal: &Principal,
    space_ids: Option<&[Uuid]>,
) -> AppResult<Scope> {
    let Some(ids) = space_ids else {
        let visible = space::Entity::find()
            .filter(access::visible_spaces(principal))
            .filter(space::Column::DeletedAt.is_null());
        let spaces: Vec<Row> = columns(visible.clone()).into_tuple().all(db).await?;
        let mut subquery = visible.into_query();
        subquery
            .clear_selects()
            .column((space::Entity, space::Column::Id));
        return Ok(Scope {
            spaces: spaces.into_iter().map(from_row).collect(),
            visible: Some(subquery),
        });
    };
    let mut chosen: Vec<ScopeSpace> = Vec::new();
    for id in ids {
        let a = spaces::load(db, principal, *id).await?;
        if a.space.deleted_at.is_some() {
            return Err(AppError::not_found("space", id));
        }
        if !chosen.iter().any(|s| s.id == a.space.id) {
            chosen.push(from_model(&a.space));
        }
    }
    // Linked spaces join the search when the caller can read them.
    let links: Vec<Uuid> = space_link::Entity::find()
        .select_only()
        .column(space_link::Column::LinkedSpaceId)
        .filter(space_link::Column::SpaceId.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .filter(|id: &Uuid| !chosen.iter().any(|s| s.id == *id))
        .collect();
    if !links.is_empty() {
        let linked = space::Entity::find()
            .filter(space::Column::Id.is_in(links.clone()))
            .filter(space::Column::DeletedAt.is_null())
            .all(db)
            .await?;
        let grants = space_grant::Entity::find()
            .filter(space_grant::Column::SpaceId.is_in(links))
            .all(db)
            .await?;
        for s in linked {
            if access::permission(principal, &s, &grants) >= Permission::View
                && !chosen.iter().any(|c| c.id == s.id)
            {
                chosen.push(from_model(&s));
            }
        }
    }
    Ok(Scope {
        spaces: chosen,
        visible: None,
    })
}
