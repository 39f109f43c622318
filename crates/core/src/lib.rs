//! Memspace's foundation, below every other crate: the error type and its codes, the clock,
//! input validation, globs, the pagination core, the principal a request runs as, the shared
//! vocabulary, and THE access policy. It knows no transport, no engine and no use case.
pub mod access;
pub mod clock;
pub mod error;
pub mod glob;
pub mod limits;
pub mod page;
pub mod principal;
pub mod validate;
pub mod vocab;

pub use error::{AppError, AppResult};
pub use principal::{Principal, PrincipalKind};
