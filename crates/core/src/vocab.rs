//! The shared vocabulary: enums that every layer speaks. Their `derive(async_graphql::Enum)` is the
//! one GraphQL item allowed below `crates/graphql` besides the error conversion (checked in CI).
use serde::{Deserialize, Serialize};

/// A principal's permission on a space; ordered, so `>=` reads as "at least".
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "NONE",
            Permission::View => "VIEW",
            Permission::Edit => "EDIT",
            Permission::Owner => "OWNER",
        }
    }

    pub fn parse(s: &str) -> Permission {
        match s {
            "VIEW" => Permission::View,
            "EDIT" => Permission::Edit,
            "OWNER" => Permission::Owner,
            _ => Permission::None,
        }
    }
}

/// Whom a grant is for.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[graphql(name = "GrantSubjectKind")]
pub enum SubjectKind {
    /// One user of the space's organization.
    User,
    /// Every user holding the role.
    Role,
    /// Every user in the department.
    Department,
    /// One agent of the space's organization.
    Agent,
    /// Every principal of another organization (cross-tenant sharing).
    Tenant,
    /// Every user of the space's organization (the seeds' `"*"`).
    AllUsers,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "USER",
            SubjectKind::Role => "ROLE",
            SubjectKind::Department => "DEPARTMENT",
            SubjectKind::Agent => "AGENT",
            SubjectKind::Tenant => "TENANT",
            SubjectKind::AllUsers => "ALL_USERS",
        }
    }

    pub fn parse(s: &str) -> Option<SubjectKind> {
        Some(match s {
            "USER" => SubjectKind::User,
            "ROLE" => SubjectKind::Role,
            "DEPARTMENT" => SubjectKind::Department,
            "AGENT" => SubjectKind::Agent,
            "TENANT" => SubjectKind::Tenant,
            "ALL_USERS" => SubjectKind::AllUsers,
            _ => return None,
        })
    }
}

/// A member's role in a workspace, and what it gives on the workspace's spaces.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkspaceRole {
    /// VIEW on the workspace's spaces.
    Viewer,
    /// EDIT on the workspace's spaces.
    Editor,
    /// OWNER on the workspace's spaces; manages members (except owners).
    Admin,
    /// OWNER on the workspace's spaces; manages everything in the workspace.
    Owner,
}

impl WorkspaceRole {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceRole::Viewer => "VIEWER",
            WorkspaceRole::Editor => "EDITOR",
            WorkspaceRole::Admin => "ADMIN",
            WorkspaceRole::Owner => "OWNER",
        }
    }

    pub fn parse(s: &str) -> Option<WorkspaceRole> {
        Some(match s {
            "VIEWER" => WorkspaceRole::Viewer,
            "EDITOR" => WorkspaceRole::Editor,
            "ADMIN" => WorkspaceRole::Admin,
            "OWNER" => WorkspaceRole::Owner,
            _ => return None,
        })
    }

    /// The permission this role gives on every space of the workspace.
    pub fn space_permission(self) -> Permission {
        match self {
            WorkspaceRole::Viewer => Permission::View,
            WorkspaceRole::Editor => Permission::Edit,
            WorkspaceRole::Admin | WorkspaceRole::Owner => Permission::Owner,
        }
    }
}

pub const ACCESS_PRIVATE: &str = "PRIVATE";

pub const ACCESS_ORGANIZATION: &str = "ORGANIZATION";

pub const ACCESS_PUBLIC: &str = "PUBLIC";

/// Who can see a space beyond its owner and grantees.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum AccessMode {
    /// Only the owner, org admins and explicit grantees.
    #[default]
    Private,
    /// Every principal of the space's organization can read it.
    Organization,
    /// Every authenticated principal of any organization can read it.
    Public,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Private => ACCESS_PRIVATE,
            AccessMode::Organization => ACCESS_ORGANIZATION,
            AccessMode::Public => ACCESS_PUBLIC,
        }
    }

    pub fn parse(s: &str) -> AccessMode {
        match s {
            ACCESS_ORGANIZATION => AccessMode::Organization,
            ACCESS_PUBLIC => AccessMode::Public,
            _ => AccessMode::Private,
        }
    }
}

/// What to do when a new memory duplicates an existing one in its space.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum DuplicatePolicy {
    /// Store it anyway.
    #[default]
    Allow,
    /// Refuse the write with DUPLICATE (`extensions.existingId`).
    Reject,
    /// Store the new memory; the old one gets `supersededBy` and is hidden from lists and searches.
    Supersede,
    /// Keep the existing memory and fold the new one into it (tags united, metadata merged key
    /// by key, importance and confidence the max); it is returned instead.
    Merge,
}

impl DuplicatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicatePolicy::Allow => "ALLOW",
            DuplicatePolicy::Reject => "REJECT",
            DuplicatePolicy::Supersede => "SUPERSEDE",
            DuplicatePolicy::Merge => "MERGE",
        }
    }

    pub fn parse(s: &str) -> DuplicatePolicy {
        match s {
            "REJECT" => DuplicatePolicy::Reject,
            "SUPERSEDE" => DuplicatePolicy::Supersede,
            "MERGE" => DuplicatePolicy::Merge,
            _ => DuplicatePolicy::Allow,
        }
    }
}

pub const DEFAULT_THRESHOLD: f64 = 0.95;

/// How a search ranks memories.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Reciprocal rank fusion (k = 60) of KEYWORD and SEMANTIC.
    #[default]
    Hybrid,
    /// Cosine similarity of the query's embedding to the memories' chunk embeddings.
    Semantic,
    /// Full-text: memories holding any of the query's stemmed terms, ranked by BM25 / ts_rank_cd.
    Keyword,
}

/// What kind of model turns text into vectors.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum EmbedderKind {
    /// Feature hashing over words and character n-grams: matches shared word forms, not meaning.
    Lexical,
    /// A neural sentence encoder run in-process.
    Neural,
    /// An external embeddings API.
    Remote,
}

pub const WORKSPACE_TYPE_CUSTOM: &str = "CUSTOM";

/// The kind of workspace.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum WorkspaceType {
    /// A workspace set up by hand (the only kind so far).
    #[default]
    Custom,
}

/// How documents get into a workspace.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum DocumentUploadMethod {
    /// Documents are added by hand.
    #[default]
    Manual,
    /// Documents are kept in sync from a source.
    Synced,
}

impl DocumentUploadMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentUploadMethod::Manual => "MANUAL",
            DocumentUploadMethod::Synced => "SYNCED",
        }
    }
    pub fn parse(s: &str) -> Self {
        if s == "SYNCED" {
            DocumentUploadMethod::Synced
        } else {
            DocumentUploadMethod::Manual
        }
    }
}

/// What happened to a memory.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryEventKind {
    /// The memory was written.
    Created,
    /// The memory was changed.
    Updated,
    /// The memory was deleted (or expired).
    Deleted,
}
