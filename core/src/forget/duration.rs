//! `--keep-within` durations: calendar spans like `1y2m3d4h`, counted back from the newest
//! snapshot the way restic counts them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Timelike};

use super::PolicyError;

/// A span of years, months, days and hours. Calendar units are not fixed lengths (a month
/// back from 31 March is "3 March", as Go's `AddDate` normalises 31 February), so this is
/// not a [`std::time::Duration`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl Span {
    /// Whether every unit is zero (the option is off).
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// The instant this span before `t`: years, months and days go back on the calendar of
    /// `t`'s time zone, then hours go back as elapsed time (restic's
    /// `AddDate(-y, -m, -d).Add(-h * time.Hour)`). `None` if that is before chrono's range.
    pub fn before<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = t.timezone();
        let local = t.naive_local();
        // Months first, then days as an offset from the first of the month, so that day
        // overflow ("31 February") rolls into the next month as Go's time.Date does.
        let months = i64::from(local.year()) * 12 + i64::from(local.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(months.div_euclid(12)).ok()?;
        let month0 = u32::try_from(months.rem_euclid(12)).ok()?;
        let first = NaiveDate::from_ymd_opt(year, month0 + 1, 1)?;
        let day = first.checked_add_signed(Duration::days(
            i64::from(local.day0()) - i64::from(self.days),
        ))?;
        let wall = day.and_hms_nano_opt(
            local.hour(),
            local.minute(),
            local.second(),
            local.nanosecond(),
        )?;
        let at = match tz.from_local_datetime(&wall) {
            chrono::LocalResult::Single(x) => x,
            chrono::LocalResult::Ambiguous(first, _) => first,
            // A wall time inside a daylight-saving gap: read it with the offset in force
            // before the gap, which lands after the gap, as Go does.
            chrono::LocalResult::None => {
                let before = tz
                    .offset_from_utc_datetime(&(wall - Duration::hours(24)))
                    .fix();
                tz.from_utc_datetime(&(wall - before))
            }
        };
        at.checked_sub_signed(Duration::hours(i64::from(self.hours)))
    }
}

impl FromStr for Span {
    type Err = PolicyError;

    /// Parses `6y5m234d37h` (any subset, any order). Negative numbers are refused, as
    /// restic 0.16 refuses them: restic 0.14 took `-1d` to mean "a day after the newest".
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &'static str| PolicyError::Span {
            input: input.to_owned(),
            reason,
        };
        let mut span = Span::default();
        let mut seen = [false; 4];
        let mut rest = input.trim();
        while !rest.is_empty() {
            if rest.starts_with('-') {
                return Err(bad("negative durations are not allowed"));
            }
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u32 = rest[..digits]
                .parse()
                .map_err(|_| bad("number too large"))?;
            let (slot, k) = match rest[digits..].chars().next() {
                Some('y') => (&mut span.years, 0),
                Some('m') => (&mut span.months, 1),
                Some('d') => (&mut span.days, 2),
                Some('h') => (&mut span.hours, 3),
                Some(_) => return Err(bad("unknown unit (use y, m, d or h)")),
                None => return Err(bad("number without a unit (use y, m, d or h)")),
            };
            if std::mem::replace(&mut seen[k], true) {
                return Err(bad("a unit is given twice"));
            }
            *slot = n;
            rest = &rest[digits + 1..];
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    /// restic's spelling: units in the order y, m, d, h, zero units left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn span(s: &str) -> Span {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_like_restic() {
        let s = span("1y2m3d4h");
        assert_eq!(
            s,
            Span {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(s.to_string(), "1y2m3d4h");
        assert_eq!(span("4h1y").to_string(), "1y4h");
        assert_eq!(span(" 7d ").to_string(), "7d");
        assert!(span("").is_zero());
        assert!(span("0d").is_zero());
        for bad in ["1", "d", "1w", "-1d", "1d1d", "1.5d", "99999999999d"] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn months_back_overflow_like_go_add_date() {
        // 31 March minus one month is "31 February", which Go normalises to 3 March.
        let t = Utc.with_ymd_and_hms(2023, 3, 31, 12, 0, 0).unwrap();
        let b = span("1m").before(&t).unwrap();
        assert_eq!(b, Utc.with_ymd_and_hms(2023, 3, 3, 12, 0, 0).unwrap());
        // Days go back across a year; hours are elapsed time after the calendar step.
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 1, 0, 0).unwrap();
        let b = span("1y2d3h").before(&t).unwrap();
        assert_eq!(b, Utc.with_ymd_and_hms(2022, 12, 30, 22, 0, 0).unwrap());
        // The calendar is the time zone's: 00:30 on 1 March at +02:00 is still February in UTC.
        let tz = FixedOffset::east_opt(2 * 3600).unwrap();
        let t = tz.with_ymd_and_hms(2023, 3, 1, 0, 30, 0).unwrap();
        let b = span("1m").before(&t).unwrap();
        assert_eq!(b, tz.with_ymd_and_hms(2023, 2, 1, 0, 30, 0).unwrap());
    }
}
