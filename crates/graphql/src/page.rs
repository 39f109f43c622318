//! Relay's `PageInfo` object.
use async_graphql::SimpleObject;

/// Relay's page information.
#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
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
