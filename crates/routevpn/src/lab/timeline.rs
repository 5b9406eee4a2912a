//! Timestamped progress lines on stderr, and the named steps they announce and the report records.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use super::report::{Report, Step};

/// Timestamped progress lines on stderr.
pub(super) struct Timeline {
    pub(super) start: Instant,
}

impl Timeline {
    pub(super) fn ms(&self, t: Instant) -> u64 {
        ms(t.saturating_duration_since(self.start))
    }
    pub(super) fn now_ms(&self) -> u64 {
        self.ms(Instant::now())
    }
    pub(super) fn say(&self, msg: impl AsRef<str>) {
        let mut err = std::io::stderr().lock();
        for (i, line) in msg.as_ref().lines().enumerate() {
            let _ = if i == 0 {
                writeln!(err, "[{:>7} ms] {line}", self.now_ms())
            } else {
                writeln!(err, "             {line}")
            };
        }
    }
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `f` as a named step, recording it in the report.
pub(super) fn step<T>(
    tl: &Timeline,
    report: &mut Report,
    name: &str,
    f: impl FnOnce(&mut Report) -> anyhow::Result<(T, String)>,
) -> anyhow::Result<T> {
    let start = tl.now_ms();
    tl.say(format!("== {name}"));
    let r = f(report);
    let (ok, detail) = match &r {
        Ok((_, d)) => (true, d.clone()),
        Err(e) => (false, format!("{e:#}")),
    };
    if ok {
        tl.say(format!("   ok: {detail}"));
    }
    report.steps.push(Step {
        name: name.to_string(),
        start_ms: start,
        end_ms: tl.now_ms(),
        ok,
        detail,
    });
    r.map(|(v, _)| v)
}

pub(super) fn show_routes(tl: &Timeline, routes: &BTreeMap<String, Vec<String>>) {
    let mut s = String::from("site routes:");
    for (r, lines) in routes {
        let _ = write!(s, "\n  router {r}:");
        if lines.is_empty() {
            s.push_str(" (none)");
        }
        for l in lines {
            let _ = write!(s, "\n    {l}");
        }
    }
    tl.say(s);
}
