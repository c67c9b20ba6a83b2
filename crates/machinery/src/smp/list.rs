//! Merging lists: by merge key or as sets of primitives, list directives, and the element order
//! rules (`$setElementOrder`, then patch order, then the live order).

use std::mem::discriminant;

use serde_json::{Map, Value};

use super::merge::{Merger, extract_key, remove_directives};
use super::{DIRECTIVE_MARKER, Error, SET_ELEMENT_ORDER_PREFIX, values_equal};
use crate::gofmt;

/// The JSON type shared by all items of some lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Map,
    Other(std::mem::Discriminant<Value>),
}

/// Upstream's `sliceElementType`: the items' common type; lists of lists are refused.
fn element_kind(lists: &[&[Value]]) -> Result<Kind, Error> {
    let mut first: Option<&Value> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        match first {
            None if item.is_array() => return Err(Error::NoListOfLists),
            None => first = Some(item),
            Some(f) if discriminant(f) != discriminant(item) => {
                let rendered: Vec<String> = lists
                    .iter()
                    .map(|l| gofmt::v(&Value::Array(l.to_vec())))
                    .collect();
                return Err(Error::ElementTypesNotIdentical(format!(
                    "[{}]",
                    rendered.join(" ")
                )));
            }
            Some(_) => {}
        }
    }
    match first {
        None => Err(Error::NoElements),
        Some(Value::Object(_)) => Ok(Kind::Map),
        Some(v) => Ok(Kind::Other(discriminant(v))),
    }
}

fn as_map(item: &Value) -> Result<&Map<String, Value>, Error> {
    item.as_object()
        .ok_or_else(|| Error::bad_arg_type("map[string]interface {}", Some(item)))
}

/// The merge key's value of `item` (`None` for a non-map or a map without it), as upstream's
/// `index` reads it.
fn key_of<'v>(item: &'v Value, merge_key: &str) -> Option<&'v Value> {
    item.as_object().and_then(|m| m.get(merge_key))
}

/// Where `item` sits in `list`: by merge key for maps, by value otherwise.
fn index_of(list: &[Value], item: &Value, merge_key: &str, kind: Kind) -> Option<usize> {
    let same = |a: &Value, b: &Value| match kind {
        Kind::Map => match (key_of(a, merge_key), key_of(b, merge_key)) {
            (Some(x), Some(y)) => values_equal(x, y),
            (None, None) => true,
            _ => false,
        },
        Kind::Other(_) => values_equal(a, b),
    };
    list.iter().position(|v| same(item, v))
}

/// Upstream's `findMapInSliceBasedOnKeyValue`.
fn find_by_key(list: &[Value], merge_key: &str, value: &Value) -> Result<Option<usize>, Error> {
    for (i, item) in list.iter().enumerate() {
        let map = item.as_object().ok_or(Error::NotAMap(i))?;
        if map.get(merge_key).is_some_and(|v| values_equal(v, value)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn has_directive(item: &Value) -> bool {
    item.as_object()
        .is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
}

/// Splits items into those to keep and those marked `$patch: delete`; all must be maps.
fn split_deletions(items: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for item in items {
        let is_delete = as_map(&item)?
            .get(DIRECTIVE_MARKER)
            .is_some_and(|d| d.as_str() == Some("delete"));
        if is_delete {
            delete.push(item);
        } else {
            keep.push(item);
        }
    }
    Ok((keep, delete))
}

fn validate_merge_keys(merge_key: &str, lists: &[&[Value]]) -> Result<(), Error> {
    for item in lists.iter().flat_map(|l| l.iter()) {
        let map = as_map(item)?;
        if !map.contains_key(merge_key) {
            return Err(Error::no_merge_key(map, merge_key));
        }
    }
    Ok(())
}

/// Upstream's `normalizeSliceOrder`: stable sort by position in `order` (unknown items last),
/// deletion markers after everything.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, Error> {
    let (mut items, deletions) = if kind == Kind::Map {
        validate_merge_keys(merge_key, &[&items, order])?;
        split_deletions(items)?
    } else {
        (items, Vec::new())
    };
    items.sort_by_key(|item| index_of(order, item, merge_key, kind).unwrap_or(usize::MAX));
    items.extend(deletions);
    Ok(items)
}

/// Upstream's `normalizeElementOrder` + `mergeSortedSlice`: patch items in `patch_order`,
/// server-only items in `server_order`, interleaved by the server order where both are known.
fn normalize_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, Error> {
    let right = sort_by_order(patch_items, patch_order, merge_key, kind)?;
    let left = sort_by_order(server_only, server_order, merge_key, kind)?;
    let position = |v: &Value| index_of(server_order, v, merge_key, kind);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => return Ok(out),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((position(l), position(r)), (Some(li), Some(ri)) if li < ri)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
}

/// Items of `merged` present in `by` (first) and the rest (second).
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in merged {
        let found = if merge_key.is_empty() {
            by.iter().any(|b| values_equal(b, &item))
        } else {
            let map = as_map(&item)?;
            let value = map
                .get(merge_key)
                .ok_or_else(|| Error::no_merge_key(map, merge_key))?;
            find_by_key(by, merge_key, value)?.is_some()
        };
        if found {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        if !out.iter().any(|o| values_equal(o, &item)) {
            out.push(item);
        }
    }
    out
}

/// The outcome of upstream's `mergeSliceWithSpecialElements`.
struct ListDirectives {
    /// The original items left after `$patch: delete` items.
    remaining: Vec<Value>,
    /// The patch items without directives.
    plain: Vec<Value>,
    /// Whether a `$patch: replace` item makes `plain` the whole list.
    replace: bool,
}

/// Applies `$patch: delete` items to `original` and notes `$patch: replace`.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<ListDirectives, Error> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let map = as_map(&item)?;
        let Some(directive) = map.get(DIRECTIVE_MARKER) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = map
                    .get(merge_key)
                    .ok_or_else(|| Error::no_merge_key(map, merge_key))?;
                while let Some(i) = find_by_key(&original, merge_key, value)? {
                    original.remove(i);
                }
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(Error::MergeDirectiveInList),
            _ => {
                return Err(Error::BadPatchType {
                    patch_type: gofmt::v(directive),
                    map: gofmt::v(&item),
                });
            }
        }
    }
    Ok(ListDirectives {
        remaining: original,
        plain,
        replace,
    })
}

