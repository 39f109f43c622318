//! The `recall` prompt: runs a search and frames the hits for a model.
use std::sync::Arc;

use rmcp::model::{
    GetPromptResult, JsonObject, ListPromptsResult, Prompt, PromptArgument, PromptMessage, Role,
};

use super::caller::Caller;
use super::views;
use memspace_core::error::{AppError, AppResult};
use memspace_domain::db::Db;
use memspace_domain::search::{self, SearchRequest};
use memspace_engine::vector_index::VectorIndex;

pub const RECALL: &str = "recall";
const HITS: i32 = 10;

pub fn list() -> ListPromptsResult {
    ListPromptsResult::with_all_items(vec![Prompt::new(
        RECALL,
        Some("Recall what the shared memory knows about a question, framed for answering it"),
        Some(vec![
            PromptArgument::new("query")
                .with_description("The question or topic")
                .with_required(true),
            PromptArgument::new("space_id")
                .with_description("Only this space (default: every space you can read)")
                .with_required(false),
        ]),
    )])
}

fn argument<'a>(args: &'a Option<JsonObject>, name: &str) -> Option<&'a str> {
    args.as_ref()?.get(name)?.as_str()
}

pub async fn get(
    db: &Db,
    index: &Arc<VectorIndex>,
    recall: &memspace_domain::search::Recall,
    who: &Caller,
    name: &str,
    args: &Option<JsonObject>,
) -> AppResult<GetPromptResult> {
    if name != RECALL {
        return Err(AppError::not_found("prompt", name));
    }
    let query = argument(args, "query")
        .ok_or_else(|| AppError::validation("query", "is required"))?
        .to_string();
    let space_ids = argument(args, "space_id")
        .map(|id| uuid::Uuid::parse_str(id.trim()).map_err(|_| AppError::not_found("space", id)))
        .transpose()?
        .map(|id| vec![id]);
    let req = SearchRequest {
        query: query.clone(),
        space_ids,
        mode: Default::default(),
        filter: Default::default(),
        limit: HITS,
        min_score: None,
    };
    let hits = search::search(db, index, recall, &who.principal, req).await?;
    let models: Vec<entity::memory::Model> = hits.into_iter().map(|h| h.memory).collect();
    let lines: Vec<String> = views::memories(&db.read, &models)
        .await?
        .iter()
        .map(views::memory_line)
        .collect();
    let known = if lines.is_empty() {
        "The shared memory holds nothing relevant.".to_string()
    } else {
        format!(
            "What the shared memory knows (most relevant first; ids in brackets):\n{}",
            lines.join("\n")
        )
    };
    let text = format!(
        "{known}\n\nUsing these memories where they help, and saying so when they do not \
         cover it, answer: {query}"
    );
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(format!("{} memories recalled for {query:?}", models.len())),
    )
}
