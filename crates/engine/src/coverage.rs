//! Which `vector_version`s of a space an index holds. Writes of this process reach an index
//! after their transaction commits, and concurrent writers commit in any order: version 7 may
//! arrive before 6. An index records the versions it holds past the contiguous prefix, so that
//! catching up reads only the versions it lacks (the gaps, and what is newer), never every row
//! written after the first gap.
use std::collections::BTreeSet;

use sea_orm::sea_query::Condition;
use sea_orm::ColumnTrait;

use entity::memory;

/// More gaps than this and a catch-up reads everything after the prefix instead.
pub const MAX_GAPS: usize = 512;
/// At most this many versions are remembered past the prefix (a space written a lot with a gap
/// and never searched must not grow without bound); past it they are forgotten, and the next
/// catch-up reads everything after the prefix.
pub const MAX_LATER: usize = 8192;

/// Every version up to `through` is held, and those in `later` (all above `through + 1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub through: i64,
    pub later: BTreeSet<i64>,
}

/// The rows a catch-up must read: `index_seq > after`, or in `gaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub after: i64,
    pub gaps: Vec<i64>,
}

impl Missing {
    /// The condition on `memories` selecting the rows to read.
    pub fn condition(self) -> Condition {
        Condition::any()
            .add(memory::Column::IndexSeq.gt(self.after))
            .add(memory::Column::IndexSeq.is_in(self.gaps))
    }
}

impl Coverage {
    pub fn new(through: i64) -> Self {
        Coverage {
            through,
            later: BTreeSet::new(),
        }
    }

    /// Records that the rows of version `v` are held.
    pub fn add(&mut self, v: i64) {
        if v <= self.through {
            return;
        }
        self.later.insert(v);
        while self.later.remove(&(self.through + 1)) {
            self.through += 1;
        }
        if self.later.len() > MAX_LATER {
            self.later.clear();
        }
    }

    /// Whether every version up to `v` is held.
    pub fn covers(&self, v: i64) -> bool {
        self.through >= v
    }

    /// What is missing: the gaps below the highest version held, and everything above it.
    pub fn missing(&self) -> Missing {
        let Some(&top) = self.later.iter().next_back() else {
            return Missing {
                after: self.through,
                gaps: Vec::new(),
            };
        };
        let gaps: Vec<i64> = (self.through + 1..top)
            .filter(|v| !self.later.contains(v))
            .take(MAX_GAPS + 1)
            .collect();
        if gaps.len() > MAX_GAPS {
            return Missing {
                after: self.through,
                gaps: Vec::new(),
            };
        }
        Missing { after: top, gaps }
    }

    /// After a catch-up to `v`: everything up to it is held.
    pub fn complete_to(&mut self, v: i64) {
        self.through = self.through.max(v);
        let through = self.through;
        self.later.retain(|x| *x > through);
        while self.later.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_versions_leave_only_their_gaps_to_read() {
        let mut c = Coverage::new(1);
        for v in [3, 5, 4, 7] {
            c.add(v);
        }
        assert_eq!(c.through, 1);
        assert_eq!(
            c.missing(),
            Missing {
                after: 7,
                gaps: vec![2, 6]
            }
        );
        c.add(2);
        assert_eq!(c.through, 5);
        assert_eq!(
            c.missing(),
            Missing {
                after: 7,
                gaps: vec![6]
            }
        );
        c.add(6);
        assert_eq!((c.through, c.later.len()), (7, 0));
        assert_eq!(
            c.missing(),
            Missing {
                after: 7,
                gaps: vec![]
            }
        );
        c.add(3);
        assert_eq!(c.through, 7, "an old version changes nothing");
        c.add(10);
        c.complete_to(8);
        assert_eq!(
            (c.through, c.later.iter().copied().collect::<Vec<_>>()),
            (8, vec![10])
        );
        c.add(9);
        assert_eq!(c.through, 10);
        assert!(c.covers(10) && !c.covers(11));
    }

    #[test]
    fn versions_past_a_gap_are_remembered_up_to_a_bound() {
        let mut c = Coverage::new(0);
        for v in 2..=(MAX_LATER as i64 + 1) {
            c.add(v);
        }
        assert_eq!(c.later.len(), MAX_LATER);
        c.add(MAX_LATER as i64 + 2);
        assert!(c.later.is_empty(), "forgotten past the bound");
        assert_eq!(
            c.missing(),
            Missing {
                after: 0,
                gaps: vec![]
            },
            "read all after 0"
        );
    }

    #[test]
    fn too_many_gaps_read_everything_after_the_prefix() {
        let mut c = Coverage::new(0);
        c.add(MAX_GAPS as i64 + 10);
        assert_eq!(
            c.missing(),
            Missing {
                after: 0,
                gaps: vec![]
            }
        );
        let mut c = Coverage::new(0);
        c.add(MAX_GAPS as i64 + 1);
        assert_eq!(c.missing().gaps.len(), MAX_GAPS);
    }
}
