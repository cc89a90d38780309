//! `--shard K/N`: which planned files one of N machines fetches. Pure: the assignment depends
//! only on the set of (path, size) pairs, never on the order a listing gave them, so every node
//! computes the same split from its own listing.
//!
//! The rule (greedy by size): sort by size, largest first, ties by path; give each file to the
//! shard with the fewest bytes so far (ties: fewest files, then the lowest index). The shares are
//! disjoint, cover every file, and their byte totals differ by at most the largest file. A file
//! whose size is unknown counts as 0 bytes: such files spread by count.
use crate::error::Error;
use std::fmt;

/// One node's place among N: `index` counts from 0 (as `RANK`, `JOB_COMPLETION_INDEX` and
/// `SLURM_PROCID` do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This node, `0..count`.
    pub index: usize,
    /// How many nodes share the files.
    pub count: usize,
}

/// Most shards a run may be split into.
pub const MAX_COUNT: usize = 100_000;

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Build a shard from its index and count (`what` names where they came from in the
    /// message): `index < count`, `1 <= count <= MAX_COUNT`; else a usage error (exit 2).
    pub fn new(index: &str, count: &str, what: &str) -> Result<Shard, Error> {
        let bad = |why: &str| {
            Error::usage(format!(
                "invalid shard {what} ({index}/{count}): {why}; give K/N with 0 <= K < N, e.g. --shard 0/4"
            ))
        };
        let index: usize = index.trim().parse().map_err(|_| bad("K is not a whole number"))?;
        let count: usize = count.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        if count == 0 || count > MAX_COUNT {
            return Err(bad(&format!("N must be between 1 and {MAX_COUNT}")));
        }
        if index >= count {
            return Err(bad("K counts from 0, so it must be less than N"));
        }
        Ok(Shard { index, count })
    }

    /// Parse `K/N` as given to `--shard`.
    pub fn parse(text: &str) -> Result<Shard, Error> {
        match text.split_once('/') {
            Some((k, n)) => Shard::new(k, n, "--shard"),
            None => Err(Error::usage(format!(
                "invalid --shard '{text}': give K/N (K counts from 0: 0/4, 1/4, 2/4, 3/4) or auto"
            ))),
        }
    }

    /// The file name of this shard's manifest and lock suffix: `shard-K-of-N`.
    pub fn tag(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

/// The shard (0-based) of every item, in the items' order. Items are (path, size); a duplicate
/// (path, size) pair gets the shard of its twin's turn, which is the same whatever the order.
pub fn assign(items: &[(&str, Option<u64>)], count: usize) -> Vec<usize> {
    let count = count.max(1);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, sa) = items[a];
        let (pb, sb) = items[b];
        sb.unwrap_or(0).cmp(&sa.unwrap_or(0)).then_with(|| pa.cmp(pb))
    });
    let mut load = vec![(0u64, 0usize); count];
    let mut out = vec![0; items.len()];
    for i in order {
        let (best, _) = load.iter().enumerate().min_by_key(|(k, l)| (l.0, l.1, *k)).unwrap_or((0, &(0, 0)));
        load[best].0 += items[i].1.unwrap_or(0);
        load[best].1 += 1;
        out[i] = best;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, Option<u64>)> {
        let mut v: Vec<(String, Option<u64>)> =
            (0..40u64).map(|i| (format!("artifacts/f{i:02}.bin"), Some((i * 7919 % 1000) * 1000 + i))).collect();
        v.push(("artifacts/empty".into(), Some(0)));
        v.push(("artifacts/unknown-a".into(), None));
        v.push(("artifacts/unknown-b".into(), None));
        v.push(("named-outputs/model/w.bin".into(), Some(5_000_000)));
        v
    }

    fn borrowed(v: &[(String, Option<u64>)]) -> Vec<(&str, Option<u64>)> {
        v.iter().map(|(p, s)| (p.as_str(), *s)).collect()
    }

    fn shares(v: &[(String, Option<u64>)], n: usize) -> Vec<std::collections::BTreeSet<String>> {
        let a = assign(&borrowed(v), n);
        let mut out = vec![std::collections::BTreeSet::new(); n];
        for (i, k) in a.into_iter().enumerate() {
            out[k].insert(v[i].0.clone());
        }
        out
    }

    #[test]
    fn shares_are_disjoint_and_cover_every_file() {
        let v = sample();
        for n in 1..=7 {
            let s = shares(&v, n);
            let total: usize = s.iter().map(|x| x.len()).sum();
            assert_eq!(total, v.len(), "n={n}");
            let union: std::collections::BTreeSet<String> = s.iter().flatten().cloned().collect();
            assert_eq!(union.len(), v.len(), "n={n}: a file is in two shares");
        }
    }

    #[test]
    fn shares_are_balanced_within_the_largest_file() {
        let v = sample();
        let largest = v.iter().filter_map(|x| x.1).max().unwrap();
        for n in 1..=7 {
            let a = assign(&borrowed(&v), n);
            let mut bytes = vec![0u64; n];
            for (i, k) in a.iter().enumerate() {
                bytes[*k] += v[i].1.unwrap_or(0);
            }
            let (lo, hi) = (*bytes.iter().min().unwrap(), *bytes.iter().max().unwrap());
            assert!(hi - lo <= largest, "n={n}: {bytes:?}");
        }
        // Files of unknown size spread by count.
        let unknown: Vec<(String, Option<u64>)> = (0..9).map(|i| (format!("f{i}"), None)).collect();
        assert!(shares(&unknown, 3).iter().all(|s| s.len() == 3));
    }

    #[test]
    fn the_assignment_does_not_depend_on_listing_order() {
        let v = sample();
        let want = shares(&v, 4);
        let mut r = v.clone();
        r.reverse();
        assert_eq!(shares(&r, 4), want);
        // A deterministic shuffle.
        let mut s = v.clone();
        for i in 0..s.len() {
            let j = (i * 31 + 17) % s.len();
            s.swap(i, j);
        }
        assert_eq!(shares(&s, 4), want);
    }

    #[test]
    fn more_shards_than_files_leaves_some_empty() {
        let v = vec![("a".to_string(), Some(1)), ("b".to_string(), Some(1))];
        let s = shares(&v, 5);
        assert_eq!(s.iter().filter(|x| !x.is_empty()).count(), 2);
    }

    #[test]
    fn k_over_n_parses_and_bad_values_are_usage_errors() {
        assert_eq!(Shard::parse("0/3").unwrap(), Shard { index: 0, count: 3 });
        assert_eq!(Shard::parse(" 2 / 3 ").unwrap(), Shard { index: 2, count: 3 });
        assert_eq!(Shard::parse("2/3").unwrap().to_string(), "2/3");
        assert_eq!(Shard::parse("1/4").unwrap().tag(), "shard-1-of-4");
        for bad in ["3/3", "1", "-1/3", "a/3", "0/0", "1/x", "", "0/100001"] {
            let e = Shard::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(Shard::parse("3/3").unwrap_err().to_string().contains("counts from 0"));
    }
}
