//! Who is calling: API keys, and the [`Principal`] a request runs as.
pub mod keys;
pub mod principal;

pub use principal::{Principal, PrincipalKind};
