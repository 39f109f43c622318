//! THE access policy. Every decision about who may see or change a space is made here:
//! [`permission`] for one space, [`visible_spaces`] as the SQL condition every list, count and
//! search applies (so pagination and totals stay right). Nothing else decides access.
//!
//! Permission of a principal on a space = the highest of (DESIGN.md §4):
//! - OWNER: the owner, or an admin of the space's organization;
//! - EDIT: an EDIT grant that applies, the assigned agent, an EDIT space token;
//! - VIEW: ORGANIZATION mode and same org; PUBLIC mode; a VIEW grant that applies; a VIEW token;
//! - otherwise NONE: the space behaves as if it did not exist.
use sea_orm::sea_query::{Condition, Query};
use sea_orm::ColumnTrait;

use crate::error::AppError;
use crate::principal::{Principal, PrincipalKind};
pub use crate::vocab::{
    Permission, SubjectKind, WorkspaceRole, ACCESS_ORGANIZATION, ACCESS_PRIVATE, ACCESS_PUBLIC,
};
use entity::{space, space_grant};

/// The principal's role in a workspace, if a member.
pub fn workspace_role(principal: &Principal, workspace_id: uuid::Uuid) -> Option<WorkspaceRole> {
    if principal.token.is_some() {
        return None;
    }
    principal
        .workspaces
        .iter()
        .find(|(id, _)| *id == workspace_id)
        .map(|(_, r)| *r)
}

/// Whether `principal` may read the personal data (e-mail, roles, departments) of a user of
/// `organization_id`: only users and agents of that same organization. A caller from another
/// organization may not, and neither may a space token: it reaches only its space, so to the
/// directory it is as foreign as another tenant, whatever organization its space belongs to.
pub fn reads_personal_data(principal: &Principal, organization_id: uuid::Uuid) -> bool {
    principal.is_member() && principal.organization_id == organization_id
}

/// Whether `grant` (a row of the space's grants) applies to `principal`.
fn grant_applies(principal: &Principal, grant: &space_grant::Model) -> bool {
    let Some(kind) = SubjectKind::parse(&grant.subject_kind) else {
        return false;
    };
    let id = grant.subject_id;
    match kind {
        SubjectKind::User => principal.kind == PrincipalKind::User && principal.id == id,
        SubjectKind::Agent => principal.kind == PrincipalKind::Agent && principal.id == id,
        SubjectKind::Role => principal.role_ids.contains(&id),
        SubjectKind::Department => principal.department_ids.contains(&id),
        SubjectKind::Tenant => principal.is_member() && principal.organization_id == id,
        SubjectKind::AllUsers => {
            principal.kind == PrincipalKind::User && principal.organization_id == id
        }
    }
}

/// The permission of `principal` on `space`, given the space's grants.
pub fn permission(
    principal: &Principal,
    space: &space::Model,
    grants: &[space_grant::Model],
) -> Permission {
    if let Some(token) = principal.token {
        return if token.space_id == space.id {
            token.permission
        } else {
            Permission::None
        };
    }
    if space.owner_id == principal.id || principal.is_admin_of(space.organization_id) {
        return Permission::Owner;
    }
    let mut best = Permission::None;
    if let Some(role) = space
        .workspace_id
        .and_then(|w| workspace_role(principal, w))
    {
        best = role.space_permission();
        if best == Permission::Owner {
            return best;
        }
    }
    if principal.kind == PrincipalKind::Agent && space.agent_id == Some(principal.id) {
        best = Permission::Edit;
    }
    let same_org = space.organization_id == principal.organization_id;
    match space.access_mode.as_str() {
        ACCESS_ORGANIZATION if same_org => best = best.max(Permission::View),
        ACCESS_PUBLIC => best = best.max(Permission::View),
        _ => {}
    }
    for grant in grants.iter().filter(|g| g.space_id == space.id) {
        if grant_applies(principal, grant) {
            best = best.max(Permission::parse(&grant.permission).min(Permission::Edit));
        }
    }
    best
}

