//! Durations as written in the files: `"90s"`, `"5m"`, `"1h30m"`, `"500ms"`.

use std::time::Duration;

/// A duration as the playbook writes it (`200ms`, `30s`, `5m`, `1h`), for messages.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Parses one or more `NUMBER UNIT` pairs (units `ms`, `s`, `m`, `h`), e.g. `"1m30s"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let hint = "use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\"";
    if text.is_empty() {
        return Err(format!("empty duration: {hint}"));
    }
    if text.contains(char::is_whitespace) {
        return Err(format!("invalid duration {text:?}: no spaces, {hint}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {text:?}: {hint}"));
        }
        let Ok(number) = rest[..digits].parse::<u64>() else {
            return Err(format!(
                "invalid duration {text:?}: the number is too large"
            ));
        };
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => number
                .checked_mul(60)
                .map_or(Duration::MAX, Duration::from_secs),
            "h" => number
                .checked_mul(3600)
                .map_or(Duration::MAX, Duration::from_secs),
            "" => return Err(format!("invalid duration {text:?}: missing unit, {hint}")),
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?}, {hint}"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("invalid duration {text:?}: must be more than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_and_sums() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(
            parse("10").unwrap_err(),
            "invalid duration \"10\": missing unit, use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\""
        );
        assert_eq!(
            parse("10 s").unwrap_err(),
            "invalid duration \"10 s\": no spaces, use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\""
        );
        assert_eq!(
            parse("3d").unwrap_err(),
            "invalid duration \"3d\": unknown unit \"d\", use a number and a unit (ms, s, m, h), e.g. \"10s\" or \"5m\""
        );
        assert_eq!(
            parse("0s").unwrap_err(),
            "invalid duration \"0s\": must be more than zero"
        );
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("99999999999999999999s").is_err());
    }
}
