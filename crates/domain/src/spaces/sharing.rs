//! Grants: who besides the owner may see or edit a space; the assigned agent.
use crate::db::Db;
use std::collections::BTreeMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
};
use uuid::Uuid;

use super::load::{self as service, SpaceAccess};
use crate::audit::{self as audit, Event};
use entity::{agent, department, organization, role, space, space_grant, user};
use memspace_core::access::{Permission, SubjectKind};
use memspace_core::clock::now;
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::Principal;

pub use memspace_core::limits::MAX_AGENT_GRANTS;

/// One requested grant as the client sent it; ids are checked by [`resolve`].
#[derive(Clone, Debug)]
pub struct GrantSpec {
    /// The input field it came from, for error messages (`grants`, `editableByUsers`, …).
    pub field: &'static str,
    pub kind: SubjectKind,
    /// Required except for ALL_USERS.
    pub subject_id: Option<String>,
    pub permission: Permission,
}

/// The seeds' flat sharing lists, accepted by createSpace and updateSpace for convenience.
#[derive(Clone, Debug, Default)]
pub struct GrantLists {
    pub grants: Option<Vec<GrantSpec>>,
    pub access_users: Option<Vec<String>>,
    pub access_departments: Option<Vec<String>>,
    pub visible_to_roles: Option<Vec<String>>,
    /// `"*"` means every user of the organization.
    pub editable_by_users: Option<Vec<String>>,
    pub editable_by_roles: Option<Vec<String>>,
    pub allowed_agent_ids: Option<Vec<String>>,
    pub allowed_tenant_ids: Option<Vec<String>>,
}

impl GrantLists {
    pub fn is_given(&self) -> bool {
        self.grants.is_some()
            || self.access_users.is_some()
            || self.access_departments.is_some()
            || self.visible_to_roles.is_some()
            || self.editable_by_users.is_some()
            || self.editable_by_roles.is_some()
            || self.allowed_agent_ids.is_some()
            || self.allowed_tenant_ids.is_some()
    }

    /// The (subject kind, permission) slots that the given flat lists replace in updateSpace,
    /// or `None` when `grants` is given (it replaces every grant of the space). Each flat list
    /// owns its slot: `accessUsers` the users' (and all users') VIEW grants, `editableByRoles`
    /// the roles' EDIT grants, and so on; grants in slots no given list owns are kept.
    pub fn replaced_slots(&self) -> Option<Vec<(SubjectKind, Permission)>> {
        if self.grants.is_some() {
            return None;
        }
        use Permission::{Edit, View};
        use SubjectKind::*;
        let lists: [(bool, &[(SubjectKind, Permission)]); 7] = [
            (
                self.access_users.is_some(),
                &[(User, View), (AllUsers, View)],
            ),
            (self.access_departments.is_some(), &[(Department, View)]),
            (self.visible_to_roles.is_some(), &[(Role, View)]),
            (
                self.editable_by_users.is_some(),
                &[(User, Edit), (AllUsers, Edit)],
            ),
            (self.editable_by_roles.is_some(), &[(Role, Edit)]),
            (self.allowed_agent_ids.is_some(), &[(Agent, Edit)]),
            (self.allowed_tenant_ids.is_some(), &[(Tenant, View)]),
        ];
        Some(
            lists
                .iter()
                .filter(|(given, _)| *given)
                .flat_map(|(_, slots)| slots.iter().copied())
                .collect(),
        )
    }

