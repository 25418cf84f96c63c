//! Dates as the pages show them (UTC), and the expiry date a person types.

use super::*;

/// Days since the epoch of a `YYYY-MM-DD` date.
pub(super) fn parse_date(text: &str) -> Option<u64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1970..=9998).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Refuse dates that do not exist (2027-02-30).
    (civil_from_days(days) == (y, m, d))
        .then(|| u64::try_from(days).ok())
        .flatten()
}

pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-27 14:05 UTC`.
pub(super) fn exact(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (y, m, d) = civil_from_days(i64::try_from(secs / DAY).unwrap_or(0));
    let rem = secs % DAY;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `2026-11-27T14:05:00Z`.
pub(super) fn iso(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (y, m, d) = civil_from_days(i64::try_from(secs / DAY).unwrap_or(0));
    let rem = secs % DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `3 hours ago`, `in 29 days`, `just now`.
pub(super) fn relative(t: UnixTime, now: UnixTime) -> String {
    let (secs, future) = if t > now {
        (t.secs_since(now), true)
    } else {
        (now.secs_since(t), false)
    };
    // Rounded to the nearest unit: a key created a few seconds ago for 30 days expires "in 30
    // days", not 29.
    let amount = match secs {
        0..=59 => {
            return if future {
                "in under a minute".into()
            } else {
                "just now".into()
            }
        }
        60..=3569 => plural((secs + 30) / 60, "minute"),
        3570..=84_599 => plural((secs + 1800) / 3600, "hour"),
        _ => plural((secs + DAY / 2) / DAY, "day"),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

pub(super) fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}