/// A merged list and the live order to sort it by.
struct Merged {
    items: Vec<Value>,
    /// What upstream's caller sees in its copy of the original list afterwards. Upstream
    /// deletes and appends in place, so a caller holding the original slice (the
    /// `$setElementOrder` path) sees the surviving items followed by the appended ones, cut to
    /// the original length; that view decides where server-only items land.
    live_order: Vec<Value>,
}

impl Merger<'_> {
    /// Upstream's `mergeSlice` for a list with strategy `merge` (or a deletion list).
    pub(super) fn merge_slice(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        def: Option<&str>,
        merge_key: &str,
        delete_list: bool,
    ) -> Result<Vec<Value>, Error> {
        self.merge_slice_tracked(original, patch, def, merge_key, delete_list)
            .map(|m| m.items)
    }

    fn merge_slice_tracked(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        def: Option<&str>,
        merge_key: &str,
        delete_list: bool,
    ) -> Result<Merged, Error> {
        if original.is_empty() && patch.is_empty() {
            return Ok(Merged {
                items: Vec::new(),
                live_order: Vec::new(),
            });
        }
        let kind = element_kind(&[&original, &patch])?;
        if kind == Kind::Map {
            return self.merge_map_items(original, patch, def, merge_key);
        }
        if delete_list {
            let items = original
                .iter()
                .filter(|v| !patch.iter().any(|d| values_equal(d, v)))
                .cloned()
                .collect();
            return Ok(Merged {
                items,
                live_order: original,
            });
        }
        let mut both = original.clone();
        both.extend(patch.iter().cloned());
        let (patch_items, server_only) = partition(dedup(both), &patch, merge_key)?;
        let items = normalize_order(patch_items, server_only, &patch, &original, merge_key, kind)?;
        Ok(Merged {
            items,
            live_order: original,
        })
    }

    /// `mergeSlice` for lists of maps: directives, merge by key, then the element order.
    fn merge_map_items(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        def: Option<&str>,
        merge_key: &str,
    ) -> Result<Merged, Error> {
        if merge_key.is_empty() {
            return Err(Error::NoMergeKeyForList(def.unwrap_or_default().to_owned()));
        }
        let original_len = original.len();
        let directives = apply_list_directives(original, patch, merge_key)?;
        let (base, patch) = if directives.replace {
            (directives.plain, Vec::new())
        } else {
            (directives.remaining.clone(), directives.plain)
        };
        let merged = self.merge_by_key(base.clone(), &patch, def, merge_key)?;
        let mut live_order = directives.remaining;
        if !directives.replace {
            live_order.extend(merged.iter().skip(base.len()).cloned());
        }
        live_order.truncate(original_len);
        let (patch_items, server_only) = partition(merged, &patch, merge_key)?;
        let items = normalize_order(
            patch_items,
            server_only,
            &patch,
            &base,
            merge_key,
            Kind::Map,
        )?;
        Ok(Merged { items, live_order })
    }

    /// Upstream's `mergeSliceWithoutSpecialElements`: merge items sharing a key, append the rest.
    fn merge_by_key(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        def: Option<&str>,
        merge_key: &str,
    ) -> Result<Vec<Value>, Error> {
        for item in patch {
            let map = as_map(item)?;
            let value = map
                .get(merge_key)
                .ok_or_else(|| Error::no_merge_key(map, merge_key))?;
            match find_by_key(&original, merge_key, value)? {
                Some(i) => {
                    let current = match std::mem::take(&mut original[i]) {
                        Value::Object(m) => m,
                        _ => return Err(Error::NotAMap(i)),
                    };
                    original[i] = Value::Object(self.merge_map(current, map.clone(), def)?);
                }
                None => original.push(item.clone()),
            }
        }
        Ok(original)
    }

    /// Upstream's `mergePatchIntoOriginal`: every `$setElementOrder/<field>` merges its list and
    /// orders the result; the list is then taken out of the patch.
    pub(super) fn merge_set_element_order(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        def: Option<&str>,
    ) -> Result<(), Error> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
            .cloned()
            .collect();
        for key in keys {
            let order = match patch.remove(&key) {
                Some(Value::Array(order)) => order,
                other => return Err(Error::bad_arg_type("[]interface {}", other.as_ref())),
            };
            let field = extract_key(&key, SET_ELEMENT_ORDER_PREFIX)?;
            let original_list = list_field(original, &field)?;
            let patch_list = list_field(patch, &field)?;
            let Some(merged) =
                self.merge_ordered_field(&original_list, &patch_list, &order, def, &field)?
            else {
                continue;
            };
            original.insert(field.clone(), Value::Array(merged));
            patch.remove(&field);
        }
        Ok(())
    }

    fn merge_ordered_field(
        &self,
        original_list: &Option<Vec<Value>>,
        patch_list: &Option<Vec<Value>>,
        order: &[Value],
        def: Option<&str>,
        field: &str,
    ) -> Result<Option<Vec<Value>>, Error> {
        let meta = self.meta(def, field);
        let merge_key = meta.merge_key.as_str();
        validate_against_order(patch_list.as_deref().unwrap_or_default(), order, merge_key)?;
        let original_items = original_list.as_deref().unwrap_or_default();
        let (merged, live_order) = match (original_list, patch_list) {
            (None, None) => return Ok(None),
            (Some(o), None) => (o.clone(), o.clone()),
            (None, Some(p)) => (
                p.iter().cloned().filter_map(remove_directives).collect(),
                Vec::new(),
            ),
            (Some(o), Some(p)) if meta.strategy.merges() => {
                let child = meta.child.as_deref();
                let m = self.merge_slice_tracked(o.clone(), p.clone(), child, merge_key, false)?;
                (m.items, m.live_order)
            }
            (Some(o), Some(p)) => (p.clone(), o.clone()),
        };
        let (patch_items, server_only) = partition(merged, order, merge_key)?;
        let kind = element_kind(&[original_items, patch_list.as_deref().unwrap_or_default()])?;
        normalize_order(
            patch_items,
            server_only,
            order,
            &live_order,
            merge_key,
            kind,
        )
        .map(Some)
    }
}

