//! API keys: generation, hashing and lookup. Keys are random 256-bit secrets, so a plain SHA-256
//! (not a slow password hash) is the right digest: it cannot be brute-forced and lookups stay O(1).
use rand::distributions::Alphanumeric;
use rand::Rng;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use entity::{
    agent, api_key, space, space_token, user, user_department, user_role, workspace_member,
};
use memspace_core::access::{Permission, WorkspaceRole};
use memspace_core::error::{AppError, AppResult};
use memspace_core::principal::TokenScope;
use memspace_core::principal::{Principal, PrincipalKind};

/// Prefix of every generated API key, so leaked keys are easy to recognise in scanners.
pub const API_KEY_PREFIX: &str = "msk_";
/// Prefix of every space token.
pub const SPACE_TOKEN_PREFIX: &str = "mst_";

pub struct NewKey {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn generate() -> NewKey {
    generate_with(API_KEY_PREFIX)
}

/// A random secret (43 alphanumerics, ~256 bits) after `prefix`.
pub fn generate_with(prefix: &str) -> NewKey {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect();
    from_secret(format!("{prefix}{body}"))
}

/// Wraps a caller-chosen secret (such as `MEMSPACE_ADMIN_KEY`).
pub fn from_secret(secret: String) -> NewKey {
    let prefix: String = secret.chars().take(12).collect();
    let hash = hash(&secret);
    NewKey {
        secret,
        prefix,
        hash,
    }
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The rule for operator-chosen keys: 16–256 characters, none of them whitespace.
pub fn validate_chosen_key(secret: &str) -> Result<(), String> {
    let len = secret.chars().count();
    if !(16..=256).contains(&len) {
        return Err(format!("must be 16–256 characters long (got {len})"));
    }
    if secret.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    Ok(())
}

/// [`authenticate`] through the bus's short-lived principal cache (flushed whenever access may
/// have changed, and bypassed while a replica's event listener is down).
pub async fn authenticate_cached(
    db: &impl ConnectionTrait,
    bus: &crate::events::Bus,
    secret: &str,
) -> AppResult<Principal> {
    let key = hash(secret);
    if let Some(p) = bus.cached_principal(&key) {
        if p.token.is_none() {
            return Ok(p);
        }
    }
    let generation = bus.generation();
    let p = authenticate(db, secret).await?;
    // Space tokens can expire at any moment: never cached.
    if p.token.is_none() {
        bus.cache_principal(key, p.clone(), generation);
    }
    Ok(p)
}

/// Resolves a secret to the principal it belongs to; unknown, revoked or expired →
/// UNAUTHENTICATED.
pub async fn authenticate(db: &impl ConnectionTrait, secret: &str) -> AppResult<Principal> {
    if secret.starts_with(SPACE_TOKEN_PREFIX) {
        if let Some(p) = authenticate_space_token(db, secret).await? {
            return Ok(p);
        }
    }
    let key = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash(secret)))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    match (key.user_id, key.agent_id) {
        (Some(user_id), _) => {
            let user = user::Entity::find_by_id(user_id)
                .one(db)
                .await?
                .ok_or(AppError::Unauthenticated)?;
            let role_ids = user_role::Entity::find()
                .select_only()
                .column(user_role::Column::RoleId)
                .filter(user_role::Column::UserId.eq(user.id))
                .into_tuple::<Uuid>()
                .all(db)
                .await?;
            let department_ids = user_department::Entity::find()
                .select_only()
                .column(user_department::Column::DepartmentId)
                .filter(user_department::Column::UserId.eq(user.id))
                .into_tuple::<Uuid>()
                .all(db)
                .await?;
            let workspaces = workspace_member::Entity::find()
                .filter(workspace_member::Column::UserId.eq(user.id))
                .all(db)
                .await?
                .into_iter()
                .filter_map(|m| WorkspaceRole::parse(&m.role).map(|r| (m.workspace_id, r)))
                .collect();
            Ok(Principal {
                kind: PrincipalKind::User,
                id: user.id,
                organization_id: user.organization_id,
                is_admin: user.is_admin,
                role_ids,
                department_ids,
                credential_id: key.id,
                token: None,
                workspaces,
            })
        }
        (None, Some(agent_id)) => {
            let agent = agent::Entity::find_by_id(agent_id)
                .one(db)
                .await?
                .ok_or(AppError::Unauthenticated)?;
            Ok(Principal {
                kind: PrincipalKind::Agent,
                id: agent.id,
                organization_id: agent.organization_id,
                is_admin: false,
                role_ids: Vec::new(),
                department_ids: Vec::new(),
                credential_id: key.id,
                token: None,
                workspaces: Vec::new(),
            })
        }
        (None, None) => Err(AppError::Unauthenticated),
    }
}

async fn authenticate_space_token(
    db: &impl ConnectionTrait,
    secret: &str,
) -> AppResult<Option<Principal>> {
    let Some(token) = space_token::Entity::find()
        .filter(space_token::Column::TokenHash.eq(hash(secret)))
        .filter(space_token::Column::RevokedAt.is_null())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if token.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
        return Err(AppError::Unauthenticated);
    }
    let space = space::Entity::find_by_id(token.space_id)
        .one(db)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    Ok(Some(Principal {
        kind: PrincipalKind::SpaceToken,
        id: token.id,
        organization_id: space.organization_id,
        is_admin: false,
        role_ids: Vec::new(),
        department_ids: Vec::new(),
        credential_id: token.id,
        token: Some(TokenScope {
            space_id: space.id,
            permission: Permission::parse(&token.permission).min(Permission::Edit),
        }),
        workspaces: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_prefixed_and_hash_deterministically() {
        let k = generate();
        assert!(k.secret.starts_with(API_KEY_PREFIX));
        assert_eq!(k.secret.len(), 47);
        assert_eq!(k.hash, hash(&k.secret));
        assert_ne!(generate().secret, k.secret);
        assert!(k.secret.starts_with(&k.prefix));
    }

    #[test]
    fn chosen_keys_must_be_long_and_without_whitespace() {
        assert!(validate_chosen_key("0123456789abcdef").is_ok());
        assert!(validate_chosen_key("short").is_err());
        assert!(validate_chosen_key("0123456789 abcdef").is_err());
        assert!(validate_chosen_key(&"x".repeat(257)).is_err());
    }
}
