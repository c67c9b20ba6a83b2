//! Shared cell formatting: tolerant JSON field access, ages and durations, labels and label
//! selectors, container lists, and the column definitions most printers share.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::Column;
use crate::descriptions::{META_CREATION_TIMESTAMP, META_NAME};

// ---------------------------------------------------------------------------------------------
// Column helpers

/// The `Name` column every printer starts with.
pub(crate) const fn name_column() -> Column {
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: META_NAME,
        priority: 0,
    }
}

/// The `Age` column (a `string`: the cell is a human duration).
pub(crate) const fn age_column() -> Column {
    col("Age", "string", META_CREATION_TIMESTAMP)
}

/// A column shown by default.
pub(crate) const fn col(name: &'static str, type_: &'static str, desc: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description: desc,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
pub(crate) const fn wide(name: &'static str, type_: &'static str, desc: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description: desc,
        priority: 1,
    }
}

pub(crate) const CONTAINERS_DESC: &str = "Names of each container in the template.";
pub(crate) const IMAGES_DESC: &str = "Images referenced by each container in the template.";

// ---------------------------------------------------------------------------------------------
// JSON access: every accessor tolerates a missing field or a value of the wrong type.

/// The string at `ptr` (a JSON pointer), or `""`.
pub(crate) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    opt_str(v, ptr).unwrap_or("")
}

/// The string at `ptr`, if there is one.
pub(crate) fn opt_str<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// The integer at `ptr`, if there is one (a float is truncated).
pub(crate) fn opt_int(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr)
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
}

/// The integer at `ptr`, or 0.
pub(crate) fn int_at(v: &Value, ptr: &str) -> i64 {
    opt_int(v, ptr).unwrap_or(0)
}

/// The boolean at `ptr`, if there is one.
pub(crate) fn opt_bool(v: &Value, ptr: &str) -> Option<bool> {
    v.pointer(ptr).and_then(Value::as_bool)
}

/// The boolean at `ptr`, or false.
pub(crate) fn bool_at(v: &Value, ptr: &str) -> bool {
    opt_bool(v, ptr).unwrap_or(false)
}

/// The array at `ptr`, or an empty slice.
pub(crate) fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `ptr`, if there is one (`null` is none).
pub(crate) fn obj_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(ptr).and_then(Value::as_object)
}

/// The number of entries of the map at `ptr` (0 if absent).
pub(crate) fn map_len(v: &Value, ptr: &str) -> usize {
    obj_at(v, ptr).map_or(0, Map::len)
}

/// The timestamp at `ptr`; `None` when absent, unparsable or Go's zero time.
pub(crate) fn time_at(v: &Value, ptr: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(opt_str(v, ptr)?).ok()?;
    let t = t.with_timezone(&Utc);
    (t.timestamp() != GO_ZERO_UNIX).then_some(t)
}

/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`, as a Unix time.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// The object's name cell.
pub(crate) fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, "/metadata/name"))
}

/// The object's `Age` cell.
pub(crate) fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::from(since(time_at(obj, "/metadata/creationTimestamp"), now))
}

/// Whether the object is being deleted (`metadata.deletionTimestamp` is set).
pub(crate) fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// `"<none>"` for an empty string, else the string.
pub(crate) fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>" } else { s }.to_string()
}

// ---------------------------------------------------------------------------------------------
// Time

/// Upstream's `translateTimestampSince`: the human duration from `t` to `now`, or `<unknown>`.
pub(crate) fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// A succinct duration with about two significant figures, as upstream's
/// `duration.HumanDuration`: `45s`, `3m2s`, `15m`, `4h5m`, `20h`, `2d3h`, `30d`, `2y10d`, `9y`;
/// `0s` for a slightly negative duration (clock skew up to one second) and `<invalid>` below.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_rest(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return with_rest(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

/// `"{major}{unit}{minor}{minor_unit}"`, dropping the minor part when it is zero.
fn with_rest(major: i64, unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{unit}")
    } else {
        format!("{major}{unit}{minor}{minor_unit}")
    }
}

// ---------------------------------------------------------------------------------------------
// Labels and selectors

/// Upstream's `labels.FormatLabels`: `k=v` pairs sorted by key, or `<none>`.
pub(crate) fn format_labels(map: Option<&Map<String, Value>>) -> String {
    let pairs: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// Upstream's `metav1.FormatLabelSelector`: the selector string, `<none>` when it selects
/// everything or nothing, `<error>` when it is invalid.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// The string form of a `LabelSelector` (`a=b,c in (d,e),!f`), requirements sorted by key; empty
/// for a missing or empty selector; `Err` for an invalid one.
pub(crate) fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in obj_at(sel, "/matchLabels").into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", v.as_str().ok_or(())?)));
    }
    for expr in arr_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        reqs.push((key.to_string(), expression_string(key, expr)?));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<String> = reqs.into_iter().map(|(_, s)| s).collect();
    Ok(parts.join(","))
}

/// One `matchExpressions` entry as a selector requirement string.
fn expression_string(key: &str, expr: &Value) -> Result<String, ()> {
    let values: BTreeSet<&str> = arr_at(expr, "/values")
        .iter()
        .map(|v| v.as_str().ok_or(()))
        .collect::<Result<_, _>>()?;
    let list = values.into_iter().collect::<Vec<_>>().join(",");
    match str_at(expr, "/operator") {
        "In" if !list.is_empty() => Ok(format!("{key} in ({list})")),
        "NotIn" if !list.is_empty() => Ok(format!("{key} notin ({list})")),
        "Exists" if list.is_empty() => Ok(key.to_string()),
        "DoesNotExist" if list.is_empty() => Ok(format!("!{key}")),
        _ => Err(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Lists

/// The distinct ingress IPs (or hostnames when there is no IP), sorted.
pub(crate) fn load_balancer_addresses(ingress: &[Value]) -> Vec<String> {
    let set: BTreeSet<&str> = ingress
        .iter()
        .map(|i| match str_at(i, "/ip") {
            "" => str_at(i, "/hostname"),
            ip => ip,
        })
        .filter(|s| !s.is_empty())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// Upstream's `layoutContainerCells`: the containers' names and images, comma-separated.
pub(crate) fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

/// The template's container name and image cells, from the pod spec at `spec_ptr`.
pub(crate) fn template_cells(obj: &Value, spec_ptr: &str) -> [Value; 2] {
    let (names, images) = container_cells(arr_at(obj, &format!("{spec_ptr}/containers")));
    [names, images]
}

/// Upstream's `listWithMoreString`: the first items, `" + N more..."` when there were more than
/// `max`, `<unset>` when there were none.
pub(crate) fn list_with_more(list: &[String], count: usize, max: usize) -> String {
    let joined = list.join(",");
    if count > max {
        format!("{joined} + {} more...", count - max)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

/// Upstream's `printBoolPtr`: `True`, `False` or `<unset>`.
pub(crate) fn bool_ptr(v: Option<bool>) -> String {
    match v {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
    .to_string()
}

/// An IntOrString's text (`3`, `50%`), if present.
pub(crate) fn int_or_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}
