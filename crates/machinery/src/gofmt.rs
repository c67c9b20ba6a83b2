//! Go `fmt` renderings of JSON values, so that messages read exactly like upstream's.
//!
//! Upstream builds its messages with `%q`, `%v` and `%#v` on decoded JSON (`map[string]any`,
//! `[]any`, `string`, `float64`, `bool`, `nil`); these functions reproduce those renderings.

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// Go's `strconv.Quote` (`%q`): a double-quoted string with Go escapes.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                if (c as u32) <= 0xFFFF {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a float64 (the `%g` shortest representation Go uses for `%v`).
pub(crate) fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let exp = if f == 0.0 {
        0
    } else {
        f.abs().log10().floor() as i32
    };
    if (-4..21).contains(&exp) {
        return format!("{f}");
    }
    // Go: mantissa, 'e', sign and at least two exponent digits.
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((mantissa, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    float(n.as_f64().unwrap_or_default())
}

/// Go's `%v` of a decoded JSON value: `map[a:1 b:x]`, `[a b]`, `<nil>`.
pub(crate) fn v(value: &Value) -> String {
    let mut out = String::new();
    write_v(&mut out, value);
    out
}

fn write_v(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                if let Some(item) = map.get(k) {
                    write_v(out, item);
                }
            }
            out.push(']');
        }
    }
}

/// Go's `%#v`, approximated for JSON values: strings quoted, a list of strings as
/// `[]string{"a", "b"}`, other lists and maps in `[]interface {}{..}` / `map[string]interface {}{..}`.
pub(crate) fn sharp_v(value: &Value) -> String {
    match value {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(_) | Value::Number(_) => v(value),
        Value::String(s) => quote(s),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let inner: Vec<String> = items.iter().map(sharp_v).collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(sharp_v).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .filter_map(|k| {
                    map.get(k)
                        .map(|item| format!("{}:{}", quote(k), sharp_v(item)))
                })
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

/// The Go type name `reflect.TypeOf` gives a decoded JSON value.
pub(crate) fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        None | Some(Value::Null) => "<nil>",
        Some(Value::Bool(_)) => "bool",
        Some(Value::Number(_)) => "float64",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "[]interface {}",
        Some(Value::Object(_)) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quote_escapes_like_go() {
        for (input, want) in [
            ("Foo_Bar", r#""Foo_Bar""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("tab\there\n", r#""tab\there\n""#),
            ("\u{1}", r#""\x01""#),
            ("héllo", "\"héllo\""),
        ] {
            assert_eq!(quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn v_renders_like_go() {
        for (input, want) in [
            (json!(null), "<nil>"),
            (json!(1), "1"),
            (json!(1.5), "1.5"),
            (json!(1e21), "1e+21"),
            (json!("x"), "x"),
            (json!(["a", 1]), "[a 1]"),
            (json!({"b": 1, "a": {"c": true}}), "map[a:map[c:true] b:1]"),
        ] {
            assert_eq!(v(&input), want, "{input}");
        }
    }

    #[test]
    fn sharp_v_renders_like_go() {
        assert_eq!(sharp_v(&json!(["a", "b"])), r#"[]string{"a", "b"}"#);
        assert_eq!(sharp_v(&json!([])), "[]string{}");
        assert_eq!(sharp_v(&json!([1])), "[]interface {}{1}");
        assert_eq!(
            sharp_v(&json!({"k": "v"})),
            r#"map[string]interface {}{"k":"v"}"#
        );
    }
}
