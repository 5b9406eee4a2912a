//! Top-level keys for running as a service: `control_socket_group`,
//! `dataplane_threads`, `dataplane_busy_poll`.

use toml::Spanned;

use super::ConfigError;
use super::Ctx;

/// `control_socket_group = "routevpn"`: members of this group may use the control
/// socket (`routevpn status` without root); the socket gets mode 0660 instead of 0600.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGroup {
    pub name: String,
    pub gid: u32,
}

/// Resolves the group (a name, or a numeric id) against this host's group database.
pub(super) fn control_socket_group(
    cx: &Ctx<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<Option<SocketGroup>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let name = raw.get_ref().trim();
    let err = |m: String| cx.err(Some(raw.span()), m);
    if name.is_empty() {
        return Err(err(
            "control_socket_group is empty: name a group, e.g. \"routevpn\"".into(),
        ));
    }
    let gid = match name.parse::<u32>() {
        Ok(gid) => gid,
        Err(_) => match crate::sys::group_id(name) {
            Ok(Some(gid)) => gid,
            Ok(None) => {
                return Err(err(format!(
                    "control_socket_group: no group named \"{name}\" on this host (create it with `groupadd --system {name}`)"
                )))
            }
            Err(e) => {
                return Err(err(format!(
                    "control_socket_group: cannot look up group \"{name}\": {e}"
                )))
            }
        },
    };
    Ok(Some(SocketGroup {
        name: name.to_string(),
        gid,
    }))
}

/// Most dataplane workers a configuration may ask for.
pub const MAX_DATAPLANE_THREADS: i64 = 256;

/// `dataplane_threads = N`: the dataplane's worker pool (1 to 256).
pub(super) fn dataplane_threads(
    cx: &Ctx<'_>,
    raw: Option<&Spanned<i64>>,
) -> Result<Option<usize>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let n = *raw.get_ref();
    if !(1..=MAX_DATAPLANE_THREADS).contains(&n) {
        return Err(cx.err(
            Some(raw.span()),
            format!("dataplane_threads = {n}: expected 1 to {MAX_DATAPLANE_THREADS} (leave it out for one per core)"),
        ));
    }
    Ok(usize::try_from(n).ok())
}

/// Longest `dataplane_busy_poll`: beyond it the CPU spent outweighs a wake-up.
pub const MAX_BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// `dataplane_busy_poll = "50us"`: 0 to 1 ms.
pub(super) fn dataplane_busy_poll(
    cx: &Ctx<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<Option<std::time::Duration>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let err = |m: String| cx.err(Some(raw.span()), format!("dataplane_busy_poll: {m}"));
    let d = super::parse_duration(raw.get_ref()).map_err(err)?;
    if d > MAX_BUSY_POLL {
        return Err(err(format!(
            "{} is too long: at most 1ms (\"0\" turns it off)",
            raw.get_ref()
        )));
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn dataplane_threads_range() {
        assert_eq!(parse("", "t.toml").unwrap().dataplane_threads, None);
        let c = parse("dataplane_threads = 3\n", "t.toml").unwrap();
        assert_eq!(c.dataplane_threads, Some(3));
        for bad in ["0", "-1", "257"] {
            let e = parse(
                &format!("routing = \"embedded\"\ndataplane_threads = {bad}\n"),
                "t.toml",
            )
            .unwrap_err();
            assert_eq!((e.line, e.column), (Some(2), Some(21)), "{e}");
            assert!(e.message.contains("expected 1 to 256"), "{e}");
        }
        let e = parse("dataplane_threads = \"two\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn dataplane_busy_poll_range() {
        use std::time::Duration;
        assert_eq!(parse("", "t.toml").unwrap().dataplane_busy_poll, None);
        for (text, want) in [("0", 0), ("50us", 50), ("1ms", 1000)] {
            let c = parse(&format!("dataplane_busy_poll = \"{text}\"\n"), "t.toml").unwrap();
            assert_eq!(c.dataplane_busy_poll, Some(Duration::from_micros(want)));
        }
        let e = parse(
            "routing = \"embedded\"\ndataplane_busy_poll = \"2ms\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(23)), "{e}");
        assert!(e.message.contains("at most 1ms"), "{e}");
        let e = parse("dataplane_busy_poll = \"fast\"\n", "t.toml").unwrap_err();
        assert!(
            e.message
                .starts_with("dataplane_busy_poll: invalid duration"),
            "{e}"
        );
    }

    #[test]
    fn per_resource_sas_is_off_unless_asked_for() {
        assert!(!parse("", "t.toml").unwrap().per_resource_sas);
        assert!(
            parse("per_resource_sas = true\n", "t.toml")
                .unwrap()
                .per_resource_sas
        );
        let e = parse(
            "routing = \"embedded\"\nper_resource_sas = \"yes\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("per_resource_sas"), "{e}");
    }

    #[test]
    fn group_by_name_and_number() {
        let c = parse("control_socket_group = \"root\"\n", "t.toml").unwrap();
        let g = c.control_socket_group.unwrap();
        assert_eq!((g.name.as_str(), g.gid), ("root", 0));
        let c = parse("control_socket_group = \"4242\"\n", "t.toml").unwrap();
        assert_eq!(c.control_socket_group.unwrap().gid, 4242);
        let c = parse("", "t.toml").unwrap();
        assert_eq!(c.control_socket_group, None);
    }

    #[test]
    fn unknown_group_is_an_error_naming_the_line() {
        let text = "routing = \"embedded\"\ncontrol_socket_group = \"nosuchgroup-rv\"\n";
        let e = parse(text, "t.toml").unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(24)), "{e}");
        assert!(
            e.message.contains("no group named \"nosuchgroup-rv\""),
            "{e}"
        );
        let e = parse("control_socket_group = \"\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("empty"), "{e}");
        // A misspelt key gets the usual suggestion.
        let e = parse("control_socket_grup = \"root\"\n", "t.toml").unwrap_err();
        assert!(e.message.contains("control_socket_group"), "{e}");
    }
}
