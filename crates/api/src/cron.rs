//! The standard 5-field cron parser CronJobs use upstream (`robfig/cron` `ParseStandard`), with
//! its error messages, which the API server returns verbatim.

/// Why a schedule does not parse; the `Display` text is upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("empty spec string")]
    Empty,
    #[error("unrecognized descriptor: {0}")]
    UnknownDescriptor(String),
    #[error("failed to parse duration {0}: time: invalid duration \"{1}\"")]
    BadDuration(String, String),
    #[error("expected exactly 5 fields, found {count}: [{fields}]")]
    FieldCount { count: usize, fields: String },
    #[error("too many hyphens: {0}")]
    TooManyHyphens(String),
    #[error("too many slashes: {0}")]
    TooManySlashes(String),
    #[error("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": {reason}")]
    NotAnInt { expr: String, reason: &'static str },
    #[error("negative number ({num}) not allowed: {expr}")]
    Negative { num: i64, expr: String },
    #[error("beginning of range ({start}) below minimum ({min}): {expr}")]
    BelowMinimum { start: u32, min: u32, expr: String },
    #[error("end of range ({end}) above maximum ({max}): {expr}")]
    AboveMaximum { end: u32, max: u32, expr: String },
    #[error("beginning of range ({start}) beyond end of range ({end}): {expr}")]
    StartBeyondEnd { start: u32, end: u32, expr: String },
    #[error("step of range should be a positive number: {0}")]
    ZeroStep(String),
}

/// The parsed bits of a 5-field schedule: bit `n` set means value `n` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronFields {
    pub minute: u64,
    pub hour: u64,
    pub day_of_month: u64,
    pub month: u64,
    pub day_of_week: u64,
}

/// A parsed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronSchedule {
    Fields(CronFields),
    /// `@every <duration>`, in whole seconds (at least 1).
    Every(u64),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses a schedule like `*/5 * * * *`, `@daily` or `TZ=UTC 0 1 * * *`.
pub fn parse(spec: &str) -> Result<CronSchedule, CronError> {
    if spec.is_empty() {
        return Err(CronError::Empty);
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec.split_once(' ').map_or("", |(_, rest)| rest).trim();
    }
    if let Some(desc) = spec.strip_prefix('@') {
        return parse_descriptor(desc, spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError::FieldCount {
            count: fields.len(),
            fields: fields.join(" "),
        });
    }
    Ok(CronSchedule::Fields(CronFields {
        minute: parse_field(fields[0], &MINUTES)?,
        hour: parse_field(fields[1], &HOURS)?,
        day_of_month: parse_field(fields[2], &DOM)?,
        month: parse_field(fields[3], &MONTHS)?,
        day_of_week: parse_field(fields[4], &DOW)?,
    }))
}

fn parse_descriptor(desc: &str, spec: &str) -> Result<CronSchedule, CronError> {
    let fields = |m, h, dom, mon, dow| {
        Ok(CronSchedule::Fields(CronFields {
            minute: m,
            hour: h,
            day_of_month: dom,
            month: mon,
            day_of_week: dow,
        }))
    };
    let all = |b: &Bounds| bits(b.min, b.max, 1);
    match desc {
        "yearly" | "annually" => fields(1, 1, 1 << 1, 1 << 1, all(&DOW)),
        "monthly" => fields(1, 1, 1 << 1, all(&MONTHS), all(&DOW)),
        "weekly" => fields(1, 1, all(&DOM), all(&MONTHS), 1),
        "daily" | "midnight" => fields(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "hourly" => fields(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        d if d.starts_with("every ") => {
            let dur = d["every ".len()..].trim();
            let secs = parse_duration(dur)
                .ok_or_else(|| CronError::BadDuration(dur.to_string(), dur.to_string()))?;
            Ok(CronSchedule::Every(secs.max(1)))
        }
        _ => Err(CronError::UnknownDescriptor(spec.to_string())),
    }
}

/// Go's `time.ParseDuration`, truncated to whole seconds.
fn parse_duration(s: &str) -> Option<u64> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    Some(total as u64)
}

fn parse_field(field: &str, b: &Bounds) -> Result<u64, CronError> {
    let mut out = 0;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        out |= parse_range(expr, b)?;
    }
    Ok(out)
}

fn parse_range(expr: &str, b: &Bounds) -> Result<u64, CronError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(low_high[0], b)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, parse_int_or_name(low_high[1], b)?),
            _ => return Err(CronError::TooManyHyphens(expr.to_string())),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            step
        }
        _ => return Err(CronError::TooManySlashes(expr.to_string())),
    };
    let expr = expr.to_string();
    if start < b.min {
        return Err(CronError::BelowMinimum {
            start,
            min: b.min,
            expr,
        });
    }
    if end > b.max {
        return Err(CronError::AboveMaximum {
            end,
            max: b.max,
            expr,
        });
    }
    if start > end {
        return Err(CronError::StartBeyondEnd { start, end, expr });
    }
    if step == 0 {
        return Err(CronError::ZeroStep(expr));
    }
    Ok(bits(start, end, step))
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u32, CronError> {
    let lower = expr.to_lowercase();
    if let Some(i) = b.names.iter().position(|n| !n.is_empty() && *n == lower) {
        return u32::try_from(i).map_err(|_| CronError::TooManyHyphens(expr.to_string()));
    }
    parse_int(expr)
}

fn parse_int(expr: &str) -> Result<u32, CronError> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(CronError::NotAnInt {
            expr: expr.to_string(),
            reason: "invalid syntax",
        });
    }
    let out_of_range = || CronError::NotAnInt {
        expr: expr.to_string(),
        reason: "value out of range",
    };
    let num: i64 = expr.parse().map_err(|_| out_of_range())?;
    if num < 0 {
        return Err(CronError::Negative {
            num,
            expr: expr.to_string(),
        });
    }
    // Values past u32 cannot be in any range: report them against the maximum.
    Ok(u32::try_from(num).unwrap_or(u32::MAX))
}

fn bits(start: u32, end: u32, step: u32) -> u64 {
    (start..=end.min(63))
        .step_by(step as usize)
        .fold(0, |acc, i| acc | (1u64 << i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * 0",
            "@daily",
            "@every 1h30m",
            "0 9-17 * jan-mar mon-fri",
            "TZ=UTC 0 1 * * *",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        let Ok(CronSchedule::Fields(f)) = parse("*/15 1 * * *") else {
            panic!("parse")
        };
        assert_eq!(f.minute, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(f.hour, 1 << 1);
    }

    #[test]
    fn rejects_with_upstream_messages() {
        let cases = [
            ("", "empty spec string"),
            ("foo", "expected exactly 5 fields, found 1: [foo]"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ];
        for (spec, want) in cases {
            assert_eq!(
                parse(spec).map(|_| ()).map_err(|e| e.to_string()),
                Err(want.to_string()),
                "{spec}"
            );
        }
    }
}
