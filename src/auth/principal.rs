use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Agent,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "USER",
            PrincipalKind::Agent => "AGENT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "USER" => Some(PrincipalKind::User),
            "AGENT" => Some(PrincipalKind::Agent),
            _ => None,
        }
    }
}

/// The identity a request runs as, resolved once from its API key.
#[derive(Clone, Debug)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub id: Uuid,
    pub organization_id: Uuid,
    /// Org admins hold OWNER on every space of their organization.
    pub is_admin: bool,
    pub role_ids: Vec<Uuid>,
    pub department_ids: Vec<Uuid>,
    /// The API key the request came with.
    pub api_key_id: Uuid,
}

impl Principal {
    pub fn is_admin_of(&self, organization_id: Uuid) -> bool {
        self.is_admin && self.organization_id == organization_id
    }
}
