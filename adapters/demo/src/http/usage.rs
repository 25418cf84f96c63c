//! What each key did in the last hour, minute by minute, for the dashboard's chart: a bounded
//! in-memory record fed by the auth layer's decisions, holding counts and key ids only.

use std::collections::HashMap;
use std::fmt::Write as _;

use parking_lot::Mutex;
use sitequest_auth::{DenialReason, KeyId, UnixTime};
use sitequest_auth_tower::Outcome;

/// Minutes kept per key.
pub const MINUTES: usize = 60;
/// Most keys with a record; past it, keys idle for an hour are dropped, and while none is, a new
/// key is not recorded.
pub const MAX_KEYS: usize = 10_000;

/// How a request of a key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Granted.
    Granted,
    /// 403: the key lacked a scope.
    Forbidden,
    /// 429: the key's window was used up.
    Limited,
}

/// One minute of one key: (minute since the epoch, [granted, 403, 429]).
type Slot = (u64, [u32; 3]);

/// The per-key, per-minute counts of the last hour.
#[derive(Debug, Default)]
pub struct Usage {
    keys: Mutex<HashMap<KeyId, [Slot; MINUTES]>>,
}

impl Usage {
    /// Counts a decision of the auth layer, if it was about a known key.
    pub fn record_outcome(&self, outcome: &Outcome<'_>, now: UnixTime) {
        let (key, kind) = match outcome {
            Outcome::Granted(g) => (g.key_id, Kind::Granted),
            Outcome::Denied(d) => match d.reason() {
                DenialReason::InsufficientScope { key_id, .. } => (key_id, Kind::Forbidden),
                DenialReason::RateLimited(key_id) => (key_id, Kind::Limited),
                _ => return,
            },
            _ => return,
        };
        self.record(key, kind, now);
    }

    /// Counts one request of `key` at `now`.
    pub fn record(&self, key: KeyId, kind: Kind, now: UnixTime) {
        let minute = now.as_secs() / 60;
        let mut keys = self.keys.lock();
        if !keys.contains_key(&key) && keys.len() >= MAX_KEYS {
            keys.retain(|_, slots| slots.iter().any(|s| s.0 + MINUTES as u64 > minute));
            if keys.len() >= MAX_KEYS {
                return;
            }
        }
        let slots = keys.entry(key).or_insert([(0, [0; 3]); MINUTES]);
        let slot = &mut slots[(minute % MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, [0; 3]);
        }
        let i = match kind {
            Kind::Granted => 0,
            Kind::Forbidden => 1,
            Kind::Limited => 2,
        };
        slot.1[i] = slot.1[i].saturating_add(1);
    }

    /// The last hour of `key` at `now`, oldest minute first: `MINUTES` entries of
    /// `[granted, 403, 429]`.
    #[must_use]
    pub fn last_hour(&self, key: KeyId, now: UnixTime) -> Vec<[u32; 3]> {
        let minute = now.as_secs() / 60;
        let keys = self.keys.lock();
        let slots = keys.get(&key);
        (0..MINUTES as u64)
            .map(|back| minute + 1 + back - MINUTES as u64)
            .map(|m| {
                slots
                    .map(|s| s[(m % MINUTES as u64) as usize])
                    .filter(|s| s.0 == m)
                    .map_or([0; 3], |s| s.1)
            })
            .collect()
    }
}