/// The SQL condition that holds exactly for the spaces where [`permission`] is at least VIEW.
pub fn visible_spaces(principal: &Principal) -> Condition {
    if let Some(token) = principal.token {
        return Condition::all().add(space::Column::Id.eq(token.space_id));
    }
    let org = principal.organization_id;
    let mut any = Condition::any()
        .add(space::Column::OwnerId.eq(principal.id))
        .add(space::Column::AccessMode.eq(ACCESS_PUBLIC))
        .add(
            Condition::all()
                .add(space::Column::OrganizationId.eq(org))
                .add(space::Column::AccessMode.eq(ACCESS_ORGANIZATION)),
        );
    if principal.is_admin {
        any = any.add(space::Column::OrganizationId.eq(org));
    }
    if principal.kind == PrincipalKind::Agent {
        any = any.add(space::Column::AgentId.eq(principal.id));
    }
    if !principal.workspaces.is_empty() {
        // Every workspace role gives at least VIEW on the workspace's spaces.
        any = any
            .add(space::Column::WorkspaceId.is_in(principal.workspaces.iter().map(|(id, _)| *id)));
    }

    // Grants that apply to the principal, by subject (mirrors `grant_applies`).
    let subject = |kind: SubjectKind| space_grant::Column::SubjectKind.eq(kind.as_str());
    let mut applies = Condition::any().add(
        Condition::all()
            .add(subject(SubjectKind::Tenant))
            .add(space_grant::Column::SubjectId.eq(org)),
    );
    match principal.kind {
        PrincipalKind::User => {
            applies = applies
                .add(
                    Condition::all()
                        .add(subject(SubjectKind::User))
                        .add(space_grant::Column::SubjectId.eq(principal.id)),
                )
                .add(
                    Condition::all()
                        .add(subject(SubjectKind::AllUsers))
                        .add(space_grant::Column::SubjectId.eq(org)),
                );
        }
        PrincipalKind::Agent => {
            applies = applies.add(
                Condition::all()
                    .add(subject(SubjectKind::Agent))
                    .add(space_grant::Column::SubjectId.eq(principal.id)),
            );
        }
        PrincipalKind::SpaceToken => {}
    }
    if !principal.role_ids.is_empty() {
        applies = applies.add(
            Condition::all()
                .add(subject(SubjectKind::Role))
                .add(space_grant::Column::SubjectId.is_in(principal.role_ids.clone())),
        );
    }
    if !principal.department_ids.is_empty() {
        applies = applies.add(
            Condition::all()
                .add(subject(SubjectKind::Department))
                .add(space_grant::Column::SubjectId.is_in(principal.department_ids.clone())),
        );
    }
    any.add(
        space::Column::Id.in_subquery(
            Query::select()
                .column(space_grant::Column::SpaceId)
                .from(space_grant::Entity)
                .cond_where(applies)
                .and_where(
                    space_grant::Column::Permission
                        .is_in([Permission::View.as_str(), Permission::Edit.as_str()]),
                )
                .to_owned(),
        ),
    )
}

