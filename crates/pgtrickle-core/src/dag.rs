//! Ordering stream tables so that every one refreshes after those it reads.

use std::collections::{BTreeMap, BTreeSet};

/// `nodes` in dependency order: for each edge `(downstream, upstream)` the
/// upstream comes first. Ties keep ascending id order. `Err` carries the
/// nodes on a cycle (or behind one).
pub fn topological_order(nodes: &[i64], edges: &[(i64, i64)]) -> Result<Vec<i64>, Vec<i64>> {
    let known: BTreeSet<i64> = nodes.iter().copied().collect();
    let mut upstream_count: BTreeMap<i64, usize> = known.iter().map(|&n| (n, 0)).collect();
    let mut downstream: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &(down, up) in edges {
        if known.contains(&down) && known.contains(&up) && down != up {
            *upstream_count.get_mut(&down).expect("known node") += 1;
            downstream.entry(up).or_default().push(down);
        }
    }
    let mut ready: BTreeSet<i64> = upstream_count
        .iter()
        .filter(|(_, &c)| c == 0)
        .map(|(&n, _)| n)
        .collect();
    let mut order = Vec::with_capacity(known.len());
    while let Some(&next) = ready.iter().next() {
        ready.remove(&next);
        order.push(next);
        for &down in downstream.get(&next).map(Vec::as_slice).unwrap_or(&[]) {
            let count = upstream_count.get_mut(&down).expect("known node");
            *count -= 1;
            if *count == 0 {
                ready.insert(down);
            }
        }
    }
    if order.len() == known.len() {
        Ok(order)
    } else {
        Err(known.into_iter().filter(|n| !order.contains(n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_first() {
        // 3 reads 2, 2 reads 1.
        assert_eq!(
            topological_order(&[3, 2, 1], &[(3, 2), (2, 1)]),
            Ok(vec![1, 2, 3])
        );
        // Diamond: 4 reads 2 and 3, both read 1.
        assert_eq!(
            topological_order(&[1, 2, 3, 4], &[(4, 2), (4, 3), (2, 1), (3, 1)]),
            Ok(vec![1, 2, 3, 4])
        );
    }

    #[test]
    fn cycles_are_reported() {
        assert_eq!(
            topological_order(&[1, 2, 3], &[(1, 2), (2, 1)]),
            Err(vec![1, 2])
        );
    }

    #[test]
    fn edges_to_unknown_nodes_are_ignored() {
        assert_eq!(topological_order(&[5], &[(5, 9)]), Ok(vec![5]));
    }
}