    /// Every list's length against [`MAX_GRANTS_PER_LIST`] and every id's against
    /// [`MAX_ID_CHARS`], naming the list (before any SQL).
    pub fn check_lengths(&self) -> AppResult<()> {
        use memspace_core::limits::{strings, MAX_GRANTS_PER_LIST as MAX, MAX_ID_CHARS};
        if let Some(grants) = &self.grants {
            check_specs("grants", grants)?;
        }
        let lists = [
            ("accessUsers", &self.access_users),
            ("accessDepartments", &self.access_departments),
            ("visibleToRoles", &self.visible_to_roles),
            ("editableByUsers", &self.editable_by_users),
            ("editableByRoles", &self.editable_by_roles),
            ("allowedAgentIds", &self.allowed_agent_ids),
            ("allowedTenantIds", &self.allowed_tenant_ids),
        ];
        for (field, ids) in lists {
            if let Some(ids) = ids {
                strings(field, ids, MAX, MAX_ID_CHARS)?;
            }
        }
        Ok(())
    }

    /// Flattens every list into grant specs.
    pub fn specs(self) -> Vec<GrantSpec> {
        let mut out = self.grants.unwrap_or_default();
        let mut add = |field: &'static str, ids: Option<Vec<String>>, kind, permission| {
            for id in ids.unwrap_or_default() {
                let (kind, subject_id) = if kind == SubjectKind::User && id.trim() == "*" {
                    (SubjectKind::AllUsers, None)
                } else {
                    (kind, Some(id))
                };
                out.push(GrantSpec {
                    field,
                    kind,
                    subject_id,
                    permission,
                });
            }
        };
        use Permission::{Edit, View};
        use SubjectKind::*;
        add("accessUsers", self.access_users, User, View);
        add(
            "accessDepartments",
            self.access_departments,
            Department,
            View,
        );
        add("visibleToRoles", self.visible_to_roles, Role, View);
        add("editableByUsers", self.editable_by_users, User, Edit);
        add("editableByRoles", self.editable_by_roles, Role, Edit);
        add("allowedAgentIds", self.allowed_agent_ids, Agent, Edit);
        add("allowedTenantIds", self.allowed_tenant_ids, Tenant, View);
        out
    }
}

/// shareSpace/unshareSpace/`grants`: at most [`MAX_GRANTS_PER_LIST`] specs, ids of at most
/// [`MAX_ID_CHARS`].
///
/// [`MAX_GRANTS_PER_LIST`]: memspace_core::limits::MAX_GRANTS_PER_LIST
/// [`MAX_ID_CHARS`]: memspace_core::limits::MAX_ID_CHARS
pub fn check_specs(field: &str, specs: &[GrantSpec]) -> AppResult<()> {
    use memspace_core::limits::{chars, list, MAX_GRANTS_PER_LIST, MAX_ID_CHARS};
    list(field, specs.len(), MAX_GRANTS_PER_LIST)?;
    for (i, s) in specs.iter().enumerate() {
        if let Some(id) = &s.subject_id {
            chars(&format!("{field}[{i}].subjectId"), id, MAX_ID_CHARS)?;
        }
    }
    Ok(())
}

/// A validated grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub kind: SubjectKind,
    pub subject_id: Uuid,
    pub permission: Permission,
}

/// Ids that name no subject of the organization, and the first input field that held one.
#[derive(Default)]
struct Invalid {
    first_field: Option<&'static str>,
    ids: Vec<String>,
}

impl Invalid {
    fn add(&mut self, field: &'static str, id: String) {
        self.first_field.get_or_insert(field);
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }

    fn into_result(self) -> AppResult<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        Err(AppError::Validation {
            field: self.first_field.unwrap_or("grants").to_string(),
            message: format!("unknown ids for this organization: {}", self.ids.join(", ")),
            details: Some(serde_json::json!({ "invalidIds": self.ids })),
        })
    }
}

