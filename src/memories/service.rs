//! The memory domain: validation, access (EDIT to write, VIEW to read), chunking and embedding
//! outside the transaction, one transaction per write, the vector index kept current.
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Condition, Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use crate::access::Permission;
use crate::audit::service as audit;
use crate::auth::{Principal, PrincipalKind};
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::events::{BusMessage, MemoryEventKind};
use crate::pagination::{page_size, Cursor, Page};
use crate::search::chunking::chunk;
use crate::search::embedder::{self, to_bytes};
use crate::search::vector_index::VectorIndex;
use crate::spaces::service::{self as spaces, SpaceAccess};
use crate::{now, validate};
use entity::{agent, chunk as chunk_entity, memory, memory_tag, space};

pub const MAX_CONTENT_CHARS: usize = 32_768;
pub const MAX_TAGS: usize = 50;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const MAX_BATCH: usize = 1000;
const INSERT_BATCH: usize = 400;

/// A memory as a client sent it, before validation.
#[derive(Clone, Debug, Default)]
pub struct MemoryDraft {
    pub content: String,
    pub tags: Vec<String>,
    pub metadata: Option<serde_json::Value>,
    pub importance: Option<i32>,
    pub confidence: Option<f64>,
    /// As sent by the client; parsed (and checked to exist) in input order with the rest.
    pub agent_id: Option<String>,
    pub thread_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

fn agent_id(raw: Option<&str>) -> AppResult<Option<Uuid>> {
    raw.map(|a| {
        Uuid::parse_str(a.trim()).map_err(|_| AppError::validation("agentId", "is not a valid ID"))
    })
    .transpose()
}

/// A validated memory, ready to embed and store.
struct Valid {
    content: String,
    tags: Vec<String>,
    metadata: Option<String>,
    importance: i32,
    confidence: f64,
    agent_id: Option<Uuid>,
    thread_id: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

fn content(value: &str) -> AppResult<String> {
    let len = value.chars().count();
    if value.trim().is_empty() {
        return Err(AppError::validation("content", "must not be blank"));
    }
    if len > MAX_CONTENT_CHARS {
        return Err(AppError::validation(
            "content",
            format!("must be at most {MAX_CONTENT_CHARS} characters (got {len})"),
        ));
    }
    Ok(value.to_string())
}

fn tags(tags: Vec<String>) -> AppResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(AppError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags (got {})", tags.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.into_iter().enumerate() {
        let t = validate::text(&format!("tags[{i}]"), &t, 1, 64)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn metadata(value: Option<serde_json::Value>) -> AppResult<Option<String>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_METADATA_BYTES {
                return Err(AppError::validation(
                    "metadata",
                    format!(
                        "must be at most {MAX_METADATA_BYTES} bytes as JSON (got {})",
                        text.len()
                    ),
                ));
            }
            Ok(Some(text))
        }
        Some(_) => Err(AppError::validation("metadata", "must be a JSON object")),
    }
}

fn importance(v: Option<i32>) -> AppResult<i32> {
    let v = v.unwrap_or(5);
    if !(1..=10).contains(&v) {
        return Err(AppError::validation(
            "importance",
            "must be between 1 and 10",
        ));
    }
    Ok(v)
}

fn confidence(v: Option<f64>) -> AppResult<f64> {
    let v = v.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&v) {
        return Err(AppError::validation(
            "confidence",
            "must be between 0.0 and 1.0",
        ));
    }
    Ok(v)
}

fn thread_id(v: Option<String>) -> AppResult<Option<String>> {
    v.map(|t| validate::text("threadId", &t, 1, 255))
        .transpose()
}

fn expires_at(v: Option<DateTime<Utc>>) -> AppResult<Option<DateTime<Utc>>> {
    match v {
        Some(at) if at <= Utc::now() => {
            Err(AppError::validation("expiresAt", "must be in the future"))
        }
        other => Ok(other.map(|t| t.trunc_subsecs_micros())),
    }
}

trait TruncMicros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl TruncMicros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(6)
    }
}

