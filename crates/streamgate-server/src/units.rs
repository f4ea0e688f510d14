//! Human units in configuration files: durations (`"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"2d"`)
//! and rates (`"10/min"`, `"5/10s"`, `"100/s"`).

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with a unit: `ms`, `s`, `m`/`min`, `h`, `d`; a bare integer is seconds.
///
/// ```
/// use std::time::Duration;
/// use streamgate_server::units::Span;
///
/// assert_eq!("1500ms".parse::<Span>()?.0, Duration::from_millis(1500));
/// assert_eq!("5m".parse::<Span>()?.0, Duration::from_secs(300));
/// assert_eq!(Span(Duration::from_secs(3600)).to_string(), "1h");
/// assert!("5 parsecs".parse::<Span>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let bad = || format!("`{text}` is not a duration (write e.g. 500ms, 10s, 5m, 1h, 2d)");
        let n: u64 = number.parse().map_err(|_| bad())?;
        let millis = match unit.trim() {
            "ms" => Some(n),
            "" | "s" => n.checked_mul(1_000),
            "m" | "min" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => None,
        }
        .ok_or_else(bad)?;
        Ok(Self(Duration::from_millis(millis)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Self(Duration::from_secs(s))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A quota written as `count/period`: `"10/min"`, `"5/10s"`, `"100/s"`, `"1000/1h"`.
///
/// ```
/// use std::time::Duration;
/// use streamgate_server::units::Quota;
///
/// let q: Quota = "5/10s".parse()?;
/// assert_eq!((q.count, q.per), (5, Duration::from_secs(10)));
/// assert_eq!("10/min".parse::<Quota>()?.to_string(), "10/1m");
/// assert!("0/s".parse::<Quota>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period (at least 1).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl FromStr for Quota {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a rate (write e.g. 10/min, 5/10s, 100/s)");
        let (count, per) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            per.parse::<Span>()?
        } else {
            format!("1{per}").parse::<Span>().map_err(|_| bad())?
        };
        if count == 0 || per.0.is_zero() {
            return Err(format!("`{text}`: the count and the period must not be 0"));
        }
        Ok(Self { count, per: per.0 })
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, Span(self.per))
    }
}

impl Serialize for Quota {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl From<Quota> for streamgate_ratelimit::Rate {
    fn from(q: Quota) -> Self {
        Self::new(q.count, q.per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print_round_trip() {
        for text in ["250ms", "1s", "90s", "5m", "2h", "3d"] {
            let span: Span = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(span.to_string().parse::<Span>(), Ok(span));
        }
        assert_eq!(
            "90s".parse::<Span>().map(|s| s.to_string()),
            Ok("90s".into())
        );
        assert!("".parse::<Span>().is_err());
        assert!("-1s".parse::<Span>().is_err());
        assert!("99999999999999999999d".parse::<Span>().is_err());
    }

    #[test]
    fn quotas_refuse_nonsense() {
        assert!("10".parse::<Quota>().is_err());
        assert!("x/min".parse::<Quota>().is_err());
        assert!("10/fortnight".parse::<Quota>().is_err());
        assert!("10/0s".parse::<Quota>().is_err());
        assert_eq!(
            "100/s".parse::<Quota>(),
            Ok(Quota {
                count: 100,
                per: Duration::from_secs(1)
            })
        );
    }
}
