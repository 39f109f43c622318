//! Reciprocal rank fusion of several rankings.
use std::collections::HashMap;
use std::hash::Hash;

/// The constant of DESIGN.md: score(d) = Σ 1 / (K + rank(d)), ranks starting at 1.
pub const RRF_K: f64 = 60.0;

/// Fuses rankings (best first) into one, best first; ties keep first-seen order.
pub fn rrf<T: Copy + Eq + Hash>(rankings: &[Vec<T>]) -> Vec<(T, f64)> {
    let mut scores: HashMap<T, (f64, usize)> = HashMap::new();
    let mut seen = 0;
    for ranking in rankings {
        for (i, item) in ranking.iter().enumerate() {
            let entry = scores.entry(*item).or_insert_with(|| {
                seen += 1;
                (0.0, seen)
            });
            entry.0 += 1.0 / (RRF_K + (i + 1) as f64);
        }
    }
    let mut out: Vec<(T, f64, usize)> = scores.into_iter().map(|(k, (s, o))| (k, s, o)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(k, s, _)| (k, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_ranked_well_in_both_lists_win() {
        let fused = rrf(&[vec!['a', 'b', 'c'], vec!['b', 'c', 'a']]);
        assert_eq!(fused[0].0, 'b');
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(fused.len(), 3);
    }

    #[test]
    fn an_item_in_one_list_only_still_counts() {
        let fused = rrf(&[vec![1], vec![2, 1]]);
        assert_eq!(fused[0].0, 1);
        assert_eq!(fused[1].0, 2);
    }
}
