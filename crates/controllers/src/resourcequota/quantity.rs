//! Just enough of upstream's `resource.Quantity` for quota arithmetic: a value in nano-units with
//! the format it was written in, summed and compared as upstream's `Add`/`Cmp` do, and written
//! back in upstream's canonical form ("500m", "1536Mi", "2k").

use std::cmp::Ordering;
use std::fmt;

const NANO: i128 = 1_000_000_000;

/// How a quantity was written, which decides how its sum is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `m`, `k`, `M`, ... or no suffix.
    DecimalSi,
    /// `Ki`, `Mi`, `Gi`, ...
    BinarySi,
    /// `1e3`.
    DecimalExponent,
}

/// A quantity: its value in units of 10^-9 (rounded up, as upstream rounds sub-nano precision)
/// and its format.
#[derive(Clone, Copy, Debug)]
pub struct Qty {
    pub nano: i128,
    pub format: Format,
}

impl PartialEq for Qty {
    fn eq(&self, other: &Self) -> bool {
        self.nano == other.nano
    }
}

impl PartialOrd for Qty {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.nano.cmp(&other.nano))
    }
}

impl Qty {
    /// Zero, written "0" (upstream's `Quantity{Format: DecimalSI}`).
    pub const ZERO: Qty = Qty {
        nano: 0,
        format: Format::DecimalSi,
    };

    /// An object count.
    pub fn count(n: i64) -> Qty {
        Qty {
            nano: i128::from(n) * NANO,
            format: Format::DecimalSi,
        }
    }

    /// Parses upstream's quantity syntax, or `None` when the text is not a quantity.
    pub fn parse(text: &str) -> Option<Qty> {
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(end);
        let (int_part, frac) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac.is_empty() {
            return None;
        }
        let (base, exp10, format) = suffix_scale(suffix)?;
        let mut mantissa: i128 = 0;
        for c in int_part.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(c - b'0'))?;
        }
        let frac_len = i32::try_from(frac.len()).ok()?;
        let mut v = mantissa.checked_mul(base)?;
        let mut scale = exp10.checked_add(9)?.checked_sub(frac_len)?;
        while scale > 0 {
            v = v.checked_mul(10)?;
            scale -= 1;
        }
        while scale < 0 {
            // Round up what is finer than a nano-unit.
            v = (v + 9) / 10;
            scale += 1;
        }
        Some(Qty {
            nano: if negative { -v } else { v },
            format,
        })
    }

    /// Adds `other`; a zero sum takes the format of what is added to it, as upstream.
    pub fn add(&mut self, other: Qty) {
        if self.nano == 0 {
            self.format = other.format;
        }
        self.nano = self.nano.saturating_add(other.nano);
    }

    /// Rounded up to a whole number of units.
    pub fn round_up_whole(self) -> Qty {
        let whole = self.nano.div_euclid(NANO) + i128::from(self.nano.rem_euclid(NANO) != 0);
        Qty {
            nano: whole * NANO,
            format: self.format,
        }
    }
}

/// The multiplier, decimal exponent and format a suffix stands for.
fn suffix_scale(suffix: &str) -> Option<(i128, i32, Format)> {
    let bin = |p: u32| Some((1i128 << (10 * p), 0, Format::BinarySi));
    let dec = |e: i32| Some((1, e, Format::DecimalSi));
    match suffix {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(1),
        "Mi" => bin(2),
        "Gi" => bin(3),
        "Ti" => bin(4),
        "Pi" => bin(5),
        "Ei" => bin(6),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let e: i32 = exp.parse().ok()?;
            (-40..=40)
                .contains(&e)
                .then_some((1, e, Format::DecimalExponent))
        }
    }
}

impl fmt::Display for Qty {
    /// Upstream's canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nano == 0 {
            return f.write_str("0");
        }
        let sign = if self.nano < 0 { "-" } else { "" };
        let abs = self.nano.unsigned_abs();
        let binary = self.format == Format::BinarySi
            && abs >= 1024 * NANO.unsigned_abs()
            && abs.is_multiple_of(NANO.unsigned_abs());
        if binary {
            let (mut n, mut exp) = (abs / NANO.unsigned_abs(), 0usize);
            while n % 1024 == 0 && exp < 6 {
                n /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return write!(f, "{sign}{n}{suffix}");
        }
        let (mut m, mut exp) = (abs, -9i32);
        while m % 10 == 0 {
            m /= 10;
            exp += 1;
        }
        let r = exp.rem_euclid(3);
        m *= 10u128.pow(r.unsigned_abs());
        exp -= r;
        if self.format == Format::DecimalExponent {
            return match exp {
                0 => write!(f, "{sign}{m}"),
                e => write!(f, "{sign}{m}e{e}"),
            };
        }
        while exp > 18 {
            m *= 1000;
            exp -= 3;
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{sign}{m}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Qty::parse(s).map(|q| q.to_string()).unwrap_or_default()
    }

    #[test]
    fn writes_quantities_canonically() {
        assert_eq!(canon("500m"), "500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1500m"), "1500m");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("1G"), "1G");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("-250m"), "-250m");
        assert!(Qty::parse("abc").is_none());
        assert!(Qty::parse("1Qi").is_none());
        assert!(Qty::parse("").is_none());
    }

    #[test]
    fn sums_keep_the_first_format() {
        let mut sum = Qty::ZERO;
        for s in ["1Gi", "512Mi"] {
            sum.add(Qty::parse(s).expect("qty"));
        }
        assert_eq!(sum.to_string(), "1536Mi");
        let mut sum = Qty::ZERO;
        for s in ["250m", "750m"] {
            sum.add(Qty::parse(s).expect("qty"));
        }
        assert_eq!(sum.to_string(), "1");
        // Binary values below 1Ki or not a power-of-1024 multiple are written plainly.
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("1.5Ki"), "1536");
        assert_eq!(
            Qty::parse("1.1").expect("qty").round_up_whole().to_string(),
            "2"
        );
    }
}
