//! Sizes (`"2GiB"`) and durations (`"10m"`) as written in profiles.
//!
//! Both are strict: one unit from a short list, whole numbers only, never zero. A profile is a
//! security document; `"2G"` meaning either 2·10⁹ or 2·2³⁰ depending on who reads it is the kind
//! of ambiguity it must not have, so only the spelled-out units are accepted.

use std::time::Duration;

/// Units accepted for sizes, with their multipliers.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Units accepted for durations, with their length in seconds.
const DURATION_UNITS: &[(&str, u64)] = &[("h", 3600), ("m", 60), ("s", 1)];

/// Parse a size such as `"512MiB"` or `"1 GiB"` into bytes.
///
/// # Errors
/// A message saying what is wrong with `text`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size (a whole number and one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB, e.g. \"512MiB\")"
        )
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(bad)?;
    let (_, multiplier) = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit.trim_start())
        .ok_or_else(bad)?;
    let bytes = number
        .checked_mul(*multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("must be greater than 0".to_owned());
    }
    Ok(bytes)
}

/// Parse a duration such as `"10m"`, `"30s"` or `"1h30m"`.
///
/// # Errors
/// A message saying what is wrong with `text`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration (whole numbers with units h, m, s, e.g. \"10m\", \"30s\", \"1h30m\")"
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut seconds: u64 = 0;
    let mut last_unit_rank = None;
    while !rest.is_empty() {
        let (number, after) = split_number(rest).ok_or_else(bad)?;
        let (rank, (unit, factor)) = DURATION_UNITS
            .iter()
            .enumerate()
            .find(|(_, (unit, _))| after.starts_with(unit))
            .ok_or_else(bad)?;
        // Units must be in decreasing order and each used once: "1h30m", not "30m1h".
        if last_unit_rank.is_some_and(|last| rank <= last) {
            return Err(bad());
        }
        last_unit_rank = Some(rank);
        seconds = number
            .checked_mul(*factor)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = &after[unit.len()..];
    }
    if seconds == 0 {
        return Err("must be greater than 0".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

/// Write a duration back the way a profile would: `"1h30m"`, `"10m"`, `"45s"`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    let mut out = String::new();
    for (unit, factor) in DURATION_UNITS {
        if seconds >= *factor {
            out.push_str(&format!("{}{unit}", seconds / factor));
            seconds %= factor;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Write a byte count back with the largest binary unit that divides it.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, factor) in SIZE_UNITS[..5].iter().rev() {
        if bytes >= *factor && bytes.is_multiple_of(*factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Split leading ASCII digits off `text`.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text.get(..end)?.parse().ok()?;
    Some((number, &text[end..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1 KiB").unwrap(), 1024);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("7B").unwrap(), 7);
        for bad in ["", "2G", "2gib", "1.5GiB", "GiB", "-1MiB", "2 GiB x"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_size("0MiB").unwrap_err(), "must be greater than 0");
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "10", "10 min", "1.5h", "30m1h", "1m1m", "m", "10ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_duration("0s").unwrap_err(), "must be greater than 0");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["10m", "30s", "1h30m", "2h", "1h1m1s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        for text in ["2GiB", "512MiB", "1KiB", "7B", "1TiB"] {
            assert_eq!(format_size(parse_size(text).unwrap()), text);
        }
        assert_eq!(format_size(10_000_000), "10000000B");
    }
}
