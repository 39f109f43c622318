//! The directory domain: who exists in an organization, and their keys.
pub mod batch;
use crate::db::Db;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

use crate::audit::{self as audit, Event};
use crate::auth as keys;
use entity::{agent, api_key, department, organization, role, user, user_department, user_role};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::{Principal, PrincipalKind};
use memspace_core::{clock::now, validate};

pub const DEFAULT_ORG_HANDLE: &str = "default";

fn require_admin(principal: &Principal) -> AppResult<()> {
    if principal.is_admin {
        Ok(())
    } else {
        Err(AppError::forbidden("only organization admins may do this"))
    }
}

/// A freshly made admin key for the shell: the org it belongs to and the secret, shown once.
pub struct AdminKey {
    pub organization: organization::Model,
    pub secret: String,
}

/// What [`bootstrap`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// First start without `MEMSPACE_ADMIN_KEY`: this key was generated and must be shown once.
    Generated(String),
    /// First start with the operator's key.
    Chosen,
    /// The database was set up before, and the admin key (if one was given) is already the
    /// working admin key.
    Unchanged,
    /// `MEMSPACE_ADMIN_KEY` differs from the stored admin key: it replaced it, and the previous
    /// one(s) (`revoked`) no longer work.
    Rotated { revoked: u64 },
}

/// At start-up: on an empty database, organization `default`, an admin user and an admin key
/// (the operator's `chosen_key`, or a generated one). On a database set up before, a
/// `chosen_key` that is not already a working key replaces the admin key of the first start
/// (origin BOOTSTRAP, organization `default`): the new key works, the previous one no longer
/// does. Keys made with `memspace admin` or `createApiKey` are not touched.
pub async fn bootstrap(db: &Db, chosen_key: Option<&str>) -> AppResult<Bootstrap> {
    if let Some(key) = chosen_key {
        keys::validate_chosen_key(key)
            .map_err(|why| AppError::validation("MEMSPACE_ADMIN_KEY", why))?;
    }
    let mut txn = db.begin_write().await?;
    if organization::Entity::find().count(&txn).await? == 0 {
        let key = match chosen_key {
            Some(k) => keys::from_secret(k.to_string()),
            None => keys::generate(),
        };
        let origin = keys::ORIGIN_BOOTSTRAP;
        let created = insert_org_with_admin(&txn, DEFAULT_ORG_HANDLE, "Default", key, origin).await;
        return match created {
            Ok(admin) => {
                txn.commit().await?;
                Ok(match chosen_key {
                    Some(_) => Bootstrap::Chosen,
                    None => Bootstrap::Generated(admin.secret),
                })
            }
            // Another process bootstrapped concurrently: that is fine.
            Err(AppError::AlreadyExists(_)) => Ok(Bootstrap::Unchanged),
            Err(e) => Err(e),
        };
    }
    let Some(chosen) = chosen_key else {
        return Ok(Bootstrap::Unchanged);
    };
    let key = keys::from_secret(chosen.to_string());
    if let Some(known) = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(key.hash.as_str()))
        .one(&txn)
        .await?
    {
        if known.revoked_at.is_none() {
            return Ok(Bootstrap::Unchanged);
        }
        // Bringing a revoked key back to life would undo someone's revocation.
        return Err(AppError::validation(
            "MEMSPACE_ADMIN_KEY",
            "this key was revoked; choose a new one",
        ));
    }
    let org = organization::Entity::find()
        .filter(organization::Column::Handle.eq(DEFAULT_ORG_HANDLE))
        .one(&txn)
        .await?
        .ok_or_else(|| {
            AppError::validation(
                "MEMSPACE_ADMIN_KEY",
                "the database has no organization `default` to give this admin key to",
            )
        })?;
    let previous = api_key::Entity::find()
        .filter(api_key::Column::OrganizationId.eq(org.id))
        .filter(api_key::Column::Origin.eq(keys::ORIGIN_BOOTSTRAP))
        .filter(api_key::Column::RevokedAt.is_null())
        .order_by_desc(api_key::Column::CreatedAt)
        .all(&txn)
        .await?;
    // The holder of the admin key so far, while still an admin; else the first admin.
    let mut admin = None;
    for user_id in previous.iter().filter_map(|k| k.user_id) {
        admin = user::Entity::find_by_id(user_id)
            .filter(user::Column::IsAdmin.eq(true))
            .one(&txn)
            .await?;
        if admin.is_some() {
            break;
        }
    }
    let admin = match admin {
        Some(a) => a,
        None => user::Entity::find()
            .filter(user::Column::OrganizationId.eq(org.id))
            .filter(user::Column::IsAdmin.eq(true))
            .order_by_asc(user::Column::CreatedAt)
            .one(&txn)
            .await?
            .ok_or_else(|| {
                AppError::validation(
                    "MEMSPACE_ADMIN_KEY",
                    "organization `default` has no admin user to give this admin key to",
                )
            })?,
    };
    let revoked = if previous.is_empty() {
        0
    } else {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now()))
            .filter(api_key::Column::Id.is_in(previous.iter().map(|k| k.id)))
            .exec(&txn)
            .await?
            .rows_affected
    };
    let inserted = insert_key(
        &txn,
        org.id,
        Some(admin.id),
        None,
        "admin",
        key,
        keys::ORIGIN_BOOTSTRAP,
    )
    .await;
    match inserted {
        Ok(_) => {}
        // Another replica applied the same key concurrently.
        Err(AppError::AlreadyExists(_)) => return Ok(Bootstrap::Unchanged),
        Err(e) => return Err(e),
    }
    // Caches of every replica drop the revoked key.
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(Bootstrap::Rotated { revoked })
}