/// A grant spec with its subject id parsed (the organization's id for all-users grants).
type Parsed = (&'static str, SubjectKind, Uuid, Permission);

/// Checks every subject against the space's organization and reports *all* bad ids in one
/// VALIDATION_ERROR (`field` = the first offending input, `invalidIds` = every bad id).
/// Duplicate subjects collapse to the highest permission.
pub async fn resolve(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    specs: Vec<GrantSpec>,
    require_permission: bool,
) -> AppResult<Vec<Grant>> {
    let mut invalid = Invalid::default();
    let parsed = parse_specs(organization_id, specs, require_permission, &mut invalid)?;
    let known = known_subjects(db, organization_id, &parsed).await?;
    let mut merged: BTreeMap<(SubjectKind, Uuid), Permission> = BTreeMap::new();
    for (field, kind, id, permission) in parsed {
        let exists =
            kind == SubjectKind::AllUsers || known.get(&kind).is_some_and(|ids| ids.contains(&id));
        if !exists {
            invalid.add(field, id.to_string());
            continue;
        }
        let entry = merged.entry((kind, id)).or_insert(permission);
        *entry = (*entry).max(permission);
    }
    invalid.into_result()?;
    Ok(merged
        .into_iter()
        .map(|((kind, subject_id), permission)| Grant {
            kind,
            subject_id,
            permission,
        })
        .collect())
}

/// Permissions and subject ids checked for form; ids that are no UUID go to `invalid`.
fn parse_specs(
    organization_id: Uuid,
    specs: Vec<GrantSpec>,
    require_permission: bool,
    invalid: &mut Invalid,
) -> AppResult<Vec<Parsed>> {
    let mut parsed = Vec::with_capacity(specs.len());
    for spec in specs {
        if require_permission && !matches!(spec.permission, Permission::View | Permission::Edit) {
            return Err(AppError::validation(
                format!("{}.permission", spec.field),
                "a grant gives VIEW or EDIT",
            ));
        }
        if spec.kind == SubjectKind::AllUsers {
            parsed.push((spec.field, spec.kind, organization_id, spec.permission));
            continue;
        }
        let Some(raw) = spec.subject_id else {
            return Err(AppError::validation(
                format!("{}.subjectId", spec.field),
                format!("is required for {} grants", spec.kind.as_str()),
            ));
        };
        match Uuid::parse_str(raw.trim()) {
            Ok(id) => parsed.push((spec.field, spec.kind, id, spec.permission)),
            Err(_) => invalid.add(spec.field, raw),
        }
    }
    Ok(parsed)
}

/// The subject ids that exist, by kind: one query per kind (users, roles, departments and
/// agents of the organization; tenants are other organizations).
async fn known_subjects(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    parsed: &[Parsed],
) -> AppResult<BTreeMap<SubjectKind, Vec<Uuid>>> {
    let ids_of = |k: SubjectKind| -> Vec<Uuid> {
        parsed
            .iter()
            .filter(|(_, kind, _, _)| *kind == k)
            .map(|(_, _, id, _)| *id)
            .collect()
    };
    let mut known: BTreeMap<SubjectKind, Vec<Uuid>> = BTreeMap::new();
    // The ids among `ids` that are rows of `$entity` in the space's organization.
    macro_rules! in_org {
        ($entity:ident, $ids:expr) => {
            $entity::Entity::find()
                .select_only()
                .column($entity::Column::Id)
                .filter($entity::Column::Id.is_in($ids))
                .filter($entity::Column::OrganizationId.eq(organization_id))
                .into_tuple::<Uuid>()
                .all(db)
                .await?
        };
    }
    for kind in [
        SubjectKind::User,
        SubjectKind::Role,
        SubjectKind::Department,
        SubjectKind::Agent,
    ] {
        let ids = ids_of(kind);
        if ids.is_empty() {
            continue;
        }
        let found = match kind {
            SubjectKind::User => in_org!(user, ids),
            SubjectKind::Role => in_org!(role, ids),
            SubjectKind::Department => in_org!(department, ids),
            _ => in_org!(agent, ids),
        };
        known.insert(kind, found);
    }
    let tenants = ids_of(SubjectKind::Tenant);
    if tenants.is_empty() {
        return Ok(known);
    }
    if tenants.contains(&organization_id) {
        return Err(AppError::validation(
            parsed
                .iter()
                .find(|(_, k, id, _)| *k == SubjectKind::Tenant && *id == organization_id)
                .map(|(f, ..)| *f)
                .unwrap_or("grants"),
            "a space cannot be shared with its own organization as a tenant; use accessMode ORGANIZATION",
        ));
    }
    known.insert(
        SubjectKind::Tenant,
        organization::Entity::find()
            .select_only()
            .column(organization::Column::Id)
            .filter(organization::Column::Id.is_in(tenants))
            .into_tuple()
            .all(db)
            .await?,
    );
    Ok(known)
}

/// Inserts or raises/lowers grants (one row per subject), then enforces the agent-grant limit.
pub async fn upsert(db: &impl ConnectionTrait, space_id: Uuid, grants: &[Grant]) -> AppResult<()> {
    for g in grants {
        let existing = space_grant::Entity::find()
            .filter(space_grant::Column::SpaceId.eq(space_id))
            .filter(space_grant::Column::SubjectKind.eq(g.kind.as_str()))
            .filter(space_grant::Column::SubjectId.eq(g.subject_id))
            .one(db)
            .await?;
        match existing {
            Some(row) if row.permission == g.permission.as_str() => {}
            Some(row) => {
                space_grant::Entity::update_many()
                    .col_expr(
                        space_grant::Column::Permission,
                        sea_orm::sea_query::Expr::value(g.permission.as_str()),
                    )
                    .filter(space_grant::Column::Id.eq(row.id))
                    .exec(db)
                    .await?;
            }
            None => {
                space_grant::Entity::insert(space_grant::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    space_id: Set(space_id),
                    subject_kind: Set(g.kind.as_str().to_string()),
                    subject_id: Set(g.subject_id),
                    permission: Set(g.permission.as_str().to_string()),
                    created_at: Set(now()),
                })
                .exec_without_returning(db)
                .await?;
            }
        }
    }
    let agent_grants = space_grant::Entity::find()
        .filter(space_grant::Column::SpaceId.eq(space_id))
        .filter(space_grant::Column::SubjectKind.eq(SubjectKind::Agent.as_str()))
        .count(db)
        .await?;
    if agent_grants as usize > MAX_AGENT_GRANTS {
        return Err(AppError::validation(
            "grants",
            format!("at most {MAX_AGENT_GRANTS} agent grants per space (would be {agent_grants})"),
        ));
    }
    Ok(())
}

