//! Go's `time.Duration` text form, as `metav1.Duration` is written in JSON: `String()`
//! (`1h2m3.5s`, `150ms`, `0s`) and `ParseDuration`.

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;

/// Formats nanoseconds as Go's `Duration.String()` does.
pub(crate) fn format(d: i64) -> String {
    if d == 0 {
        return "0s".to_string();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (digits, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (int, frac) = split(u, digits);
        out.push_str(&int.to_string());
        out.push_str(&frac);
        out.push_str(unit);
    } else {
        let (secs, frac) = split(u, 9);
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if secs >= 60 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&format!("{s}{frac}s"));
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `v` split at `digits` decimal places: the integer part and `.fraction` without trailing
/// zeros (empty when the fraction is zero).
fn split(v: u64, digits: u32) -> (u64, String) {
    let scale = 10u64.pow(digits);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return (int, String::new());
    }
    let text = format!("{frac:0width$}", width = digits as usize);
    (int, format!(".{}", text.trim_end_matches('0')))
}

/// Parses a Go duration (`300ms`, `-1.5h`, `2h45m`, `0`) into nanoseconds.
pub(crate) fn parse(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (value, after) = component(rest)?;
        total = total.checked_add(value)?;
        rest = after;
    }
    let limit = if neg { 1u128 << 63 } else { (1u128 << 63) - 1 };
    if total > limit {
        return None;
    }
    let total = i128::try_from(total).ok()?;
    i64::try_from(if neg { -total } else { total }).ok()
}

/// One `<number>[.<fraction>]<unit>` component, in nanoseconds, and what follows it.
fn component(s: &str) -> Option<(u128, &str)> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (int, rest) = s.split_at(int_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            r.split_at(n)
        }
        None => ("", rest),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let unit_len = rest
        .char_indices()
        .find(|(_, c)| c.is_ascii_digit() || *c == '.')
        .map_or(rest.len(), |(i, _)| i);
    let (unit, rest) = rest.split_at(unit_len);
    let scale = match unit {
        "ns" => NS,
        "us" | "µs" | "μs" => US,
        "ms" => MS,
        "s" => S,
        "m" => 60 * S,
        "h" => 3600 * S,
        _ => return None,
    };
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = whole.checked_mul(scale)?;
    if !frac.is_empty() {
        let digits = frac.len().min(30);
        let f: u128 = frac[..digits].parse().ok()?;
        value = value.checked_add(f.checked_mul(scale)? / 10u128.pow(digits as u32))?;
    }
    Some((value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (60_000_000_000, "1m0s"),
            (61_000_000_000, "1m1s"),
            (3_600_000_000_000, "1h0m0s"),
            (4_000_000_000_000, "1h6m40s"),
            (-5_000_000_000, "-5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (ns, text) in cases {
            assert_eq!(format(ns), text);
        }
    }

    #[test]
    fn parses_like_go() {
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse("1h0m0s"), Some(3_600_000_000_000));
        assert_eq!(parse("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse("300ms"), Some(300_000_000));
        assert_eq!(parse("-1m30s"), Some(-90_000_000_000));
        assert_eq!(parse("1µs"), Some(1_000));
        assert_eq!(parse(".5s"), Some(500_000_000));
        assert_eq!(parse("2562047h47m16.854775807s"), Some(i64::MAX));
        assert_eq!(parse("-2562047h47m16.854775808s"), Some(i64::MIN));
        for bad in ["", "1", "s", "1x", "9999999999999h", "1..5s", "-", "."] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips() {
        for ns in [
            1,
            999,
            1_000_001,
            59_999_999_999,
            86_400_000_000_000,
            -123_456_789,
        ] {
            assert_eq!(parse(&format(ns)), Some(ns));
        }
    }
}