/// The list under `field`, if present; any other JSON type is an error.
fn list_field(map: &Map<String, Value>, field: &str) -> Result<Option<Vec<Value>>, Error> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(other) => Err(Error::bad_arg_type("[]interface {}", Some(other))),
    }
}

/// Upstream's `validatePatchWithSetOrderList`: the patch items (deletions aside) must appear in
/// the `$setElementOrder` list, in its order.
fn validate_against_order(patch: &[Value], order: &[Value], merge_key: &str) -> Result<(), Error> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let items = if merge_key.is_empty() {
        patch.to_vec()
    } else {
        split_deletions(patch.to_vec())?.0
    };
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if has_directive(&items[p]) {
            p += 1;
            continue;
        }
        if merge_key_equal(&items[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() && o >= order.len() {
        return Err(Error::SetElementOrderMismatch {
            patch: gofmt::v(&Value::Array(patch.to_vec())),
            order: gofmt::v(&Value::Array(order.to_vec())),
        });
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, Error> {
    if merge_key.is_empty() {
        return Ok(values_equal(left, right));
    }
    let (l, r) = (as_map(left)?, as_map(right)?);
    let lv = l
        .get(merge_key)
        .ok_or_else(|| Error::no_merge_key(l, merge_key))?;
    let rv = r
        .get(merge_key)
        .ok_or_else(|| Error::no_merge_key(r, merge_key))?;
    Ok(values_equal(lv, rv))
}
