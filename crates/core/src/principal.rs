use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::vocab::{Permission, WorkspaceRole};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Agent,
    /// A space token: its space is its whole world.
    SpaceToken,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "USER",
            PrincipalKind::Agent => "AGENT",
            PrincipalKind::SpaceToken => "SPACE_TOKEN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "USER" => Some(PrincipalKind::User),
            "AGENT" => Some(PrincipalKind::Agent),
            "SPACE_TOKEN" => Some(PrincipalKind::SpaceToken),
            _ => None,
        }
    }
}

/// What a space token may reach: one space, with VIEW or EDIT, until it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenScope {
    pub space_id: Uuid,
    pub permission: Permission,
    /// When the token stops working (a cached principal must not outlive it).
    pub expires_at: Option<DateTime<Utc>>,
}

/// The identity a request runs as, resolved once from its credential.
#[derive(Clone, Debug)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The user, agent or space-token id.
    pub id: Uuid,
    pub organization_id: Uuid,
    /// Org admins hold OWNER on every space of their organization.
    pub is_admin: bool,
    pub role_ids: Vec<Uuid>,
    pub department_ids: Vec<Uuid>,
    /// The API key or space token the request came with.
    pub credential_id: Uuid,
    /// Set for space tokens only.
    pub token: Option<TokenScope>,
    /// The workspaces the user is a member of, with the role held.
    pub workspaces: Vec<(Uuid, WorkspaceRole)>,
}

impl Principal {
    pub fn is_admin_of(&self, organization_id: Uuid) -> bool {
        self.is_admin && self.token.is_none() && self.organization_id == organization_id
    }

    /// A user or agent acting in its own organization (not a space token).
    pub fn is_member(&self) -> bool {
        self.token.is_none()
    }
}
