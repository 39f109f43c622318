//! Relay's `PageInfo` object and the four paging arguments.
use async_graphql::SimpleObject;
use memspace_core::error::AppError;
use memspace_core::page::PageArgs;

/// A connection field's `first`/`after` (forward) or `last`/`before` (backward) arguments.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

impl Window {
    pub fn args(&self) -> Result<PageArgs<'_>, AppError> {
        PageArgs::new(
            self.first,
            self.after.as_deref(),
            self.last,
            self.before.as_deref(),
        )
    }
}

/// Relay's page information.
#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    /// Whether edges follow this page (forward paging; false when paging backward).
    pub has_next_page: bool,
    /// Whether edges precede this page (backward paging; false when paging forward).
    pub has_previous_page: bool,
    /// The first edge's cursor; null for an empty page.
    pub start_cursor: Option<String>,
    /// The last edge's cursor; null for an empty page.
    pub end_cursor: Option<String>,
}

impl From<memspace_core::page::PageInfo> for PageInfo {
    fn from(p: memspace_core::page::PageInfo) -> Self {
        PageInfo {
            has_next_page: p.has_next_page,
            has_previous_page: p.has_previous_page,
            start_cursor: p.start_cursor,
            end_cursor: p.end_cursor,
        }
    }
}
