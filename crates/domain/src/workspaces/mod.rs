//! Workspaces: team rooms that group spaces and hand their members access by role.
pub mod service;
pub mod stats;