/// updateSpace's sharing lists: the space's grants become the given ones plus the current ones
/// in slots no given list replaces (see [`GrantLists::replaced_slots`]); a subject in both
/// keeps the higher permission. Nothing of another kind of sharing is lost silently.
pub async fn replace_slots(
    db: &impl ConnectionTrait,
    space_id: Uuid,
    slots: Option<Vec<(SubjectKind, Permission)>>,
    given: Vec<Grant>,
) -> AppResult<()> {
    let mut merged: BTreeMap<(SubjectKind, Uuid), Permission> = BTreeMap::new();
    if let Some(slots) = slots {
        let current = space_grant::Entity::find()
            .filter(space_grant::Column::SpaceId.eq(space_id))
            .all(db)
            .await?;
        for row in current {
            let Some(kind) = SubjectKind::parse(&row.subject_kind) else {
                continue;
            };
            let permission = Permission::parse(&row.permission);
            if !slots.contains(&(kind, permission)) {
                merged.insert((kind, row.subject_id), permission);
            }
        }
    }
    for g in given {
        let entry = merged.entry((g.kind, g.subject_id)).or_insert(g.permission);
        *entry = (*entry).max(g.permission);
    }
    let grants: Vec<Grant> = merged
        .into_iter()
        .map(|((kind, subject_id), permission)| Grant {
            kind,
            subject_id,
            permission,
        })
        .collect();
    clear(db, space_id).await?;
    upsert(db, space_id, &grants).await
}

