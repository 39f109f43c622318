//! Workspaces: team rooms that group spaces and hand their members access by role.
pub mod graphql;
pub mod loaders;
pub mod service;
