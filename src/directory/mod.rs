//! Organizations, users, roles, departments, agents and API keys.
pub mod graphql;
pub mod loaders;
pub mod service;
