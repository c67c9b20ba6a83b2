//! Completion index sets as Jobs write them (`status.completedIndexes`, `failedIndexes`,
//! `successPolicy` rules): sorted, comma-separated numbers and ranges, `1,3-5,7`.

use std::collections::BTreeSet;

/// Parses an index list, ignoring malformed parts and indexes at or past `completions`.
pub fn parse(s: Option<&str>, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.unwrap_or_default().split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<i32>(), hi.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            continue;
        };
        for i in lo.max(0)..=hi.min(completions.saturating_sub(1)) {
            out.insert(i);
        }
    }
    out
}

/// Formats a set as ranges; `None` when empty.
pub fn format(set: &BTreeSet<i32>) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_ranges() {
        let set = parse(Some("0,2-4,7,9-12"), 11);
        assert_eq!(
            set.iter().copied().collect::<Vec<_>>(),
            [0, 2, 3, 4, 7, 9, 10]
        );
        assert_eq!(format(&set).as_deref(), Some("0,2-4,7,9-10"));
        assert_eq!(format(&BTreeSet::new()), None);
        assert!(parse(Some("x,1-"), 5).is_empty());
    }
}
