//! Time as data: timestamps and durations that travel through Raft and over the wire.
//!
//! Nothing here reads a clock. The coordinator stamps each Raft command with its leader's
//! clock; the state machine only ever compares the values it was handed, so every replica
//! reaches the same verdict about a lease.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::names::InvalidValue;

/// Milliseconds since the Unix epoch. Serialized as RFC 3339 (`2026-11-25T10:30:00.000Z`)
/// because people read these in API responses and audit logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Converts a wall-clock reading taken by the caller.
    pub fn from_system(t: SystemTime) -> Self {
        Self(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        )
    }

    /// The instant `d` later, saturating rather than wrapping.
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_millis() as u64))
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Parses RFC 3339. A leap second (`:60`) is refused: humantime would fold it into
    /// the next minute, and the API documents `date-time`, which validators read as 00–59.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.get(17..19) == Some("60") {
            return Err(InvalidValue::new(
                "timestamp",
                s,
                "a leap second (:60) is not accepted; expected RFC 3339 with seconds 00-59",
            ));
        }
        humantime::parse_rfc3339_weak(s)
            .map(Self::from_system)
            .map_err(|e| InvalidValue::new("timestamp", s, format!("{e}; expected RFC 3339")))
    }
}

impl Timestamp {
    /// The last instant RFC 3339 can write (four-digit years): 9999-12-31T23:59:59.999Z.
    pub const LAST_WRITABLE: Timestamp = Timestamp(253_402_300_799_999);
}

impl fmt::Display for Timestamp {
    /// Later instants (only reachable through saturating arithmetic) are written as
    /// [`Timestamp::LAST_WRITABLE`]: humantime refuses years past 9999 with `fmt::Error`,
    /// which `to_string` and serde_json turn into a panic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_millis(self.0.min(Self::LAST_WRITABLE.0));
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The deterministic clock of a replicated state machine: the largest timestamp it has been
/// handed. A leader whose clock runs behind a previous leader's cannot move time backwards,
/// so a lease that has expired stays expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MaxClock {
    now: Timestamp,
}

impl MaxClock {
    /// Feeds in a command's timestamp and returns the clock's (monotone) reading.
    pub fn observe(&mut self, t: Timestamp) -> Timestamp {
        self.now = self.now.max(t);
        self.now
    }

    /// The current reading.
    pub fn now(&self) -> Timestamp {
        self.now
    }
}

/// A duration written the way operators write them: `250ms`, `30s`, `5m`, `1h30m`, `2d`.
/// Serialized as that text. Bare numbers are refused: "30" could mean seconds or milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// The longest duration accepted anywhere: 30 days. Longer values are almost always a
    /// unit mistake, and they keep timestamp arithmetic far from overflow.
    pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

    /// Parses `<number><unit>` groups (units `ms`, `s`, `m`, `h`, `d`).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        const WHAT: &str = "duration";
        let err = |r: &str| InvalidValue::new(WHAT, s, r);
        if s.is_empty() {
            return Err(err("must not be empty; write e.g. 30s, 5m or 1h30m"));
        }
        let mut total: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("expected a number; write e.g. 30s, 5m or 1h30m"));
            }
            if digits > 12 {
                return Err(err("number is too large"));
            }
            let n: u128 = rest[..digits].parse().map_err(|_| err("bad number"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let ms_per = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(err("a number needs a unit: ms, s, m, h or d")),
                _ => return Err(err("unknown unit; use ms, s, m, h or d")),
            };
            total += n * ms_per;
        }
        if total > Self::MAX.as_millis() {
            return Err(err("is longer than the maximum of 30 days"));
        }
        Ok(Self(Duration::from_millis(total as u64)))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Shorthand for seconds.
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, per) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= per {
                write!(f, "{}{unit}", ms / per)?;
                ms %= per;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DurationSpec::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for DurationSpec {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        let ms = |s: &str| DurationSpec::parse(s).unwrap().0.as_millis();
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("2d"), 172_800_000);
        assert_eq!(ms("0s"), 0);
        for bad in [
            "",
            "30",
            "s",
            "5 m",
            "5min",
            "-1s",
            "1.5s",
            "31d",
            "9999999999999s",
        ] {
            DurationSpec::parse(bad).unwrap_err();
        }
        assert!(DurationSpec::parse("30")
            .unwrap_err()
            .to_string()
            .contains("needs a unit"));
    }

    #[test]
    fn timestamps() {
        let t = Timestamp(1_764_066_600_123);
        let s = t.to_string();
        assert_eq!(s, "2025-11-25T10:30:00.123Z");
        assert_eq!(Timestamp::parse(&s).unwrap(), t);
        assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{s}\""));
        Timestamp::parse("yesterday").unwrap_err();
        // A leap second is refused (schemathesis found it accepted against `date-time`).
        assert!(Timestamp::parse("1991-01-31T02:35:60Z")
            .unwrap_err()
            .to_string()
            .contains("leap second"));
        Timestamp::parse("1991-01-31T02:35:59Z").unwrap();
        assert_eq!(
            t.plus(Duration::from_secs(1)).since(t),
            Duration::from_secs(1)
        );
        assert_eq!(t.since(t.plus(Duration::from_secs(1))), Duration::ZERO);
    }

    #[test]
    fn max_clock_never_goes_back() {
        let mut c = MaxClock::default();
        assert_eq!(c.observe(Timestamp(10)), Timestamp(10));
        assert_eq!(c.observe(Timestamp(5)), Timestamp(10));
        assert_eq!(c.observe(Timestamp(12)), Timestamp(12));
        assert_eq!(c.now(), Timestamp(12));
    }

    proptest! {
        #[test]
        fn duration_display_round_trips(ms in 0u64..DurationSpec::MAX.as_millis() as u64) {
            let d = DurationSpec(Duration::from_millis(ms));
            prop_assert_eq!(DurationSpec::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn duration_parse_never_panics(s in "\\PC{0,24}") {
            let _ = DurationSpec::parse(&s);
        }
    }
}
