//! Log output of the daemon: human text (colours only on a terminal, honouring
//! NO_COLOR), one JSON object per line, or under systemd native journal entries with
//! their fields (text with `<N>` priorities if the journal socket is unreachable).

use std::io::IsTerminal as _;
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (`key=value` fields).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message, fields.
    Json,
}

/// How text lines are written, decided from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextStyle {
    /// A terminal: colours (unless NO_COLOR), timestamps.
    Terminal,
    /// A file or pipe: no colours, timestamps.
    Plain,
    /// systemd's journal: no timestamp (journald adds one), `<N>` syslog priority prefix
    /// (sd-daemon(3)) so `journalctl -p` filters by level.
    Journal,
}

static JSON_ACTIVE: AtomicBool = AtomicBool::new(false);

/// True once JSON logging is set up: fatal errors then go out as a JSON line too.
pub fn json_active() -> bool {
    JSON_ACTIVE.load(Ordering::Relaxed)
}

/// NO_COLOR (https://no-color.org): set and non-empty disables colours.
fn no_color(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// JOURNAL_STREAM is `device:inode` of the journal stream systemd connected; it only
/// counts when stderr still is that stream (systemd.exec(5)).
fn is_journal(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(js), Some((dev, ino))) = (journal_stream, stderr) else {
        return false;
    };
    let mut parts = js.split(':');
    let (Some(d), Some(i), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    let m = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((m.dev(), m.ino()))
}

/// The text style for this process's stderr and environment.
pub fn text_style() -> TextStyle {
    let js = std::env::var("JOURNAL_STREAM").ok();
    if is_journal(js.as_deref(), stderr_dev_ino()) {
        TextStyle::Journal
    } else if std::io::stderr().is_terminal() {
        TextStyle::Terminal
    } else {
        TextStyle::Plain
    }
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The text format without time, behind a `<N>` priority prefix.
struct JournalFormat(format::Format<format::Full, ()>);

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Sets up the global subscriber on stderr.
pub fn init(level: Option<&str>, format: LogFormat) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).with_context(|| format!("invalid --log-level {l:?}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Under systemd, native journal entries: `tunnel`, `peer`, `spi_in` ... become the
    // fields TUNNEL, PEER, SPI_IN (`journalctl TUNNEL=vti0`). Text with `<N>` priorities
    // on stderr when the journal socket cannot be reached.
    if format == LogFormat::Text && text_style() == TextStyle::Journal {
        if let Ok(journal) = tracing_journald::layer() {
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::util::SubscriberInitExt as _;
            let journal = journal
                .with_field_prefix(None)
                .with_syslog_identifier("routevpn".into());
            return tracing_subscriber::registry()
                .with(filter)
                .with(journal)
                .try_init()
                .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"));
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => {
            let r = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .try_init();
            JSON_ACTIVE.store(r.is_ok(), Ordering::Relaxed);
            r
        }
        LogFormat::Text => match text_style() {
            TextStyle::Journal => builder
                .with_ansi(false)
                .event_format(JournalFormat(
                    format::Format::default().without_time().with_ansi(false),
                ))
                .try_init(),
            TextStyle::Terminal => builder
                .with_ansi(!no_color(std::env::var_os("NO_COLOR").as_deref()))
                .try_init(),
            TextStyle::Plain => builder.with_ansi(false).try_init(),
        },
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_be_our_stderr() {
        assert!(is_journal(Some("8:1234"), Some((8, 1234))));
        assert!(
            !is_journal(Some("8:1234"), Some((8, 999))),
            "stderr redirected"
        );
        assert!(!is_journal(None, Some((8, 1234))));
        assert!(!is_journal(Some("garbage"), Some((8, 1234))));
        assert!(!is_journal(Some("8:1234:5"), Some((8, 1234))));
    }

    #[test]
    fn no_color_needs_a_value() {
        use std::ffi::OsStr;
        assert!(no_color(Some(OsStr::new("1"))));
        assert!(!no_color(Some(OsStr::new(""))));
        assert!(!no_color(None));
    }

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
    }
}
