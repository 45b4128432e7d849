//! Prometheus-style durations (`30d`, `2w`, `1h30m`), the form `spec.retention` takes.

use std::fmt;

/// A whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration {
    seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration like 30d, 2w or 720h (units: y, w, d, h, m, s)")]
pub struct DurationError {
    input: String,
}

impl Duration {
    pub const DAY: u64 = 24 * 3600;

    pub const fn from_seconds(seconds: u64) -> Self {
        Self { seconds }
    }

    pub fn seconds(self) -> u64 {
        self.seconds
    }

    /// Parses one or more `<number><unit>` terms, as Prometheus does.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let error = || DurationError {
            input: input.to_string(),
        };
        let mut rest = input.trim();
        if rest.is_empty() {
            return Err(error());
        }
        let mut seconds: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
            if digits == 0 {
                return Err(error());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| error())?;
            let after = &rest[digits..];
            let unit_len = after
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(after.len());
            let unit = match &after[..unit_len] {
                "y" => 365 * Self::DAY,
                "w" => 7 * Self::DAY,
                "d" => Self::DAY,
                "h" => 3600,
                "m" => 60,
                "s" => 1,
                _ => return Err(error()),
            };
            seconds = number
                .checked_mul(unit)
                .and_then(|s| s.checked_add(seconds))
                .ok_or_else(error)?;
            rest = &after[unit_len..];
        }
        Ok(Self { seconds })
    }
}

/// Formats as hours, minutes and seconds (`720h`, `1h30m`): valid for Go's
/// `time.ParseDuration` and for Prometheus durations alike, so every product reads it.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (
            self.seconds / 3600,
            self.seconds / 60 % 60,
            self.seconds % 60,
        );
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 || out.is_empty() {
            out.push_str(&format!("{s}s"));
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prometheus_units() {
        assert_eq!(
            Duration::parse("30d").map(|d| d.seconds()),
            Ok(30 * Duration::DAY)
        );
        assert_eq!(
            Duration::parse("2w").map(|d| d.to_string()),
            Ok("336h".into())
        );
        assert_eq!(
            Duration::parse("1h30m").map(|d| d.to_string()),
            Ok("1h30m".into())
        );
        assert_eq!(
            Duration::parse("1y").map(|d| d.to_string()),
            Ok("8760h".into())
        );
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "30", "d", "30 days", "-1d", "1.5h", "30D", "1ms", "h1"] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} parsed");
        }
        let message = Duration::parse("forever")
            .expect_err("not a duration")
            .to_string();
        assert!(message.contains("\"forever\""), "{message}");
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_duration(seconds in 0u64..10_000_000_000) {
            let d = Duration::from_seconds(seconds);
            prop_assert_eq!(Duration::parse(&d.to_string()), Ok(d));
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,20}") {
            let _ = Duration::parse(&input);
        }
    }
}