pub async fn clear(db: &impl ConnectionTrait, space_id: Uuid) -> AppResult<()> {
    space_grant::Entity::delete_many()
        .filter(space_grant::Column::SpaceId.eq(space_id))
        .exec(db)
        .await?;
    Ok(())
}

/// `shareSpace`: adds grants (or changes the permission of an existing subject). OWNER only.
pub async fn share(
    db: &Db,
    principal: &Principal,
    space_id: Uuid,
    specs: Vec<GrantSpec>,
) -> AppResult<SpaceAccess> {
    check_specs("grants", &specs)?;
    let mut txn = db.begin_write().await?;
    let access = service::load_for(&txn, principal, space_id, Permission::Owner).await?;
    let grants = resolve(&txn, access.space.organization_id, specs, true).await?;
    upsert(&txn, space_id, &grants).await?;
    touch_and_audit(&txn, principal, &access.space, "space.share").await?;
    let access = service::load(&txn, principal, space_id).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(access)
}

/// `unshareSpace`: removes the grants of the given subjects (their permission is ignored).
pub async fn unshare(
    db: &Db,
    principal: &Principal,
    space_id: Uuid,
    specs: Vec<GrantSpec>,
) -> AppResult<SpaceAccess> {
    check_specs("grants", &specs)?;
    let mut txn = db.begin_write().await?;
    let access = service::load_for(&txn, principal, space_id, Permission::Owner).await?;
    let org = access.space.organization_id;
    for spec in specs {
        let subject = match spec.kind {
            SubjectKind::AllUsers => org,
            _ => match spec
                .subject_id
                .as_deref()
                .map(|s| Uuid::parse_str(s.trim()))
            {
                Some(Ok(id)) => id,
                _ => {
                    return Err(AppError::validation(
                        format!("{}.subjectId", spec.field),
                        "is not a valid ID",
                    ))
                }
            },
        };
        space_grant::Entity::delete_many()
            .filter(space_grant::Column::SpaceId.eq(space_id))
            .filter(space_grant::Column::SubjectKind.eq(spec.kind.as_str()))
            .filter(space_grant::Column::SubjectId.eq(subject))
            .exec(&txn)
            .await?;
    }
    touch_and_audit(&txn, principal, &access.space, "space.unshare").await?;
    let access = service::load(&txn, principal, space_id).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(access)
}

async fn touch_and_audit(
    db: &impl ConnectionTrait,
    principal: &Principal,
    space: &space::Model,
    action: &str,
) -> AppResult<()> {
    space::Entity::update_many()
        .col_expr(
            space::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(space::Column::Id.eq(space.id))
        .exec(db)
        .await?;
    audit::record(
        db,
        principal,
        Event {
            action,
            resource_type: "space",
            resource_id: space.id,
            organization_id: space.organization_id,
        },
    )
    .await
}

/// `assignAgent`: the agent that works in the space (it holds EDIT); `None` unassigns. OWNER only.
pub async fn assign_agent(
    db: &Db,
    principal: &Principal,
    space_id: Uuid,
    agent_id: Option<Uuid>,
) -> AppResult<SpaceAccess> {
    let mut txn = db.begin_write().await?;
    let access = service::load_for(&txn, principal, space_id, Permission::Owner).await?;
    if let Some(id) = agent_id {
        let found = agent::Entity::find_by_id(id)
            .filter(agent::Column::OrganizationId.eq(access.space.organization_id))
            .count(&txn)
            .await?;
        if found == 0 {
            return Err(AppError::validation(
                "agentId",
                format!("no agent {id} in the space's organization"),
            ));
        }
    }
    space::Entity::update_many()
        .col_expr(
            space::Column::AgentId,
            sea_orm::sea_query::Expr::value(agent_id),
        )
        .filter(space::Column::Id.eq(space_id))
        .exec(&txn)
        .await?;
    touch_and_audit(&txn, principal, &access.space, "space.assign_agent").await?;
    let access = service::load(&txn, principal, space_id).await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(access)
}
