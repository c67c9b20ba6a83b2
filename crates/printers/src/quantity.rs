//! Resource quantities as upstream's `resource.Quantity.String()` prints them: the canonical form
//! (`1536Mi`, `500m`, `2k`, `1e3`), rounded up to nano precision.

use serde_json::Value;

/// The canonical text of a quantity cell: `"0"` when absent (Go's zero Quantity), the canonical
/// form when parsable, else the text as given.
pub(crate) fn cell(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => canonical(s).unwrap_or_else(|| s.clone()),
        Some(Value::Number(n)) => canonical(&n.to_string()).unwrap_or_else(|| n.to_string()),
        _ => "0".to_string(),
    }
}

/// How a quantity's suffix says it should be printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, ... (powers of 1024).
    BinarySi,
    /// `m`, `k`, `M`, ... or no suffix (powers of 1000).
    DecimalSi,
    /// `e3`, `E-2`.
    DecimalExponent,
}

/// A parsed quantity: `mantissa * 10^exp10`, printed per `format`.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    mantissa: i128,
    exp10: i32,
    format: Format,
}

/// The largest number of significant digits handled exactly.
const MAX_DIGITS: usize = 30;

/// The canonical form of `s`, or `None` when it is not a quantity this module can handle.
pub(crate) fn canonical(s: &str) -> Option<String> {
    let p = parse(s)?;
    if p.mantissa == 0 {
        return Some("0".to_string());
    }
    if p.format == Format::BinarySi
        && let Some(text) = binary_form(p)
    {
        return Some(text);
    }
    let format = match p.format {
        Format::DecimalExponent => Format::DecimalExponent,
        _ => Format::DecimalSi,
    };
    Some(decimal_form(p, format))
}

/// Parses `[+-]digits[.digits][suffix]` into a value rounded up to nano precision.
fn parse(s: &str) -> Option<Parsed> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_len = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_DIGITS {
        return None;
    }
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let (format, mut exp10, exp2) = suffix_scale(suffix)?;
    exp10 = exp10.checked_sub(i32::try_from(frac_part.len()).ok()?)?;
    if exp2 > 0 {
        mantissa = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    }
    let (mantissa, exp10) = round_up_to_nano(mantissa, exp10)?;
    let mantissa = if negative { -mantissa } else { mantissa };
    Some(Parsed {
        mantissa,
        exp10,
        format,
    })
}

/// The format, power of ten and power of two a suffix stands for.
fn suffix_scale(suffix: &str) -> Option<(Format, i32, u32)> {
    let decimal = |e| Some((Format::DecimalSi, e, 0));
    let binary = |e| Some((Format::BinarySi, 0, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let exp: i32 = exp.parse().ok()?;
            Some((Format::DecimalExponent, exp, 0))
        }
    }
}

/// Rounds `mantissa * 10^exp10` away from zero to a multiple of 10^-9, as upstream does.
fn round_up_to_nano(mut mantissa: i128, mut exp10: i32) -> Option<(i128, i32)> {
    while exp10 < -9 {
        let rem = mantissa % 10;
        mantissa /= 10;
        if rem != 0 {
            mantissa += 1;
        }
        exp10 += 1;
    }
    if mantissa == 0 {
        exp10 = 0;
    }
    Some((mantissa, exp10))
}

/// The power-of-1024 form (`1536Mi`), when the value is an integer of at least 1024.
fn binary_form(p: Parsed) -> Option<String> {
    let mut value = p.mantissa;
    if p.exp10 < 0 {
        let div = 10i128.checked_pow(p.exp10.unsigned_abs())?;
        if value % div != 0 {
            return None;
        }
        value /= div;
    } else {
        value = value.checked_mul(10i128.checked_pow(p.exp10.unsigned_abs())?)?;
    }
    if value.abs() < 1024 {
        return None;
    }
    let mut exp = 0;
    while value % 1024 == 0 && exp < 6 {
        value /= 1024;
        exp += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
    Some(format!("{value}{suffix}"))
}

/// The power-of-1000 form (`1500m`, `2k`, or `2e3` for exponent notation).
fn decimal_form(p: Parsed, format: Format) -> String {
    let (mut mantissa, mut exp) = (p.mantissa, p.exp10);
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exp += 1;
    }
    match exp.rem_euclid(3) {
        1 => {
            mantissa *= 10;
            exp -= 1;
        }
        2 => {
            mantissa *= 100;
            exp -= 2;
        }
        _ => {}
    }
    format!("{mantissa}{}", decimal_suffix(exp, format))
}

/// The suffix for a power of ten that is a multiple of 3.
fn decimal_suffix(exp: i32, format: Format) -> String {
    let si = match exp {
        -9 => Some("n"),
        -6 => Some("u"),
        -3 => Some("m"),
        0 => Some(""),
        3 => Some("k"),
        6 => Some("M"),
        9 => Some("G"),
        12 => Some("T"),
        15 => Some("P"),
        18 => Some("E"),
        _ => None,
    };
    match (format, si) {
        (_, Some("")) => String::new(),
        (Format::DecimalSi, Some(s)) => s.to_string(),
        _ => format!("e{exp}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000Mi", "1000Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("1536", "1536"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("100m", "100m"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1e3", "1e3"),
            ("1E6", "1e6"),
            ("10e2", "1e3"),
            ("0", "0"),
            ("0Gi", "0"),
            ("512Ki", "512Ki"),
            ("100Ki", "100Ki"),
            ("500", "500"),
            ("-2k", "-2k"),
            ("1.5", "1500m"),
            ("0.1n", "1n"),
            ("12345678901234567", "12345678901234567"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn invalid_input_is_kept_or_zero() {
        assert_eq!(canonical("abc"), None);
        assert_eq!(canonical("1Qi"), None);
        assert_eq!(canonical(""), None);
        assert_eq!(cell(Some(&Value::from("weird"))), "weird");
        assert_eq!(cell(None), "0");
        assert_eq!(cell(Some(&Value::from(2000))), "2k");
    }
}