/// `memspace admin create-org`: a new organization with an admin user and key.
pub async fn create_organization(db: &Db, handle: &str, name: &str) -> AppResult<AdminKey> {
    let handle = validate::handle("handle", handle)?;
    let name = validate::name("name", name, memspace_core::limits::MAX_NAME_CHARS)?;
    let txn = db.begin_write().await?;
    let admin =
        insert_org_with_admin(&txn, &handle, &name, keys::generate(), keys::ORIGIN_CLI).await?;
    txn.commit().await?;
    Ok(admin)
}

async fn insert_org_with_admin(
    db: &impl ConnectionTrait,
    handle: &str,
    name: &str,
    key: keys::NewKey,
    origin: &str,
) -> AppResult<AdminKey> {
    let org = organization::ActiveModel {
        id: Set(Uuid::now_v7()),
        handle: Set(handle.to_string()),
        name: Set(name.to_string()),
        created_at: Set(now()),
    }
    .insert(db)
    .await
    .map_err(AppError::unique(format!(
        "an organization with handle {handle:?} already exists"
    )))?;
    let admin = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(org.id),
        name: Set("admin".into()),
        email: Set(format!("admin@{handle}.local")),
        is_admin: Set(true),
        created_at: Set(now()),
    }
    .insert(db)
    .await?;
    let secret = key.secret.clone();
    insert_key(db, org.id, Some(admin.id), None, "admin", key, origin).await?;
    Ok(AdminKey {
        organization: org,
        secret,
    })
}

/// `memspace admin create-key --org H`: a fresh key for the organization's first admin.
pub async fn create_admin_key(db: &Db, org_handle: &str) -> AppResult<AdminKey> {
    let txn = db.begin_write().await?;
    let db = &txn;
    let org = organization::Entity::find()
        .filter(organization::Column::Handle.eq(org_handle))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("organization", org_handle))?;
    let admin = user::Entity::find()
        .filter(user::Column::OrganizationId.eq(org.id))
        .filter(user::Column::IsAdmin.eq(true))
        .order_by_asc(user::Column::CreatedAt)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("admin user of organization", org_handle))?;
    let key = keys::generate();
    let secret = key.secret.clone();
    insert_key(
        db,
        org.id,
        Some(admin.id),
        None,
        "admin (cli)",
        key,
        keys::ORIGIN_CLI,
    )
    .await?;
    txn.commit().await?;
    Ok(AdminKey {
        organization: org,
        secret,
    })
}

async fn insert_key(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    user_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    name: &str,
    key: keys::NewKey,
    origin: &str,
) -> AppResult<api_key::Model> {
    api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(organization_id),
        user_id: Set(user_id),
        agent_id: Set(agent_id),
        name: Set(name.to_string()),
        prefix: Set(key.prefix),
        key_hash: Set(key.hash),
        origin: Set(origin.to_string()),
        created_at: Set(now()),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
    .map_err(AppError::unique("this API key is already in use"))
}

