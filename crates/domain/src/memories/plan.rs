//! What a batch of new memories does to a space, decided without the database: each item
//! becomes a new row, returns an existing memory (same external id), merges into a duplicate,
//! supersedes one, or fails the batch (REJECT). `create` reads what the plan needs, calls
//! [`plan`], and applies the result in one transaction; the unit tests below check the plan alone.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::draft::Valid;
use super::duplicates::merge_metadata;
use super::store::Counted;
use entity::memory;
use memspace_core::error::{AppError, AppResult};
use memspace_core::vocab::DuplicatePolicy;

/// Chunks of one memory with their vectors, in order.
pub(super) type Chunks = Vec<(String, Vec<f32>)>;

/// A validated item and its embedded chunks.
pub(super) struct Item {
    pub valid: Valid,
    pub chunks: Chunks,
}

/// What the database holds that the plan depends on, read in the write transaction.
#[derive(Default)]
pub(super) struct Stored {
    /// Memories of the space by external id (for idempotent imports).
    pub by_external: HashMap<String, memory::Model>,
    /// Live memories not superseded, by content hash (oldest first wins).
    pub by_hash: HashMap<String, memory::Model>,
    /// For an item (by position), the live, not superseded stored memories whose first chunk is
    /// at least as close as the threshold to the item's first chunk, closest first.
    pub similar: HashMap<usize, Vec<memory::Model>>,
}

/// The facts of the write that every new row shares.
pub(super) struct Context {
    pub space_id: Uuid,
    /// The space's vector version this write creates (`index_seq` of new rows).
    pub version: i64,
    pub at: DateTime<Utc>,
    pub author_kind: String,
    pub author_id: Uuid,
    pub space_policy: DuplicatePolicy,
    pub threshold: f32,
    /// Errors carry the item's position (`extensions.index`).
    pub batch: bool,
}

/// Where an item of a batch ended up.
#[derive(Debug, PartialEq)]
pub(super) enum Slot {
    New(usize),
    Existing(Box<memory::Model>),
    Touched(Uuid),
}

/// A duplicate found for a new memory: an earlier item of the same batch, or a stored memory.
enum Dup {
    Batch(usize),
    Stored(Box<memory::Model>),
}

/// A stored memory the batch changes (MERGE or SUPERSEDE), with the tags to add to it.
#[derive(Debug)]
pub(super) struct Touched {
    pub memory: memory::Model,
    pub extra_tags: Vec<String>,
    /// Its version when the transaction read it: the guard of the update.
    pub read_version: i32,
}

/// The decided batch.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub slots: Vec<Slot>,
    pub rows: Vec<memory::Model>,
    pub row_tags: Vec<Vec<String>>,
    pub row_chunks: Vec<Chunks>,
    /// Stored memories changed, in the order the batch first touched them.
    pub touched: Vec<Touched>,
}

impl Plan {
    fn touched_mut(&mut self, id: Uuid) -> Option<&mut Touched> {
        self.touched.iter_mut().find(|t| t.memory.id == id)
    }

    fn touched(&self, id: Uuid) -> Option<&Touched> {
        self.touched.iter().find(|t| t.memory.id == id)
    }

    /// A stored memory as the batch has left it so far.
    fn current(&self, m: &memory::Model) -> memory::Model {
        self.touched(m.id)
            .map(|t| t.memory.clone())
            .unwrap_or_else(|| m.clone())
    }

    fn touch(&mut self, m: &memory::Model) -> &mut Touched {
        if self.touched(m.id).is_none() {
            self.touched.push(Touched {
                memory: m.clone(),
                extra_tags: Vec::new(),
                read_version: m.version,
            });
        }
        self.touched_mut(m.id).expect("just inserted")
    }

    /// What the batch does to the space's counters: new rows count unless a later item
    /// superseded them; a stored memory stops counting when superseded (duplicates are only
    /// found among memories that are not). MERGE keeps the stored content: no change.
    pub fn delta(&self) -> Counted {
        self.rows
            .iter()
            .map(Counted::of_model)
            .chain(
                self.touched
                    .iter()
                    .filter(|t| t.memory.superseded_by.is_some())
                    .map(|t| -Counted::of(None, t.memory.content_bytes)),
            )
            .fold(Counted::default(), |a, b| a + b)
    }

    /// The memory each item ended up as, in input order.
    pub fn results(&self) -> Vec<memory::Model> {
        self.slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::New(pos) => self.rows.get(*pos).cloned(),
                Slot::Existing(m) => Some((**m).clone()),
                Slot::Touched(id) => self.touched(*id).map(|t| t.memory.clone()),
            })
            .collect()
    }
}

