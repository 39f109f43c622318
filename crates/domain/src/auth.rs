//! API keys and space tokens: generation, hashing and lookup. Generated keys are random 256-bit
//! secrets, so a plain SHA-256 (not a slow password hash) is the right digest: it cannot be
//! brute-forced and lookups stay O(1). An operator-chosen key (`MEMSPACE_ADMIN_KEY`) must have
//! at least 24 characters, and none of them is stored in clear.
use rand::distributions::Alphanumeric;
use rand::Rng;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use entity::{
    agent, api_key, space, space_token, user, user_department, user_role, workspace_member,
};
use memspace_core::access::{self, Permission, WorkspaceRole};
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
    from_generated(format!("{prefix}{body}"), prefix)
}

/// Where an API key comes from (`api_keys.origin`).
pub const ORIGIN_API: &str = "API";
/// `memspace admin create-org` / `create-key`.
pub const ORIGIN_CLI: &str = "CLI";
/// The admin key of the first start, and each `MEMSPACE_ADMIN_KEY` that replaced it since.
pub const ORIGIN_BOOTSTRAP: &str = "BOOTSTRAP";

/// The shortest operator-chosen key accepted (`MEMSPACE_ADMIN_KEY`).
pub const CHOSEN_KEY_MIN_CHARS: usize = 24;
/// The longest one.
pub const CHOSEN_KEY_MAX_CHARS: usize = 256;

/// Wraps an operator-chosen secret (such as `MEMSPACE_ADMIN_KEY`). None of its characters are
/// kept in clear: its strength is the operator's choice, so a stored prefix would shorten what
/// is left to guess beside the (unsalted) SHA-256. Its prefix is empty.
pub fn from_secret(secret: String) -> NewKey {
    let hash = hash(&secret);
    NewKey {
        secret,
        prefix: String::new(),
        hash,
    }
}

/// A generated secret: its prefix is the marker and 8 random characters, leaving 35 random
/// alphanumerics (~208 bits) unseen.
fn from_generated(secret: String, marker: &str) -> NewKey {
    let prefix: String = secret.chars().take(marker.chars().count() + 8).collect();
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

/// The rule for operator-chosen keys: 24–256 characters, none of them whitespace.
pub fn validate_chosen_key(secret: &str) -> Result<(), String> {
    let len = secret.chars().count();
    if !(CHOSEN_KEY_MIN_CHARS..=CHOSEN_KEY_MAX_CHARS).contains(&len) {
        return Err(format!(
            "must be {CHOSEN_KEY_MIN_CHARS}–{CHOSEN_KEY_MAX_CHARS} characters long (got {len})"
        ));
    }
    if secret.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    Ok(())
}

/// [`authenticate`] through the bus's short-lived principal cache (flushed whenever access may
/// have changed, and bypassed while a replica's event listener is down). API keys and space
/// tokens alike: what can end a token's right (revocation, its creator losing OWNER) flushes the
/// cache, and a cached token is refused once its expiry has passed.
pub async fn authenticate_cached(
    db: &impl ConnectionTrait,
    bus: &crate::events::Bus,
    secret: &str,
) -> AppResult<Principal> {
    let key = hash(secret);
    if let Some(p) = bus.cached_principal(&key) {
        if expired(&p) {
            return Err(AppError::Unauthenticated);
        }
        return Ok(p);
    }
    let generation = bus.generation();
    let p = authenticate(db, secret).await?;
    bus.cache_principal(key, p.clone(), generation);
    Ok(p)
}

fn expired(p: &Principal) -> bool {
    p.token
        .and_then(|t| t.expires_at)
        .is_some_and(|at| at <= chrono::Utc::now())
}

/// Resolves a secret to the principal it belongs to; unknown, revoked or expired →
/// UNAUTHENTICATED, and so is a space token whose creator no longer holds OWNER on its space.
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
                role_ids,
                department_ids,
                workspaces,
                ..user_principal(&user, key.id)
            })
        }
        (None, Some(agent_id)) => {
            let agent = agent::Entity::find_by_id(agent_id)
                .one(db)
                .await?
                .ok_or(AppError::Unauthenticated)?;
            Ok(agent_principal(&agent, key.id))
        }
        (None, None) => Err(AppError::Unauthenticated),
    }
}

