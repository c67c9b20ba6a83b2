//! Just enough of `resource.Quantity` to compare and sign-check quantities: a parsed quantity is
//! its value in nano-units (saturating at the i128 range).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in units of 10^-9, or `None` when the text is not a quantity.
pub fn nano_value(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (negative, number) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
    {
        return None;
    }
    let (base, exp10) = suffix_scale(suffix)?;
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        mantissa = mantissa
            .saturating_mul(10)
            .saturating_add(i128::from(c as u8 - b'0'));
    }
    // value = mantissa * 10^-(frac digits) * base * 10^exp10, expressed in 10^-9 units.
    let mut scale10 = exp10 + 9 - i32::try_from(frac_part.len()).ok()?;
    let mut v = mantissa.saturating_mul(base);
    while scale10 > 0 {
        v = v.saturating_mul(10);
        scale10 -= 1;
    }
    while scale10 < 0 {
        v /= 10;
        scale10 += 1;
    }
    Some(if negative { -v } else { v })
}

/// The binary multiplier and decimal exponent a suffix stands for.
fn suffix_scale(suffix: &str) -> Option<(i128, i32)> {
    let binary = |p: u32| Some((1i128 << (10 * p), 0));
    match suffix {
        "" => Some((1, 0)),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => Some((1, -9)),
        "u" => Some((1, -6)),
        "m" => Some((1, -3)),
        "k" => Some((1, 3)),
        "M" => Some((1, 6)),
        "G" => Some((1, 9)),
        "T" => Some((1, 12)),
        "P" => Some((1, 15)),
        "E" => Some((1, 18)),
        s if s.starts_with(['e', 'E']) => s[1..].parse::<i32>().ok().map(|e| (1, e)),
        _ => None,
    }
}

/// The nano-value of a k8s-openapi quantity.
pub fn value(q: &Quantity) -> Option<i128> {
    nano_value(&q.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_and_exponents() {
        assert_eq!(nano_value("1"), Some(1_000_000_000));
        assert_eq!(nano_value("100m"), Some(100_000_000));
        assert_eq!(nano_value("0.5"), Some(500_000_000));
        assert_eq!(nano_value("1Ki"), Some(1024 * 1_000_000_000));
        assert_eq!(nano_value("1e3"), nano_value("1k"));
        assert_eq!(nano_value("-1"), Some(-1_000_000_000));
        assert_eq!(nano_value("1.5Gi"), Some(1_610_612_736 * 1_000_000_000));
        assert_eq!(nano_value("abc"), None);
        assert_eq!(nano_value("1Xi"), None);
        assert!(nano_value("500Mi") < nano_value("1Gi"));
    }
}