/// Decides every item in input order; REJECT of a duplicate fails the whole batch.
pub(super) fn plan(items: Vec<Item>, stored: &Stored, cx: &Context) -> AppResult<Plan> {
    let mut p = Plan::default();
    for (i, item) in items.into_iter().enumerate() {
        if let Some(slot) = same_external_id(&p, stored, &item.valid) {
            p.slots.push(slot);
            continue;
        }
        let policy = item.valid.on_duplicate.unwrap_or(cx.space_policy);
        let duplicate = match policy {
            DuplicatePolicy::Allow => None,
            _ => find_duplicate(&p, stored, i, &item, cx.threshold),
        };
        match (policy, duplicate) {
            (DuplicatePolicy::Reject, Some(dup)) => return Err(rejected(&p, &dup, i, cx)),
            (DuplicatePolicy::Merge, Some(dup)) => merge(&mut p, dup, item.valid, cx.at),
            (DuplicatePolicy::Supersede, Some(dup)) => {
                let row = new_row(&item.valid, cx, Some(dup_id(&p, &dup)));
                match &dup {
                    Dup::Batch(pos) => p.rows[*pos].superseded_by = Some(row.id),
                    Dup::Stored(m) => {
                        let t = p.touch(m);
                        t.memory.superseded_by = Some(row.id);
                        t.memory.version += 1;
                        t.memory.updated_at = cx.at;
                    }
                }
                push_row(&mut p, row, item);
            }
            _ => {
                let row = new_row(&item.valid, cx, None);
                push_row(&mut p, row, item);
            }
        }
    }
    Ok(p)
}

/// An item whose external id is already stored, or came earlier in the batch.
fn same_external_id(p: &Plan, stored: &Stored, v: &Valid) -> Option<Slot> {
    let e = v.external_id.as_ref()?;
    if let Some(existing) = stored.by_external.get(e) {
        return Some(Slot::Existing(Box::new(existing.clone())));
    }
    p.rows
        .iter()
        .position(|r| r.external_id.as_ref() == Some(e))
        .map(Slot::New)
}

/// The memory a new one duplicates: same normalised content, or a first chunk whose cosine to
/// the new memory's first chunk reaches the threshold. Earlier items of the batch count, and a
/// memory superseded earlier in the batch no longer does.
fn find_duplicate(p: &Plan, stored: &Stored, i: usize, item: &Item, threshold: f32) -> Option<Dup> {
    let live_in_batch = |pos: usize| p.rows[pos].superseded_by.is_none();
    let hash = &item.valid.hash;
    if let Some(pos) =
        (0..p.rows.len()).find(|&pos| p.rows[pos].content_hash == *hash && live_in_batch(pos))
    {
        return Some(Dup::Batch(pos));
    }
    let not_superseded = |m: &memory::Model| p.current(m).superseded_by.is_none();
    if let Some(m) = stored.by_hash.get(hash).filter(|m| not_superseded(m)) {
        return Some(Dup::Stored(Box::new(p.current(m))));
    }
    let first = item
        .chunks
        .first()
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[]);
    if first.iter().all(|x| *x == 0.0) {
        return None;
    }
    let close = |pos: usize| {
        p.row_chunks[pos]
            .first()
            .is_some_and(|(_, v)| memspace_engine::embedder::dot(first, v) >= threshold)
    };
    if let Some(pos) = (0..p.rows.len()).find(|&pos| live_in_batch(pos) && close(pos)) {
        return Some(Dup::Batch(pos));
    }
    stored
        .similar
        .get(&i)?
        .iter()
        .find(|m| not_superseded(m))
        .map(|m| Dup::Stored(Box::new(p.current(m))))
}

fn dup_id(p: &Plan, dup: &Dup) -> Uuid {
    match dup {
        Dup::Batch(pos) => p.rows[*pos].id,
        Dup::Stored(m) => m.id,
    }
}

/// DUPLICATE naming the stored memory, or the earlier item of the batch.
fn rejected(p: &Plan, dup: &Dup, i: usize, cx: &Context) -> AppError {
    let (existing_id, duplicate_of_index) = match dup {
        Dup::Stored(m) => (Some(m.id), None),
        // Item positions map to batch rows only for items that became rows.
        Dup::Batch(pos) => (
            None,
            p.slots
                .iter()
                .position(|s| matches!(s, Slot::New(r) if r == pos)),
        ),
    };
    AppError::Duplicate {
        existing_id,
        duplicate_of_index,
        index: cx.batch.then_some(i),
    }
}