/// The chart of `minutes` (oldest first) as an SVG image: one bar a minute, stacked granted,
/// 403 and 429, each bar titled with its counts, and a description with the hour's totals.
#[must_use]
pub fn chart(minutes: &[[u32; 3]], name: &str) -> String {
    const W: u64 = 600;
    const H: u64 = 160;
    const TOP: u64 = 16;
    const BOTTOM: u64 = 20;
    let peak = peak(minutes);
    let mut svg = open_svg(minutes, name, W, H);
    let bar = W / minutes.len().max(1) as u64;
    draw_bars(
        &mut svg,
        minutes,
        0,
        bar,
        H - BOTTOM,
        H - TOP - BOTTOM,
        peak,
    );
    let _ = write!(
        svg,
        r##"<line x1="0" y1="{b}" x2="{W}" y2="{b}" stroke="#888"/><text x="0" y="{t}" font-size="11" font-family="sans-serif" fill="#444">60 min ago</text><text x="{W}" y="{t}" font-size="11" font-family="sans-serif" fill="#444" text-anchor="end">now</text><text x="0" y="11" font-size="11" font-family="sans-serif" fill="#444">peak {peak}/min</text></svg>"##,
        b = H - BOTTOM,
        t = H - 5,
    );
    svg
}

/// The detailed chart of `minutes` (oldest first), for a page of its own: 720×300 drawn at that
/// size, a y axis with the counts (0, half the peak, the peak), an x axis every 15 minutes, and
/// the same bars, titles and totals as [`chart`].
#[must_use]
pub fn detail_chart(minutes: &[[u32; 3]], name: &str) -> String {
    const W: u64 = 720;
    const H: u64 = 300;
    const LEFT: u64 = 48;
    const RIGHT: u64 = 12;
    const TOP: u64 = 16;
    const BOTTOM: u64 = 36;
    let peak = peak(minutes);
    let plot_h = H - TOP - BOTTOM;
    let n = minutes.len().max(1) as u64;
    let bar = (W - LEFT - RIGHT) / n;
    let base = H - BOTTOM;
    let mut svg = open_svg(minutes, name, W, H);
    let text = r##"font-size="13" font-family="sans-serif" fill="#333""##;
    // The y axis: 0, half the peak and the peak, with grid lines.
    for value in [0, peak / 2, peak] {
        let y = base - value * plot_h / peak;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y}" x2="{x2}" y2="{y}" stroke="#e5e7eb"/><text x="{tx}" y="{ty}" {text} text-anchor="end">{value}</text>"##,
            x2 = W - RIGHT,
            tx = LEFT - 6,
            ty = y + 4,
        );
    }
    let _ = write!(
        svg,
        r##"<text x="14" y="{y}" {text} transform="rotate(-90 14 {y})" text-anchor="middle">requests / min</text>"##,
        y = TOP + plot_h / 2,
    );
    draw_bars(&mut svg, minutes, LEFT, bar, base, plot_h, peak);
    // The x axis: minutes ago, every 15.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{base}" x2="{x2}" y2="{base}" stroke="#555"/>"##,
        x2 = W - RIGHT
    );
    for ago in [60u64, 45, 30, 15, 0] {
        let x = LEFT + (n.saturating_sub(ago)).min(n) * bar;
        let label = if ago == 0 {
            "now".to_owned()
        } else {
            format!("{ago} min ago")
        };
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="{base}" x2="{x}" y2="{t}" stroke="#555"/><text x="{x}" y="{ty}" {text} text-anchor="middle">{label}</text>"##,
            t = base + 5,
            ty = base + 20,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The busiest minute's requests, at least 1.
fn peak(minutes: &[[u32; 3]]) -> u64 {
    minutes
        .iter()
        .map(|m| m.iter().map(|&c| u64::from(c)).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1)
}

/// The start of a chart `w`×`h`: its title, its description with the totals, a white ground.
fn open_svg(minutes: &[[u32; 3]], name: &str, w: u64, h: u64) -> String {
    let mut svg = String::with_capacity(24 * 1024);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Requests per minute of {name}"><title>Requests per minute of {name}, last hour</title><desc id="summary">{summary}</desc><rect width="{w}" height="{h}" fill="#ffffff"/>"##,
        name = xml(name),
        summary = summary(totals(minutes)),
    );
    svg
}