pub async fn create_user(
    db: &Db,
    principal: &Principal,
    name: &str,
    email: &str,
    is_admin: bool,
) -> AppResult<user::Model> {
    require_admin(principal)?;
    let name = validate::name("name", name, memspace_core::limits::MAX_NAME_CHARS)?;
    let email = validate::email("email", email)?;
    let txn = db.begin_write().await?;
    let row = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(principal.organization_id),
        name: Set(name),
        email: Set(email.clone()),
        is_admin: Set(is_admin),
        created_at: Set(now()),
    }
    .insert(&txn)
    .await
    .map_err(AppError::unique(format!(
        "a user with email {email:?} already exists in this organization"
    )))?;
    txn.commit().await?;
    Ok(row)
}

pub async fn create_role(db: &Db, principal: &Principal, name: &str) -> AppResult<role::Model> {
    require_admin(principal)?;
    let name = validate::name("name", name, memspace_core::limits::MAX_NAME_CHARS)?;
    let txn = db.begin_write().await?;
    let row = role::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(principal.organization_id),
        name: Set(name.clone()),
        created_at: Set(now()),
    }
    .insert(&txn)
    .await
    .map_err(AppError::unique(format!(
        "a role named {name:?} already exists"
    )))?;
    txn.commit().await?;
    Ok(row)
}

pub async fn create_department(
    db: &Db,
    principal: &Principal,
    name: &str,
) -> AppResult<department::Model> {
    require_admin(principal)?;
    let name = validate::name("name", name, memspace_core::limits::MAX_NAME_CHARS)?;
    let txn = db.begin_write().await?;
    let row = department::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(principal.organization_id),
        name: Set(name.clone()),
        created_at: Set(now()),
    }
    .insert(&txn)
    .await
    .map_err(AppError::unique(format!(
        "a department named {name:?} already exists"
    )))?;
    txn.commit().await?;
    Ok(row)
}

