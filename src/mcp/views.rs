//! What tools and resources return: plain JSON views of memories and spaces (snake_case, like
//! the tool arguments) and the one-line text renderings that go with them.
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use entity::memory;
use memspace_core::error::AppResult;
use memspace_domain::memories::batch::tags_by_memory;
use memspace_domain::spaces::batch::{labels_by_space, tags_by_space};
use memspace_domain::spaces::service::SpaceAccess;

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_time(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref().map(time).map(Value::from).unwrap_or(Value::Null)
}

fn memory_view(m: &memory::Model, tags: Vec<String>) -> Value {
    let metadata = m
        .metadata
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": m.id.to_string(),
        "space_id": m.space_id.to_string(),
        "content": m.content,
        "tags": tags,
        "metadata": metadata,
        "importance": m.importance,
        "confidence": m.confidence,
        "recall_count": m.recall_count,
        "version": m.version,
        "thread_id": m.thread_id,
        "agent_id": m.agent_id.map(|a| a.to_string()),
        "author": { "kind": m.author_kind, "id": m.author_id.to_string() },
        "external_id": m.external_id,
        "created_at": time(&m.created_at),
        "updated_at": time(&m.updated_at),
        "expires_at": opt_time(&m.expires_at),
    })
}

/// Memories with their tags (one query for the whole list).
pub async fn memories(db: &impl ConnectionTrait, rows: &[memory::Model]) -> AppResult<Vec<Value>> {
    let ids: Vec<uuid::Uuid> = rows.iter().map(|m| m.id).collect();
    let mut tags = tags_by_memory(db, &ids).await?;
    Ok(rows
        .iter()
        .map(|m| memory_view(m, tags.remove(&m.id).unwrap_or_default()))
        .collect())
}

pub async fn memory(db: &impl ConnectionTrait, m: &memory::Model) -> AppResult<Value> {
    Ok(memories(db, std::slice::from_ref(m))
        .await?
        .pop()
        .unwrap_or(Value::Null))
}

/// Spaces with their tags and labels (one query each for the whole list).
pub async fn spaces(db: &impl ConnectionTrait, rows: &[SpaceAccess]) -> AppResult<Vec<Value>> {
    let ids: Vec<uuid::Uuid> = rows.iter().map(|a| a.space.id).collect();
    let mut tags = tags_by_space(db, &ids).await?;
    let mut labels = labels_by_space(db, &ids).await?;
    Ok(rows
        .iter()
        .map(|a| {
            let s = &a.space;
            let labels: Vec<Value> = labels
                .remove(&s.id)
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| json!({ "key": key, "value": value }))
                .collect();
            json!({
                "id": s.id.to_string(),
                "name": s.name,
                "description": s.description,
                "organization_id": s.organization_id.to_string(),
                "workspace_id": s.workspace_id.map(|w| w.to_string()),
                "owner": { "kind": s.owner_kind, "id": s.owner_id.to_string() },
                "access_mode": s.access_mode,
                "your_permission": a.permission.as_str(),
                "tags": tags.remove(&s.id).unwrap_or_default(),
                "labels": labels,
                "agent_id": s.agent_id.map(|x| x.to_string()),
                "embedder": s.embedder,
                "duplicate_policy": s.duplicate_policy,
                "uri": super::uri::uri_of(s.id),
                "last_activity_at": opt_time(&s.last_activity_at),
                "created_at": time(&s.created_at),
                "updated_at": time(&s.updated_at),
                "deleted_at": opt_time(&s.deleted_at),
            })
        })
        .collect())
}

pub async fn space(db: &impl ConnectionTrait, a: &SpaceAccess) -> AppResult<Value> {
    Ok(spaces(db, std::slice::from_ref(a))
        .await?
        .pop()
        .unwrap_or(Value::Null))
}

/// `- [id] content (tags: a, b)`, the content cut at 300 characters.
pub fn memory_line(v: &Value) -> String {
    let content = v["content"].as_str().unwrap_or_default();
    let mut short: String = content.chars().take(300).collect();
    if short.len() < content.len() {
        short.push('…');
    }
    let tags: Vec<&str> = v["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let id = v["id"].as_str().unwrap_or_default();
    if tags.is_empty() {
        format!("- [{id}] {short}")
    } else {
        format!("- [{id}] {short} (tags: {})", tags.join(", "))
    }
}

/// `- [id] name (PERMISSION): description`.
pub fn space_line(v: &Value) -> String {
    let mut line = format!(
        "- [{}] {} ({})",
        v["id"].as_str().unwrap_or_default(),
        v["name"].as_str().unwrap_or_default(),
        v["your_permission"].as_str().unwrap_or_default()
    );
    if let Some(d) = v["description"].as_str() {
        line.push_str(": ");
        line.push_str(d);
    }
    line
}
