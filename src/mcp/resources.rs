//! Resources: every space the caller can read is `memspace://spaces/{id}`, its content the
//! space and its newest memories (JSON). Listed per caller, paginated with the spaces cursor.
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::json;
use uuid::Uuid;

use super::caller::Caller;
pub use super::uri::{space_of, uri_of};
use super::views;
use entity::memory;
use memspace_core::error::AppResult;
use memspace_domain::db::Db;
use memspace_domain::memories::service::{self as memories, MemoryFilter};
use memspace_domain::spaces::service::{self as spaces, ListQuery, SpaceAccess};

pub const TEMPLATE: &str = "memspace://spaces/{id}";
const MIME: &str = "application/json";
/// Memories shown in a space resource.
const RECENT_IN_RESOURCE: i32 = 20;
/// Resources per `resources/list` page.
const LIST_PAGE: i32 = 100;

/// A live space's newest memories (NOT_FOUND when it is not readable or deleted); the read is
/// audited by the domain when it crosses organizations.
pub async fn recent(
    db: &Db,
    who: &Caller,
    space_id: Uuid,
    limit: Option<i32>,
    after: Option<&str>,
) -> AppResult<(SpaceAccess, Vec<memory::Model>, Option<String>)> {
    let access = spaces::load_live(&db.read, &who.principal, space_id).await?;
    let (page, _) = memories::list(
        db,
        &who.principal,
        &access.space,
        limit,
        after,
        &MemoryFilter::default(),
        true,
    )
    .await?;
    let next = if page.has_next_page {
        page.items.last().map(memories::cursor_of)
    } else {
        None
    };
    Ok((access, page.items, next))
}

pub async fn list(db: &Db, who: &Caller, cursor: Option<String>) -> AppResult<ListResourcesResult> {
    let query = ListQuery {
        first: Some(LIST_PAGE),
        after: cursor,
        descending: true,
        with_grants: true,
        ..Default::default()
    };
    let page = spaces::list(db, &who.principal, query).await?.page;
    let next = if page.has_next_page {
        page.items
            .last()
            .map(|a| spaces::cursor_of(&a.space, Default::default()))
    } else {
        None
    };
    let resources = page
        .items
        .iter()
        .map(|a| {
            let mut r = Resource::new(uri_of(a.space.id), a.space.name.clone())
                .with_title(a.space.name.clone())
                .with_mime_type(MIME);
            if let Some(d) = &a.space.description {
                r = r.with_description(d.clone());
            }
            r
        })
        .collect();
    let mut result = ListResourcesResult::with_all_items(resources);
    result.next_cursor = next;
    Ok(result)
}

pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![ResourceTemplate::new(TEMPLATE, "space")
        .with_description("A space you can read, with its newest memories")
        .with_mime_type(MIME)])
}

pub async fn read(db: &Db, who: &Caller, uri: &str) -> AppResult<ReadResourceResult> {
    let space_id = space_of(uri)?;
    // `get` records the cross-tenant read of the space, `recent` that of its memories.
    let access = spaces::get(db, &who.principal, space_id).await?;
    let (_, rows, next) = recent(db, who, access.space.id, Some(RECENT_IN_RESOURCE), None).await?;
    let body = json!({
        "space": views::space(&db.read, &access).await?,
        "recent_memories": views::memories(&db.read, &rows).await?,
        "more_memories": next.is_some(),
    });
    Ok(ReadResourceResult::new(vec![ResourceContents::text(
        body.to_string(),
        uri,
    )
    .with_mime_type(MIME)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_space_uri_round_trips_and_others_are_not_found() {
        let id = Uuid::now_v7();
        assert_eq!(space_of(&uri_of(id)).ok(), Some(id));
        for bad in [
            "memspace://spaces/x",
            "file:///etc/passwd",
            "memspace://memories/1",
        ] {
            assert_eq!(space_of(bad).err().map(|e| e.code()), Some("NOT_FOUND"));
        }
    }
}