fn validate_draft(d: MemoryDraft) -> AppResult<Valid> {
    Ok(Valid {
        content: content(&d.content)?,
        tags: tags(d.tags)?,
        metadata: metadata(d.metadata)?,
        importance: importance(d.importance)?,
        confidence: confidence(d.confidence)?,
        agent_id: agent_id(d.agent_id.as_deref())?,
        thread_id: thread_id(d.thread_id)?,
        expires_at: expires_at(d.expires_at)?,
    })
}

/// Adds the 0-based batch position to an error (`extensions.index`).
fn at_index(err: AppError, index: usize) -> AppError {
    match err {
        AppError::Validation {
            field,
            message,
            details,
        } => {
            let mut map = match details {
                Some(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            map.insert("index".into(), serde_json::json!(index));
            AppError::Validation {
                field,
                message: format!("item {index}: {message}"),
                details: Some(serde_json::Value::Object(map)),
            }
        }
        other => other,
    }
}

/// Refuses writes the principal may not make: needs EDIT; a soft-deleted space takes none.
fn writable(access: &SpaceAccess) -> AppResult<()> {
    crate::access::check(access.permission, Permission::Edit, &access.space)?;
    if access.space.deleted_at.is_some() {
        return Err(AppError::forbidden(format!(
            "space {} is deleted; restore it before writing",
            access.space.id
        )));
    }
    Ok(())
}

/// The agents named by the drafts that exist in the space's organization.
async fn known_agents(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    drafts: &[MemoryDraft],
) -> AppResult<Vec<Uuid>> {
    let wanted: Vec<Uuid> = drafts
        .iter()
        .filter_map(|d| agent_id(d.agent_id.as_deref()).ok().flatten())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    Ok(agent::Entity::find()
        .select_only()
        .column(agent::Column::Id)
        .filter(agent::Column::Id.is_in(wanted))
        .filter(agent::Column::OrganizationId.eq(organization_id))
        .into_tuple()
        .all(db)
        .await?)
}

/// Chunks and embeds texts on the blocking pool (CPU work never stalls the async runtime).
async fn embed_chunks(
    space: &space::Model,
    contents: Vec<String>,
) -> AppResult<Vec<Vec<(String, Vec<f32>)>>> {
    let embedder = embedder::registry().get(&space.embedder).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!(
            "embedder {} is not available",
            space.embedder
        ))
    })?;
    let size = space.chunk_size.max(1) as usize;
    let overlap = space.chunk_overlap.max(0) as usize;
    tokio::task::spawn_blocking(move || {
        contents
            .iter()
            .map(|c| {
                let mut pieces = chunk(c, size, overlap);
                if pieces.is_empty() {
                    pieces.push(c.trim().to_string());
                }
                let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
                let vectors = embedder.embed(&refs);
                pieces.into_iter().zip(vectors).collect()
            })
            .collect()
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("embedding task failed: {e}")))
}

fn author(principal: &Principal) -> (String, Uuid) {
    (principal.kind.as_str().to_string(), principal.id)
}

/// Marks a write in the space: activity time, and the next `vector_version`, returned. On
/// PostgreSQL the row lock this takes orders concurrent writers of one space, so versions
/// become visible in order.
async fn bump_space(db: &impl ConnectionTrait, space_id: Uuid) -> AppResult<i64> {
    space::Entity::update_many()
        .col_expr(space::Column::LastActivityAt, Expr::value(now()))
        .col_expr(
            space::Column::VectorVersion,
            Expr::col(space::Column::VectorVersion).add(1),
        )
        .filter(space::Column::Id.eq(space_id))
        .exec(db)
        .await?;
    let version: Option<i64> = space::Entity::find_by_id(space_id)
        .select_only()
        .column(space::Column::VectorVersion)
        .into_tuple()
        .one(db)
        .await?;
    version.ok_or_else(|| AppError::not_found("space", space_id))
}

fn event(
    principal: &Principal,
    bus: &crate::events::Bus,
    kind: MemoryEventKind,
    m: &memory::Model,
) -> BusMessage {
    BusMessage::Memory {
        kind,
        memory_id: m.id,
        space_id: m.space_id,
        actor_kind: principal.kind.as_str().to_string(),
        actor_id: principal.id,
        at: now(),
        origin: bus.origin(),
    }
}

