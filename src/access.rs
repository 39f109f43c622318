//! THE access policy. Every decision about who may see or change a space is made here:
//! [`permission`] for one space, [`visible_spaces`] as the SQL condition every list, count and
//! search applies (so pagination and totals stay right). Nothing else decides access.
use sea_orm::sea_query::Condition;
use sea_orm::ColumnTrait;

use crate::auth::Principal;
use crate::error::AppError;
use entity::space;

/// A principal's permission on a space; ordered, so `>=` reads as "at least".
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// No access: the space behaves as if it did not exist.
    None,
    /// Read the space and its memories, search it.
    View,
    /// Write memories; read everything.
    Edit,
    /// Full control: update, share, tokens, delete, restore, purge.
    Owner,
}

pub const ACCESS_PRIVATE: &str = "PRIVATE";
pub const ACCESS_ORGANIZATION: &str = "ORGANIZATION";
pub const ACCESS_PUBLIC: &str = "PUBLIC";

/// The permission of `principal` on `space`.
pub fn permission(principal: &Principal, space: &space::Model) -> Permission {
    if space.owner_id == principal.id || principal.is_admin_of(space.organization_id) {
        return Permission::Owner;
    }
    let same_org = space.organization_id == principal.organization_id;
    match space.access_mode.as_str() {
        ACCESS_ORGANIZATION if same_org => Permission::View,
        ACCESS_PUBLIC => Permission::View,
        _ => Permission::None,
    }
}

/// The SQL condition that holds exactly for the spaces where [`permission`] is at least VIEW.
pub fn visible_spaces(principal: &Principal) -> Condition {
    let mut any = Condition::any()
        .add(space::Column::OwnerId.eq(principal.id))
        .add(space::Column::AccessMode.eq(ACCESS_PUBLIC));
    if principal.is_admin {
        any = any.add(space::Column::OrganizationId.eq(principal.organization_id));
    } else {
        any = any.add(
            Condition::all()
                .add(space::Column::OrganizationId.eq(principal.organization_id))
                .add(space::Column::AccessMode.eq(ACCESS_ORGANIZATION)),
        );
    }
    any
}

/// Fails unless `principal` holds at least `needed` on the space: an invisible space is NOT_FOUND,
/// a visible one without the permission is OWNER_ONLY (for owner operations) or FORBIDDEN.
pub fn require(
    principal: &Principal,
    space: &space::Model,
    needed: Permission,
) -> Result<Permission, AppError> {
    let have = permission(principal, space);
    if have >= needed {
        return Ok(have);
    }
    Err(match (have, needed) {
        (Permission::None, _) => AppError::not_found("space", space.id),
        (_, Permission::Owner) => AppError::OwnerOnly("space"),
        _ => AppError::forbidden(format!(
            "this operation needs {needed:?} permission on space {}",
            space.id
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PrincipalKind;
    use chrono::Utc;
    use uuid::Uuid;

    fn principal(org: Uuid, admin: bool) -> Principal {
        Principal {
            kind: PrincipalKind::User,
            id: Uuid::now_v7(),
            organization_id: org,
            is_admin: admin,
            role_ids: vec![],
            department_ids: vec![],
            api_key_id: Uuid::now_v7(),
        }
    }

    fn space(org: Uuid, owner: Uuid, mode: &str) -> space::Model {
        space::Model {
            id: Uuid::now_v7(),
            organization_id: org,
            owner_id: owner,
            owner_kind: "USER".into(),
            name: "s".into(),
            description: None,
            access_mode: mode.into(),
            embedder: "builtin-hash-384".into(),
            chunk_size: 800,
            chunk_overlap: 100,
            last_activity_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            deleted_at: None,
        }
    }

    #[test]
    fn permission_follows_the_policy_table() {
        let org = Uuid::now_v7();
        let other = Uuid::now_v7();
        let owner = principal(org, false);
        let admin = principal(org, true);
        let peer = principal(org, false);
        let foreign = principal(other, false);
        let foreign_admin = principal(other, true);
        let cases = [
            (&owner, ACCESS_PRIVATE, Permission::Owner),
            (&admin, ACCESS_PRIVATE, Permission::Owner),
            (&peer, ACCESS_PRIVATE, Permission::None),
            (&peer, ACCESS_ORGANIZATION, Permission::View),
            (&peer, ACCESS_PUBLIC, Permission::View),
            (&foreign, ACCESS_ORGANIZATION, Permission::None),
            (&foreign, ACCESS_PUBLIC, Permission::View),
            (&foreign_admin, ACCESS_PRIVATE, Permission::None),
        ];
        for (p, mode, expected) in cases {
            let s = space(org, owner.id, mode);
            assert_eq!(permission(p, &s), expected, "mode {mode}");
        }
    }

    #[test]
    fn require_distinguishes_invisible_from_insufficient() {
        let org = Uuid::now_v7();
        let owner = principal(org, false);
        let peer = principal(org, false);
        let s = space(org, owner.id, ACCESS_ORGANIZATION);
        assert_eq!(require(&peer, &s, Permission::Owner).unwrap_err().code(), "OWNER_ONLY");
        assert_eq!(require(&peer, &s, Permission::Edit).unwrap_err().code(), "FORBIDDEN");
        let private = space(org, owner.id, ACCESS_PRIVATE);
        assert_eq!(require(&peer, &private, Permission::View).unwrap_err().code(), "NOT_FOUND");
        assert_eq!(require(&owner, &private, Permission::Owner).unwrap(), Permission::Owner);
    }
}