/// A user as a principal, without roles, departments or workspaces (the caller adds those it
/// needs).
fn user_principal(user: &user::Model, credential_id: Uuid) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: user.id,
        organization_id: user.organization_id,
        is_admin: user.is_admin,
        role_ids: Vec::new(),
        department_ids: Vec::new(),
        credential_id,
        token: None,
        workspaces: Vec::new(),
    }
}

fn agent_principal(agent: &agent::Model, credential_id: Uuid) -> Principal {
    Principal {
        kind: PrincipalKind::Agent,
        id: agent.id,
        organization_id: agent.organization_id,
        is_admin: false,
        role_ids: Vec::new(),
        department_ids: Vec::new(),
        credential_id,
        token: None,
        workspaces: Vec::new(),
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
    if !creator_holds_owner(db, &token, &space).await? {
        return Err(AppError::Unauthenticated);
    }
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
            expires_at: token.expires_at,
        }),
        workspaces: Vec::new(),
    }))
}

/// Whether the user or agent that minted `token` holds OWNER on `space` now: a token never
/// outlives its creator's right (a workspace ADMIN removed from the workspace, or demoted, takes
/// her tokens with her). Decided by the one policy, [`access::permission`], on the creator as
/// stored now. Grants give at most EDIT, so the creator's roles, departments and the space's
/// grants cannot make OWNER and are not loaded; of its workspaces only the space's matters.
async fn creator_holds_owner(
    db: &impl ConnectionTrait,
    token: &space_token::Model,
    space: &space::Model,
) -> AppResult<bool> {
    let creator = match PrincipalKind::parse(&token.created_by_kind) {
        Some(PrincipalKind::User) => {
            let Some(user) = user::Entity::find_by_id(token.created_by).one(db).await? else {
                return Ok(false);
            };
            let mut creator = user_principal(&user, token.id);
            if let Some(workspace_id) = space.workspace_id {
                creator.workspaces = workspace_member::Entity::find()
                    .filter(workspace_member::Column::WorkspaceId.eq(workspace_id))
                    .filter(workspace_member::Column::UserId.eq(user.id))
                    .all(db)
                    .await?
                    .into_iter()
                    .filter_map(|m| WorkspaceRole::parse(&m.role).map(|r| (m.workspace_id, r)))
                    .collect();
            }
            creator
        }
        Some(PrincipalKind::Agent) => {
            let Some(agent) = agent::Entity::find_by_id(token.created_by).one(db).await? else {
                return Ok(false);
            };
            agent_principal(&agent, token.id)
        }
        _ => return Ok(false),
    };
    Ok(access::permission(&creator, space, &[]) == Permission::Owner)
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
    fn generated_keys_keep_at_least_128_unseen_bits() {
        for k in [generate(), generate_with(SPACE_TOKEN_PREFIX)] {
            let unseen = k.secret.len() - k.prefix.len();
            // 62 alphanumerics: log2(62) ≈ 5.95 bits each.
            assert!(
                unseen as f64 * 62f64.log2() >= 128.0,
                "{unseen} unseen characters"
            );
            assert_eq!(k.prefix.len(), 12);
        }
    }

    #[test]
    fn chosen_keys_keep_no_character_in_clear() {
        let k = from_secret("operator-chosen-secret-0123456789".into());
        assert_eq!(k.prefix, "");
        assert_eq!(k.hash, hash(&k.secret));
    }

    #[test]
    fn chosen_keys_must_be_long_and_without_whitespace() {
        assert!(validate_chosen_key("0123456789abcdef01234567").is_ok());
        assert!(validate_chosen_key("0123456789abcdef0123456").is_err());
        assert!(validate_chosen_key("0123456789abcdef").is_err());
        assert!(validate_chosen_key("short").is_err());
        assert!(validate_chosen_key("0123456789 abcdef01234567").is_err());
        assert!(validate_chosen_key(&"x".repeat(257)).is_err());
    }
}