/// A user of the principal's own organization, or NOT_FOUND.
pub async fn org_user(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<user::Model> {
    user::Entity::find_by_id(id)
        .filter(user::Column::OrganizationId.eq(principal.organization_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("user", id))
}

/// An agent of the principal's own organization, or NOT_FOUND.
pub async fn org_agent(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<agent::Model> {
    agent::Entity::find_by_id(id)
        .filter(agent::Column::OrganizationId.eq(principal.organization_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("agent", id))
}

pub async fn assign_role(
    db: &Db,
    principal: &Principal,
    user_id: Uuid,
    role_id: Uuid,
) -> AppResult<user::Model> {
    let mut txn = db.begin_write().await?;
    require_admin(principal)?;
    let user = org_user(&txn, principal, user_id).await?;
    role::Entity::find_by_id(role_id)
        .filter(role::Column::OrganizationId.eq(principal.organization_id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("role", role_id))?;
    // Assigning twice is a no-op, not an error.
    user_role::Entity::insert(user_role::ActiveModel {
        user_id: Set(user.id),
        role_id: Set(role_id),
    })
    .on_conflict(
        OnConflict::columns([user_role::Column::UserId, user_role::Column::RoleId])
            .do_nothing()
            .to_owned(),
    )
    .do_nothing()
    .exec(&txn)
    .await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(user)
}

pub async fn assign_department(
    db: &Db,
    principal: &Principal,
    user_id: Uuid,
    department_id: Uuid,
) -> AppResult<user::Model> {
    let mut txn = db.begin_write().await?;
    require_admin(principal)?;
    let user = org_user(&txn, principal, user_id).await?;
    department::Entity::find_by_id(department_id)
        .filter(department::Column::OrganizationId.eq(principal.organization_id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("department", department_id))?;
    user_department::Entity::insert(user_department::ActiveModel {
        user_id: Set(user.id),
        department_id: Set(department_id),
    })
    .on_conflict(
        OnConflict::columns([
            user_department::Column::UserId,
            user_department::Column::DepartmentId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .do_nothing()
    .exec(&txn)
    .await?;
    txn.access_changed().await?;
    txn.commit().await?;
    Ok(user)
}

pub async fn create_agent(
    db: &Db,
    principal: &Principal,
    handle: &str,
    name: &str,
) -> AppResult<agent::Model> {
    require_admin(principal)?;
    let handle = validate::handle("handle", handle)?;
    let name = validate::name("name", name, memspace_core::limits::MAX_NAME_CHARS)?;
    let txn = db.begin_write().await?;
    let row = agent::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(principal.organization_id),
        handle: Set(handle.clone()),
        name: Set(name),
        created_at: Set(now()),
    }
    .insert(&txn)
    .await
    .map_err(AppError::unique(format!(
        "an agent with handle {handle:?} already exists"
    )))?;
    txn.commit().await?;
    Ok(row)
}

/// Whom a new API key is for.
pub enum KeyHolder {
    User(Uuid),
    Agent(Uuid),
}

/// Creates a key for a user or agent of the caller's organization. Admins may create keys for
/// anyone in it; a user may create keys for themselves. Returns the row and the secret.
pub async fn create_api_key(
    db: &Db,
    principal: &Principal,
    holder: KeyHolder,
    name: &str,
) -> AppResult<(api_key::Model, String)> {
    let txn = db.begin_write().await?;
    let name = validate::name("name", name, memspace_core::limits::MAX_NAME_CHARS)?;
    let (user_id, agent_id) = match holder {
        KeyHolder::User(id) => {
            let is_self = principal.kind == PrincipalKind::User && principal.id == id;
            if !is_self {
                require_admin(principal)?;
            }
            (Some(org_user(&txn, principal, id).await?.id), None)
        }
        KeyHolder::Agent(id) => {
            require_admin(principal)?;
            (None, Some(org_agent(&txn, principal, id).await?.id))
        }
    };
    let key = keys::generate();
    let secret = key.secret.clone();
    let row = insert_key(
        &txn,
        principal.organization_id,
        user_id,
        agent_id,
        &name,
        key,
        keys::ORIGIN_API,
    )
    .await?;
    audit::record(
        &txn,
        principal,
        Event {
            action: "api_key.create",
            resource_type: "api_key",
            resource_id: row.id,
            organization_id: row.organization_id,
        },
    )
    .await?;
    txn.commit().await?;
    Ok((row, secret))
}

/// Revokes a key of the caller's organization (admins: any; others: their own).
pub async fn revoke_api_key(db: &Db, principal: &Principal, id: Uuid) -> AppResult<Uuid> {
    let mut txn = db.begin_write().await?;
    let key = api_key::Entity::find_by_id(id)
        .filter(api_key::Column::OrganizationId.eq(principal.organization_id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("API key", id))?;
    // Someone else's key answers exactly like a key that does not exist: no existence oracle.
    let own = key.user_id == Some(principal.id) || key.agent_id == Some(principal.id);
    if !own && !principal.is_admin_of(key.organization_id) {
        return Err(AppError::not_found("API key", id));
    }
    if key.revoked_at.is_none() {
        let org = key.organization_id;
        let mut active: api_key::ActiveModel = key.into();
        active.revoked_at = Set(Some(now()));
        active.update(&txn).await?;
        audit::record(
            &txn,
            principal,
            Event {
                action: "api_key.revoke",
                resource_type: "api_key",
                resource_id: id,
                organization_id: org,
            },
        )
        .await?;
        txn.access_changed().await?;
        txn.commit().await?;
    }
    Ok(id)
}

pub async fn roles_of(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<role::Model>> {
    Ok(role::Entity::find()
        .filter(role::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(role::Column::Name)
        .all(db)
        .await?)
}

pub async fn departments_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> AppResult<Vec<department::Model>> {
    Ok(department::Entity::find()
        .filter(department::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(department::Column::Name)
        .all(db)
        .await?)
}

pub async fn role_ids_of_user(db: &impl ConnectionTrait, user_id: Uuid) -> AppResult<Vec<Uuid>> {
    Ok(user_role::Entity::find()
        .filter(user_role::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.role_id)
        .collect())
}

pub async fn department_ids_of_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> AppResult<Vec<Uuid>> {
    Ok(user_department::Entity::find()
        .filter(user_department::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.department_id)
        .collect())
}

/// Agents of the principal's organization (optionally one handle), by handle. Space tokens see
/// none: their space is their whole world.
pub async fn agents(
    db: &impl ConnectionTrait,
    principal: &Principal,
    handle: Option<&str>,
) -> AppResult<Vec<agent::Model>> {
    if principal.token.is_some() {
        return Ok(Vec::new());
    }
    let mut q =
        agent::Entity::find().filter(agent::Column::OrganizationId.eq(principal.organization_id));
    if let Some(h) = handle {
        q = q.filter(agent::Column::Handle.eq(h));
    }
    Ok(q.order_by_asc(agent::Column::Handle).all(db).await?)
}