/// Writes a batch of memories to one space: all or nothing; the first bad item is reported with
/// `extensions.index` when `batch` is set.
pub async fn create_many(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    space_id: Uuid,
    drafts: Vec<MemoryDraft>,
    batch: bool,
) -> AppResult<Vec<memory::Model>> {
    if batch && (drafts.is_empty() || drafts.len() > MAX_BATCH) {
        return Err(AppError::validation(
            "inputs",
            format!("must hold 1–{MAX_BATCH} memories (got {})", drafts.len()),
        ));
    }
    let access = spaces::load(&db.read, principal, space_id).await?;
    writable(&access)?;
    // Items are checked in input order, so the error names the first bad one.
    let agents = known_agents(&db.read, access.space.organization_id, &drafts).await?;
    let mut valid = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.into_iter().enumerate() {
        let checked = validate_draft(d).and_then(|v| match v.agent_id {
            Some(a) if !agents.contains(&a) => Err(AppError::validation(
                "agentId",
                format!("no agent {a} in the space's organization"),
            )),
            _ => Ok(v),
        });
        valid.push(checked.map_err(|e| if batch { at_index(e, i) } else { e })?);
    }
    let embedded = embed_chunks(
        &access.space,
        valid.iter().map(|v| v.content.clone()).collect(),
    )
    .await?;

    let at = now();
    let (author_kind, author_id) = author(principal);
    let mut rows: Vec<memory::Model> = Vec::with_capacity(valid.len());
    let mut tag_rows = Vec::new();
    let mut chunk_rows = Vec::new();
    let mut vectors = Vec::with_capacity(valid.len());
    for (v, chunks) in valid.into_iter().zip(embedded) {
        let id = Uuid::now_v7();
        for t in &v.tags {
            tag_rows.push(memory_tag::ActiveModel {
                memory_id: Set(id),
                tag: Set(t.clone()),
            });
        }
        let mut mem_vectors = Vec::with_capacity(chunks.len());
        for (ord, (text, vector)) in chunks.into_iter().enumerate() {
            chunk_rows.push(chunk_entity::ActiveModel {
                id: Set(Uuid::now_v7()),
                memory_id: Set(id),
                space_id: Set(space_id),
                ord: Set(ord as i32),
                text: Set(text),
                embedding: Set(to_bytes(&vector)),
            });
            mem_vectors.push((ord as i32, vector));
        }
        vectors.push((id, mem_vectors));
        rows.push(memory::Model {
            id,
            space_id,
            content_bytes: v.content.len() as i32,
            content: v.content,
            metadata: v.metadata,
            importance: v.importance,
            confidence: v.confidence,
            recall_count: 0,
            author_kind: author_kind.clone(),
            author_id,
            agent_id: v.agent_id,
            thread_id: v.thread_id,
            created_at: at,
            updated_at: at,
            expires_at: v.expires_at,
            index_seq: 0,
        });
    }

    let txn = db.write.begin().await?;
    // Access may have changed while we embedded.
    let access = spaces::load(&txn, principal, space_id).await?;
    writable(&access)?;
    let version = bump_space(&txn, space_id).await?;
    for r in rows.iter_mut() {
        r.index_seq = version;
    }
    for part in rows.chunks(INSERT_BATCH) {
        memory::Entity::insert_many(part.iter().cloned().map(active))
            .exec_without_returning(&txn)
            .await?;
    }
    for part in tag_rows.chunks(INSERT_BATCH) {
        memory_tag::Entity::insert_many(part.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    for part in chunk_rows.chunks(INSERT_BATCH) {
        chunk_entity::Entity::insert_many(part.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    audit::cross_tenant(&txn, principal, "memory.create", [&access.space]).await?;
    let events: Vec<BusMessage> = rows
        .iter()
        .map(|m| event(principal, &db.bus, MemoryEventKind::Created, m))
        .collect();
    db.bus.stage(&txn, &events).await?;
    txn.commit().await?;
    db.bus.committed(events);
    index.upsert(space_id, version, vectors).await;
    Ok(rows)
}

fn active(m: memory::Model) -> memory::ActiveModel {
    memory::ActiveModel {
        id: Set(m.id),
        space_id: Set(m.space_id),
        content: Set(m.content),
        content_bytes: Set(m.content_bytes),
        metadata: Set(m.metadata),
        importance: Set(m.importance),
        confidence: Set(m.confidence),
        recall_count: Set(m.recall_count),
        author_kind: Set(m.author_kind),
        author_id: Set(m.author_id),
        agent_id: Set(m.agent_id),
        thread_id: Set(m.thread_id),
        created_at: Set(m.created_at),
        updated_at: Set(m.updated_at),
        expires_at: Set(m.expires_at),
        index_seq: Set(m.index_seq),
    }
}

/// Not expired at this moment.
pub fn live() -> Condition {
    Condition::any()
        .add(memory::Column::ExpiresAt.is_null())
        .add(memory::Column::ExpiresAt.gt(Utc::now()))
}

/// A live memory and its space, if the principal can read it; NOT_FOUND otherwise.
async fn load(
    db: &impl ConnectionTrait,
    principal: &Principal,
    id: Uuid,
) -> AppResult<(memory::Model, SpaceAccess)> {
    let m = memory::Entity::find_by_id(id)
        .filter(live())
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("memory", id))?;
    let access = match spaces::load(db, principal, m.space_id).await {
        Err(AppError::NotFound { .. }) => return Err(AppError::not_found("memory", id)),
        other => other?,
    };
    Ok((m, access))
}

pub async fn get(db: &Db, principal: &Principal, id: Uuid) -> AppResult<memory::Model> {
    let (m, access) = load(&db.read, principal, id).await?;
    audit::cross_tenant(&db.write, principal, "memory.read", [&access.space]).await?;
    Ok(m)
}

/// A change to a memory; `None` leaves a field unchanged (`Some(None)` clears a nullable one).
#[derive(Clone, Debug, Default)]
pub struct MemoryPatch {
    pub content: Option<String>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Option<serde_json::Value>>,
    pub importance: Option<i32>,
    pub confidence: Option<f64>,
    pub thread_id: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

pub async fn update(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    id: Uuid,
    patch: MemoryPatch,
) -> AppResult<memory::Model> {
    let (current, access) = load(&db.read, principal, id).await?;
    writable(&access)?;
    let new_content = patch.content.as_deref().map(content).transpose()?;
    let new_tags = patch.tags.map(tags).transpose()?;
    let new_metadata = patch.metadata.map(metadata).transpose()?;
    let new_importance = patch.importance.map(|i| importance(Some(i))).transpose()?;
    let new_confidence = patch.confidence.map(|c| confidence(Some(c))).transpose()?;
    let new_thread = patch.thread_id.map(thread_id).transpose()?;
    let new_expiry = patch.expires_at.map(expires_at).transpose()?;
    let content_changed = new_content.as_ref().is_some_and(|c| *c != current.content);
    let embedded = if content_changed {
        let text = new_content.clone().unwrap_or_default();
        embed_chunks(&access.space, vec![text]).await?.pop()
    } else {
        None
    };

    let txn = db.write.begin().await?;
    let (current, access) = load(&txn, principal, id).await?;
    writable(&access)?;
    let mut m = current.clone();
    if let Some(c) = new_content {
        m.content_bytes = c.len() as i32;
        m.content = c;
    }
    if let Some(v) = new_metadata {
        m.metadata = v;
    }
    if let Some(v) = new_importance {
        m.importance = v;
    }
    if let Some(v) = new_confidence {
        m.confidence = v;
    }
    if let Some(v) = new_thread {
        m.thread_id = v;
    }
    if let Some(v) = new_expiry {
        m.expires_at = v;
    }
    let mut changed = m != current;
    if let Some(t) = new_tags {
        let mut old: Vec<String> = memory_tag::Entity::find()
            .filter(memory_tag::Column::MemoryId.eq(id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|r| r.tag)
            .collect();
        let mut sorted = t.clone();
        old.sort();
        sorted.sort();
        if old != sorted {
            memory_tag::Entity::delete_many()
                .filter(memory_tag::Column::MemoryId.eq(id))
                .exec(&txn)
                .await?;
            if !t.is_empty() {
                memory_tag::Entity::insert_many(t.into_iter().map(|tag| memory_tag::ActiveModel {
                    memory_id: Set(id),
                    tag: Set(tag),
                }))
                .exec_without_returning(&txn)
                .await?;
            }
            changed = true;
        }
    }
    let mut vectors = None;
    if let Some(chunks) = embedded {
        chunk_entity::Entity::delete_many()
            .filter(chunk_entity::Column::MemoryId.eq(id))
            .exec(&txn)
            .await?;
        let mut mem_vectors = Vec::new();
        let rows: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(ord, (text, vector))| {
                let row = chunk_entity::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    memory_id: Set(id),
                    space_id: Set(m.space_id),
                    ord: Set(ord as i32),
                    text: Set(text),
                    embedding: Set(to_bytes(&vector)),
                };
                mem_vectors.push((ord as i32, vector));
                row
            })
            .collect();
        chunk_entity::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        vectors = Some(mem_vectors);
    }
    let mut version = None;
    let mut events = Vec::new();
    if changed || vectors.is_some() {
        let v = bump_space(&txn, m.space_id).await?;
        if vectors.is_some() {
            m.index_seq = v;
        }
        version = Some(v);
        m.updated_at = now();
        memory::Entity::update(active(m.clone())).exec(&txn).await?;
        audit::cross_tenant(&txn, principal, "memory.update", [&access.space]).await?;
        events.push(event(principal, &db.bus, MemoryEventKind::Updated, &m));
        db.bus.stage(&txn, &events).await?;
    }
    txn.commit().await?;
    db.bus.committed(events);
    if let (Some(v), Some(version)) = (vectors, version) {
        index.upsert(m.space_id, version, vec![(id, v)]).await;
    }
    Ok(m)
}

pub async fn delete(
    db: &Db,
    index: &VectorIndex,
    principal: &Principal,
    id: Uuid,
) -> AppResult<Uuid> {
    let txn = db.write.begin().await?;
    let (m, access) = load(&txn, principal, id).await?;
    writable(&access)?;
    memory::Entity::delete_by_id(id).exec(&txn).await?;
    bump_space(&txn, m.space_id).await?;
    audit::cross_tenant(&txn, principal, "memory.delete", [&access.space]).await?;
    let events = vec![event(principal, &db.bus, MemoryEventKind::Deleted, &m)];
    db.bus.stage(&txn, &events).await?;
    txn.commit().await?;
    db.bus.committed(events);
    index.remove(m.space_id, &[id]).await;
    Ok(id)
}

/// Filters shared by `Space.memories` and `searchMemories`.
#[derive(Clone, Debug, Default)]
pub struct MemoryFilter {
    /// A memory matches when it has any of these tags.
    pub tags: Vec<String>,
    pub agent_id: Option<Uuid>,
    pub thread_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// The SQL condition of a filter (live memories only).
pub fn filter_condition(filter: &MemoryFilter) -> AppResult<Condition> {
    let mut cond = Condition::all().add(live());
    let wanted = tags(filter.tags.clone()).map_err(|e| match e {
        AppError::Validation { message, .. } => AppError::validation("filter.tags", message),
        other => other,
    })?;
    if !wanted.is_empty() {
        cond = cond.add(
            memory::Column::Id.in_subquery(
                Query::select()
                    .column(memory_tag::Column::MemoryId)
                    .from(memory_tag::Entity)
                    .and_where(memory_tag::Column::Tag.is_in(wanted))
                    .to_owned(),
            ),
        );
    }
    if let Some(a) = filter.agent_id {
        cond = cond.add(memory::Column::AgentId.eq(a));
    }
    if let Some(t) = &filter.thread_id {
        cond = cond.add(memory::Column::ThreadId.eq(t.clone()));
    }
    if let Some(t) = filter.created_after {
        cond = cond.add(memory::Column::CreatedAt.gt(t));
    }
    if let Some(t) = filter.created_before {
        cond = cond.add(memory::Column::CreatedAt.lt(t));
    }
    Ok(cond)
}

const CURSOR_KIND: &str = "memory:created";

pub fn cursor_of(m: &memory::Model) -> String {
    Cursor::new(
        CURSOR_KIND,
        vec![
            m.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            m.id.to_string(),
        ],
    )
    .encode()
}

/// A page of a space's memories (the caller has already been given the space), oldest first
/// unless `descending`.
pub async fn list(
    db: &Db,
    principal: &Principal,
    space: &space::Model,
    first: Option<i32>,
    after: Option<&str>,
    filter: &MemoryFilter,
    descending: bool,
) -> AppResult<(Page<memory::Model>, Condition)> {
    let limit = page_size(first);
    let cond = Condition::all()
        .add(memory::Column::SpaceId.eq(space.id))
        .add(filter_condition(filter)?);
    let mut select = memory::Entity::find().filter(cond.clone());
    if let Some(raw) = after {
        let bad = || AppError::invalid_argument("after", "malformed or foreign cursor");
        let c = Cursor::decode("after", raw, CURSOR_KIND, 2)?;
        let at = DateTime::parse_from_rfc3339(&c.values[0])
            .map_err(|_| bad())?
            .with_timezone(&Utc);
        let id = Uuid::parse_str(&c.values[1]).map_err(|_| bad())?;
        let (by_time, by_id) = if descending {
            (memory::Column::CreatedAt.lt(at), memory::Column::Id.lt(id))
        } else {
            (memory::Column::CreatedAt.gt(at), memory::Column::Id.gt(id))
        };
        select = select.filter(
            Condition::any().add(by_time).add(
                Condition::all()
                    .add(memory::Column::CreatedAt.eq(at))
                    .add(by_id),
            ),
        );
    }
    select = if descending {
        select
            .order_by_desc(memory::Column::CreatedAt)
            .order_by_desc(memory::Column::Id)
    } else {
        select
            .order_by_asc(memory::Column::CreatedAt)
            .order_by_asc(memory::Column::Id)
    };
    let rows = select.limit(limit + 1).all(&db.read).await?;
    audit::cross_tenant(&db.write, principal, "memory.read", [space]).await?;
    Ok((Page::from_overfetch(rows, limit, after.is_some()), cond))
}

pub async fn count(db: &impl ConnectionTrait, cond: Condition) -> AppResult<u64> {
    Ok(memory::Entity::find().filter(cond).count(db).await?)
}

/// Deletes expired memories; returns how many went.
pub async fn sweep_expired(db: &Db, index: &VectorIndex) -> AppResult<usize> {
    let expired: Vec<(Uuid, Uuid)> = memory::Entity::find()
        .select_only()
        .column(memory::Column::Id)
        .column(memory::Column::SpaceId)
        .filter(memory::Column::ExpiresAt.lte(Utc::now()))
        .limit(10_000)
        .into_tuple()
        .all(&db.read)
        .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = expired.iter().map(|(id, _)| *id).collect();
    for part in ids.chunks(INSERT_BATCH) {
        memory::Entity::delete_many()
            .filter(memory::Column::Id.is_in(part.iter().copied()))
            .exec(&db.write)
            .await?;
    }
    let mut by_space: std::collections::HashMap<Uuid, Vec<Uuid>> = Default::default();
    for (id, space_id) in expired {
        by_space.entry(space_id).or_default().push(id);
    }
    for (space_id, ids) in by_space {
        index.remove(space_id, &ids).await;
    }
    Ok(ids.len())
}

/// Used by search: the subset of `ids` that pass `filter` (live, tags, agent, thread, time).
pub async fn matching(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    filter: &MemoryFilter,
) -> AppResult<Vec<memory::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let cond = filter_condition(filter)?;
    let mut out = Vec::with_capacity(ids.len());
    for part in ids.chunks(INSERT_BATCH) {
        out.extend(
            memory::Entity::find()
                .filter(memory::Column::Id.is_in(part.iter().copied()))
                .filter(cond.clone())
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

/// The author of a memory as a principal kind (users and agents only).
pub fn author_kind(m: &memory::Model) -> Option<PrincipalKind> {
    PrincipalKind::parse(&m.author_kind).filter(|k| *k != PrincipalKind::SpaceToken)
}
