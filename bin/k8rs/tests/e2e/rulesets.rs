//! The node's own nftables tables (`k8rs-*`: service proxy, pod network, network policy) as
//! comparable snapshots: each chain, set and map with its lines in order, except that set and
//! map elements are one per line and sorted (the kernel lists hash-set elements in no fixed
//! order), so that two listings of the same rules compare equal and a duplicated rule or a
//! leftover element shows as a difference.

use std::collections::BTreeMap;

use super::Netns;

/// `"table FAMILY NAME / chain|set|map NAME"` to its lines.
pub type Snapshot = BTreeMap<String, Vec<String>>;

/// The `k8rs-*` tables of `ns`, normalized.
pub fn snapshot(ns: &Netns) -> Result<Snapshot, String> {
    let list = ns.run("nft", &["list", "tables"]);
    if !list.status.success() {
        return Err(format!(
            "nft list tables: {}",
            String::from_utf8_lossy(&list.stderr)
        ));
    }
    let mut out = Snapshot::new();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, family, name] = words[..] else {
            continue;
        };
        if !name.starts_with("k8rs-") {
            continue;
        }
        let table = ns.run("nft", &["list", "table", family, name]);
        if !table.status.success() {
            return Err(format!(
                "nft list table {family} {name}: {}",
                String::from_utf8_lossy(&table.stderr)
            ));
        }
        out.extend(normalize(&String::from_utf8_lossy(&table.stdout)));
    }
    Ok(out)
}

/// `nft list table` text as a [`Snapshot`].
pub fn normalize(text: &str) -> Snapshot {
    let mut out = Snapshot::new();
    let (mut table, mut object) = (String::new(), None::<String>);
    let mut elements: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(acc) = elements.as_mut() {
            acc.push(' ');
            acc.push_str(line);
        } else if line.starts_with("table ") {
            table = line.trim_end_matches('{').trim().to_string();
            continue;
        } else if line == "}" {
            object = None;
            continue;
        } else if object.is_none() {
            let key = format!("{table} / {}", line.trim_end_matches('{').trim());
            out.insert(key.clone(), Vec::new());
            object = Some(key);
            continue;
        } else if line.starts_with("elements = {") {
            elements = Some(line.to_string());
        }
        let Some(lines) = object.as_ref().and_then(|k| out.get_mut(k)) else {
            continue;
        };
        match elements.take() {
            Some(acc) if acc.matches('{').count() == acc.matches('}').count() => {
                lines.extend(split_elements(&acc));
            }
            Some(acc) => elements = Some(acc),
            None => lines.push(line.to_string()),
        }
    }
    out
}

/// `elements = { a, b }` as sorted `element a` lines.
fn split_elements(text: &str) -> Vec<String> {
    let inner = text
        .trim_start_matches("elements = {")
        .trim_end()
        .trim_end_matches('}');
    let mut out: Vec<String> = inner
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| format!("element {e}"))
        .collect();
    out.sort();
    out
}

/// `snapshot` without the set and map elements keyed by address `ip`.
pub fn without_address(snapshot: &Snapshot, ip: &str) -> Snapshot {
    snapshot
        .iter()
        .map(|(key, lines)| {
            let kept = lines
                .iter()
                .filter(|l| {
                    l.strip_prefix("element ")
                        .and_then(|e| e.split_whitespace().next())
                        != Some(ip)
                })
                .cloned()
                .collect();
            (key.clone(), kept)
        })
        .collect()
}

/// Whether any line of `snapshot` mentions address `ip` as a whole word.
pub fn mentions(snapshot: &Snapshot, ip: &str) -> bool {
    snapshot
        .values()
        .flatten()
        .any(|l| l.split([' ', ',', ':']).any(|w| w == ip))
}

/// The lines only in `a` (`-`) or only in `b` (`+`), per object; at most `max` lines.
pub fn diff(a: &Snapshot, b: &Snapshot, max: usize) -> String {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let empty = Vec::new();
    for key in keys {
        let (la, lb) = (a.get(key).unwrap_or(&empty), b.get(key).unwrap_or(&empty));
        if la == lb && a.contains_key(key) == b.contains_key(key) {
            continue;
        }
        out.push(format!("{key}:"));
        out.extend(
            la.iter()
                .filter(|l| !lb.contains(l))
                .map(|l| format!("- {l}")),
        );
        out.extend(
            lb.iter()
                .filter(|l| !la.contains(l))
                .map(|l| format!("+ {l}")),
        );
        if la.len() != lb.len() {
            out.push(format!("  ({} lines before, {} after)", la.len(), lb.len()));
        }
    }
    let more = out.len().saturating_sub(max);
    out.truncate(max);
    if more > 0 {
        out.push(format!("... {more} more lines"));
    }
    out.join("\n")
}

#[test]
fn normalize_sorts_elements_and_keeps_rule_order() {
    let a = "table ip k8rs-proxy {\n\tmap service-ips {\n\t\ttype ipv4_addr : verdict\n\t\t\
             elements = { 10.43.0.10 : goto lb-1,\n\t\t\t     10.43.0.1 : goto lb-2 }\n\t}\n\n\t\
             chain services {\n\t\tip daddr @x jump mark\n\t\tip daddr vmap @service-ips\n\t}\n}\n";
    let b = "table ip k8rs-proxy {\n\tchain services {\n\t\tip daddr @x jump mark\n\t\t\
             ip daddr vmap @service-ips\n\t}\n\tmap service-ips {\n\t\ttype ipv4_addr : verdict\n\
             \t\telements = { 10.43.0.1 : goto lb-2, 10.43.0.10 : goto lb-1 }\n\t}\n}\n";
    let (na, nb) = (normalize(a), normalize(b));
    assert_eq!(na, nb, "{}", diff(&na, &nb, 20));
    let map = &na["table ip k8rs-proxy / map service-ips"];
    assert_eq!(
        map,
        &[
            "type ipv4_addr : verdict",
            "element 10.43.0.1 : goto lb-2",
            "element 10.43.0.10 : goto lb-1"
        ]
    );
    let gone = without_address(&na, "10.43.0.1");
    assert!(!mentions(&gone, "10.43.0.1") && mentions(&gone, "10.43.0.10"));
    let mut doubled = na.clone();
    if let Some(rules) = doubled.get_mut("table ip k8rs-proxy / chain services") {
        rules.push("ip daddr vmap @service-ips".into());
    }
    assert_ne!(na, doubled, "a duplicated rule is a difference");
}