/// Fails unless `have` is at least `needed`: an invisible space is NOT_FOUND; a visible one
/// without the permission is OWNER_ONLY (owner operations) or FORBIDDEN (writes).
pub fn check(have: Permission, needed: Permission, space: &space::Model) -> Result<(), AppError> {
    if have >= needed {
        return Ok(());
    }
    Err(match (have, needed) {
        (Permission::None, _) => AppError::not_found("space", space.id),
        (_, Permission::Owner) => AppError::OwnerOnly("space"),
        _ => AppError::forbidden(format!(
            "this needs {} permission on space {}; you have {}",
            needed.as_str(),
            space.id,
            have.as_str()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::TokenScope;
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
            credential_id: Uuid::now_v7(),
            token: None,
            workspaces: vec![],
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
            agent_id: None,
            workspace_id: None,
            vector_version: 0,
            memory_count: 0,
            memory_bytes: 0,
            duplicate_policy: "ALLOW".into(),
            duplicate_threshold: 0.95,
            last_activity_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            deleted_at: None,
        }
    }

    fn grant(
        space: &space::Model,
        kind: SubjectKind,
        id: Uuid,
        perm: Permission,
    ) -> space_grant::Model {
        space_grant::Model {
            id: Uuid::now_v7(),
            space_id: space.id,
            subject_kind: kind.as_str().into(),
            subject_id: id,
            permission: perm.as_str().into(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn modes_owner_and_admins_follow_the_policy_table() {
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
            assert_eq!(permission(p, &s, &[]), expected, "mode {mode}");
        }
    }

    #[test]
    fn grants_apply_to_their_subjects_only() {
        let org = Uuid::now_v7();
        let owner = principal(org, false);
        let mut member = principal(org, false);
        let role = Uuid::now_v7();
        let dept = Uuid::now_v7();
        member.role_ids = vec![role];
        member.department_ids = vec![dept];
        let s = space(org, owner.id, ACCESS_PRIVATE);
        let other_org = Uuid::now_v7();
        let foreigner = principal(other_org, false);
        let cases = [
            (
                grant(&s, SubjectKind::User, member.id, Permission::Edit),
                &member,
                Permission::Edit,
            ),
            (
                grant(&s, SubjectKind::Role, role, Permission::View),
                &member,
                Permission::View,
            ),
            (
                grant(&s, SubjectKind::Department, dept, Permission::View),
                &member,
                Permission::View,
            ),
            (
                grant(&s, SubjectKind::AllUsers, org, Permission::Edit),
                &member,
                Permission::Edit,
            ),
            (
                grant(&s, SubjectKind::AllUsers, org, Permission::Edit),
                &foreigner,
                Permission::None,
            ),
            (
                grant(&s, SubjectKind::Tenant, other_org, Permission::View),
                &foreigner,
                Permission::View,
            ),
            (
                grant(&s, SubjectKind::Tenant, other_org, Permission::View),
                &member,
                Permission::None,
            ),
            (
                grant(&s, SubjectKind::User, Uuid::now_v7(), Permission::Edit),
                &member,
                Permission::None,
            ),
        ];
        for (g, p, expected) in cases {
            assert_eq!(
                permission(p, &s, std::slice::from_ref(&g)),
                expected,
                "{g:?}"
            );
        }
    }

    #[test]
    fn a_space_token_reaches_only_its_space() {
        let org = Uuid::now_v7();
        let owner = principal(org, false);
        let s = space(org, owner.id, ACCESS_PUBLIC);
        let mut token = principal(org, true);
        token.kind = PrincipalKind::SpaceToken;
        token.token = Some(TokenScope {
            space_id: s.id,
            permission: Permission::Edit,
            expires_at: None,
        });
        assert_eq!(permission(&token, &s, &[]), Permission::Edit);
        let other = space(org, owner.id, ACCESS_PUBLIC);
        assert_eq!(permission(&token, &other, &[]), Permission::None);
        // Personal data of its own organization's users is as closed to it as to a foreigner.
        assert!(!reads_personal_data(&token, org));
        assert!(reads_personal_data(&owner, org));
        assert!(!reads_personal_data(&principal(Uuid::now_v7(), true), org));
    }

    #[test]
    fn workspace_roles_give_their_permission_on_the_workspace_spaces() {
        let org = Uuid::now_v7();
        let ws = Uuid::now_v7();
        let mut s = space(org, Uuid::now_v7(), ACCESS_PRIVATE);
        s.workspace_id = Some(ws);
        for (role, expected) in [
            (WorkspaceRole::Viewer, Permission::View),
            (WorkspaceRole::Editor, Permission::Edit),
            (WorkspaceRole::Admin, Permission::Owner),
            (WorkspaceRole::Owner, Permission::Owner),
        ] {
            let mut p = principal(org, false);
            p.workspaces = vec![(ws, role)];
            assert_eq!(permission(&p, &s, &[]), expected, "{role:?}");
            p.workspaces = vec![(Uuid::now_v7(), role)];
            assert_eq!(permission(&p, &s, &[]), Permission::None);
        }
    }

    #[test]
    fn check_distinguishes_invisible_from_insufficient() {
        let s = space(Uuid::now_v7(), Uuid::now_v7(), ACCESS_ORGANIZATION);
        assert_eq!(
            check(Permission::View, Permission::Owner, &s)
                .unwrap_err()
                .code(),
            "OWNER_ONLY"
        );
        assert_eq!(
            check(Permission::View, Permission::Edit, &s)
                .unwrap_err()
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(
            check(Permission::None, Permission::View, &s)
                .unwrap_err()
                .code(),
            "NOT_FOUND"
        );
        assert!(check(Permission::Owner, Permission::Owner, &s).is_ok());
    }
}