/// One bar a minute from `left`, `bar` wide, stacked up from `base` over `plot_h` for `peak`:
/// granted, 403 and 429, each minute titled with its counts.
fn draw_bars(
    svg: &mut String,
    minutes: &[[u32; 3]],
    left: u64,
    bar: u64,
    base: u64,
    plot_h: u64,
    peak: u64,
) {
    const COLORS: [&str; 3] = ["#2e7d32", "#f9a825", "#c62828"];
    const LABELS: [&str; 3] = ["granted", "403", "429"];
    for (i, m) in minutes.iter().enumerate() {
        let x = left + i as u64 * bar;
        let mut y = base;
        let ago = minutes.len() - 1 - i;
        let _ = write!(
            svg,
            r#"<g class="minute"><title>{ago} min ago: {} granted, {} 403, {} 429</title>"#,
            m[0], m[1], m[2]
        );
        for k in 0..3 {
            if m[k] == 0 {
                continue;
            }
            let h = (u64::from(m[k]) * plot_h).div_ceil(peak).max(1);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{x}" y="{y}" width="{}" height="{h}" fill="{}"/>"#,
                LABELS[k],
                bar.saturating_sub(1).max(1),
                COLORS[k]
            );
        }
        svg.push_str("</g>");
    }
}

/// The hour's totals: [granted, 403, 429].
#[must_use]
pub fn totals(minutes: &[[u32; 3]]) -> [u64; 3] {
    minutes.iter().fold([0u64; 3], |mut t, m| {
        for i in 0..3 {
            t[i] += u64::from(m[i]);
        }
        t
    })
}

fn summary(totals: [u64; 3]) -> String {
    format!(
        "Last hour: {} granted, {} refused for scope (403), {} rate limited (429)",
        totals[0], totals[1], totals[2]
    )
}

/// Text for XML content and attributes.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: UnixTime = UnixTime::from_secs(1_800_000_000);

    #[test]
    fn counts_by_minute_and_forgets_after_an_hour() {
        let u = Usage::default();
        let k = KeyId::from_u64(7);
        u.record(k, Kind::Granted, T);
        u.record(k, Kind::Granted, T.plus_secs(59));
        u.record(k, Kind::Limited, T.plus_secs(60));
        u.record(k, Kind::Forbidden, T.plus_secs(61));
        let h = u.last_hour(k, T.plus_secs(61));
        assert_eq!(h.len(), MINUTES);
        assert_eq!(h[MINUTES - 1], [0, 1, 1]);
        assert_eq!(h[MINUTES - 2], [2, 0, 0]);
        let later = u.last_hour(k, T.plus_secs(3600));
        assert_eq!(later[MINUTES - 1], [0, 0, 0]);
        assert_eq!(later[0], [0, 1, 1]);
        assert!(u
            .last_hour(k, T.plus_secs(3660))
            .iter()
            .all(|m| m == &[0; 3]));
    }

    #[test]
    fn the_chart_names_its_totals_and_escapes_the_name() {
        let mut minutes = vec![[0; 3]; MINUTES];
        minutes[59] = [3, 1, 2];
        let svg = chart(&minutes, "<ci & co>");
        assert!(
            svg.contains("Last hour: 3 granted, 1 refused for scope (403), 2 rate limited (429)")
        );
        assert!(svg.contains("&lt;ci &amp; co&gt;"));
        assert!(!svg.contains("<ci"));
        assert_eq!(svg.matches("class=\"granted\"").count(), 1);
        assert!(svg.contains("0 min ago: 3 granted, 1 403, 2 429"));
    }

    #[test]
    fn the_detail_chart_has_axes_and_totals() {
        let mut minutes = vec![[0; 3]; MINUTES];
        minutes[59] = [8, 1, 1];
        minutes[0] = [2, 0, 0];
        let svg = detail_chart(&minutes, "ci");
        assert!(svg.contains(r#"width="720" height="300""#));
        for label in [
            ">60 min ago<",
            ">30 min ago<",
            ">now<",
            ">requests / min<",
            ">10<",
            ">5<",
            ">0<",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(
            svg.contains("Last hour: 10 granted, 1 refused for scope (403), 1 rate limited (429)")
        );
        assert_eq!(svg.matches("class=\"granted\"").count(), 2);
    }
}
