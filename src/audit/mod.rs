//! The audit log: cross-tenant access and sensitive changes, readable by org admins.
pub mod graphql;
pub mod service;