/// MERGE: metadata key by key, the higher importance and confidence, the union of tags.
fn merge(p: &mut Plan, dup: Dup, v: Valid, at: DateTime<Utc>) {
    let apply = |target: &mut memory::Model| {
        target.metadata = merge_metadata(target.metadata.as_deref(), v.metadata.as_deref());
        target.importance = target.importance.max(v.importance);
        target.confidence = target.confidence.max(v.confidence);
        target.updated_at = at;
    };
    match dup {
        Dup::Batch(pos) => {
            apply(&mut p.rows[pos]);
            for t in v.tags {
                if !p.row_tags[pos].contains(&t) {
                    p.row_tags[pos].push(t);
                }
            }
            p.slots.push(Slot::New(pos));
        }
        Dup::Stored(m) => {
            let t = p.touch(&m);
            apply(&mut t.memory);
            t.memory.version += 1;
            t.extra_tags.extend(v.tags);
            p.slots.push(Slot::Touched(m.id));
        }
    }
}

fn push_row(p: &mut Plan, row: memory::Model, item: Item) {
    p.slots.push(Slot::New(p.rows.len()));
    p.rows.push(row);
    p.row_tags.push(item.valid.tags);
    p.row_chunks.push(item.chunks);
}

fn new_row(v: &Valid, cx: &Context, supersedes: Option<Uuid>) -> memory::Model {
    memory::Model {
        id: Uuid::now_v7(),
        space_id: cx.space_id,
        content_bytes: v.content.len() as i32,
        content: v.content.clone(),
        metadata: v.metadata.clone(),
        importance: v.importance,
        confidence: v.confidence,
        recall_count: 0,
        author_kind: cx.author_kind.clone(),
        author_id: cx.author_id,
        agent_id: v.agent_id,
        thread_id: v.thread_id.clone(),
        created_at: cx.at,
        updated_at: cx.at,
        expires_at: v.expires_at,
        index_seq: cx.version,
        version: 1,
        content_hash: v.hash.clone(),
        superseded_by: None,
        supersedes,
        external_id: v.external_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memories::draft::{validate_draft, MemoryDraft};

    fn cx(policy: DuplicatePolicy) -> Context {
        Context {
            space_id: Uuid::now_v7(),
            version: 7,
            at: Utc::now(),
            author_kind: "user".into(),
            author_id: Uuid::now_v7(),
            space_policy: policy,
            threshold: 0.9,
            batch: true,
        }
    }

    fn item(content: &str, vector: Vec<f32>) -> Item {
        item_with(content, vector, |_| {})
    }

    fn item_with(content: &str, vector: Vec<f32>, edit: impl FnOnce(&mut MemoryDraft)) -> Item {
        let mut d = MemoryDraft {
            content: content.into(),
            ..Default::default()
        };
        edit(&mut d);
        Item {
            valid: validate_draft(d).expect("valid"),
            chunks: vec![(content.into(), vector)],
        }
    }

    fn stored(content: &str, space_id: Uuid) -> memory::Model {
        let Item { valid, .. } = item(content, vec![1.0, 0.0]);
        let mut c = cx(DuplicatePolicy::Allow);
        c.space_id = space_id;
        let mut m = new_row(&valid, &c, None);
        m.version = 3;
        m
    }

    #[test]
    fn allow_stores_every_item_and_counts_them() {
        let c = cx(DuplicatePolicy::Allow);
        let items = vec![item("same", vec![1.0, 0.0]), item("same", vec![1.0, 0.0])];
        let p = plan(items, &Stored::default(), &c).unwrap();
        assert_eq!(p.slots, vec![Slot::New(0), Slot::New(1)]);
        assert!(p
            .rows
            .iter()
            .all(|r| r.index_seq == 7 && r.space_id == c.space_id));
        assert_eq!(p.delta(), Counted { count: 2, bytes: 8 });
    }

    #[test]
    fn reject_names_the_earlier_item_of_the_batch_and_the_item_itself() {
        let items = vec![
            item("first", vec![0.0, 1.0]),
            item("Same  text", vec![1.0, 0.0]),
            item("same text", vec![0.5, 0.5]),
        ];
        let err = plan(items, &Stored::default(), &cx(DuplicatePolicy::Reject)).unwrap_err();
        match err {
            AppError::Duplicate {
                existing_id,
                duplicate_of_index,
                index,
            } => {
                assert_eq!(
                    (existing_id, duplicate_of_index, index),
                    (None, Some(1), Some(2))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reject_of_a_stored_duplicate_by_meaning_names_it() {
        let c = cx(DuplicatePolicy::Reject);
        let old = stored("the cat sat", c.space_id);
        let stored = Stored {
            similar: HashMap::from([(0, vec![old.clone()])]),
            ..Default::default()
        };
        let err = plan(vec![item("a cat was sitting", vec![1.0, 0.0])], &stored, &c).unwrap_err();
        assert!(matches!(err, AppError::Duplicate { existing_id: Some(id), .. } if id == old.id));
    }

    #[test]
    fn merge_into_a_stored_memory_changes_it_once_and_counts_nothing() {
        let c = cx(DuplicatePolicy::Merge);
        let old = stored("remember the milk", c.space_id);
        let stored = Stored {
            by_hash: HashMap::from([(old.content_hash.clone(), old.clone())]),
            ..Default::default()
        };
        let items = vec![
            item_with("Remember the milk", vec![1.0, 0.0], |d| {
                d.importance = Some(9);
                d.tags = vec!["shopping".into()];
            }),
            item_with("remember  the milk", vec![1.0, 0.0], |d| {
                d.tags = vec!["today".into()];
            }),
        ];
        let p = plan(items, &stored, &c).unwrap();
        assert!(p.rows.is_empty());
        assert_eq!(p.slots, vec![Slot::Touched(old.id), Slot::Touched(old.id)]);
        let t = &p.touched[0];
        assert_eq!(p.touched.len(), 1);
        assert_eq!((t.read_version, t.memory.version), (3, 5));
        assert_eq!(t.memory.importance, 9);
        assert_eq!(t.extra_tags, vec!["shopping", "today"]);
        assert_eq!(p.delta(), Counted::default());
        assert_eq!(p.results().len(), 2);
    }

    #[test]
    fn supersede_within_the_batch_leaves_only_the_newest_counted() {
        let c = cx(DuplicatePolicy::Supersede);
        let items = vec![item("v1", vec![1.0, 0.0]), item("v2", vec![0.99, 0.01])];
        let p = plan(items, &Stored::default(), &c).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].superseded_by, Some(p.rows[1].id));
        assert_eq!(p.rows[1].supersedes, Some(p.rows[0].id));
        assert_eq!(p.delta(), Counted { count: 1, bytes: 2 });
    }

    #[test]
    fn supersede_of_a_stored_memory_takes_it_out_of_the_counters() {
        let c = cx(DuplicatePolicy::Supersede);
        let old = stored("old fact", c.space_id);
        let stored = Stored {
            by_hash: HashMap::from([(old.content_hash.clone(), old.clone())]),
            ..Default::default()
        };
        let p = plan(vec![item("Old fact", vec![1.0, 0.0])], &stored, &c).unwrap();
        assert_eq!(p.touched[0].memory.superseded_by, Some(p.rows[0].id));
        // One new memory counted, the superseded one no longer: the same size, so no change.
        assert_eq!(p.delta(), Counted::default());
    }

    #[test]
    fn an_external_id_seen_before_returns_the_first_memory_and_stores_nothing_new() {
        let c = cx(DuplicatePolicy::Allow);
        let mut old = stored("imported", c.space_id);
        old.external_id = Some("ext-1".into());
        let stored = Stored {
            by_external: HashMap::from([("ext-1".to_string(), old.clone())]),
            ..Default::default()
        };
        let with_id = |id: &'static str| {
            item_with("x", vec![1.0, 0.0], move |d| {
                d.external_id = Some(id.into())
            })
        };
        let p = plan(
            vec![with_id("ext-1"), with_id("ext-2"), with_id("ext-2")],
            &stored,
            &c,
        )
        .unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.slots[0], Slot::Existing(Box::new(old)));
        assert_eq!(&p.slots[1..], &[Slot::New(0), Slot::New(0)]);
    }

    #[test]
    fn a_per_item_policy_overrides_the_space_and_zero_vectors_never_match_by_meaning() {
        let c = cx(DuplicatePolicy::Reject);
        let items = vec![
            item("alpha", vec![0.0, 0.0]),
            item("beta", vec![0.0, 0.0]),
            item_with("alpha", vec![1.0, 0.0], |d| {
                d.on_duplicate = Some(DuplicatePolicy::Allow)
            }),
        ];
        let p = plan(items, &Stored::default(), &c).unwrap();
        assert_eq!(p.rows.len(), 3);
    }
}
