//! sea-orm entities: one file per table, hand-written, no logic.
//!
//! Ids are `Uuid` and times `DateTimeUtc` so that one entity serves SQLite and PostgreSQL.
pub mod agent;
pub mod api_key;
pub mod audit_event;
pub mod chunk;
pub mod department;
pub mod memory;
pub mod memory_tag;
pub mod organization;
pub mod role;
pub mod space;
pub mod space_grant;
pub mod space_label;
pub mod space_link;
pub mod space_tag;
pub mod space_token;
pub mod user;
pub mod user_department;
pub mod user_role;
pub mod workspace;
pub mod workspace_member;
