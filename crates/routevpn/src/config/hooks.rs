//! `on_up`, `on_down`, `hook_timeout`: programs run when a tunnel comes up or goes down
//! (like wg-quick's PostUp/PostDown and strongSwan's updown script, but without a shell).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::values::parse_duration;
use super::{ConfigError, Ctx};

/// How long a hook may run before its process group is killed.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds of `hook_timeout`: a hook is not a service.
const HOOK_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

/// A tunnel's hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    /// Program and arguments run when the tunnel interface comes up.
    pub on_up: Option<Vec<String>>,
    /// Run when it goes down (for any reason, daemon shutdown included).
    pub on_down: Option<Vec<String>>,
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            on_up: None,
            on_down: None,
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

/// `on_up = ["/usr/local/bin/x", "arg"]`: a list, never a shell command line.
#[derive(Debug)]
pub(super) struct RawCommand(Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list like [\"/usr/local/bin/script\", \"arg\"] (program and arguments, no shell)",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCommand, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    v.push(s);
                }
                Ok(RawCommand(v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The raw keys, as [`super::tunnel::RawTunnel`] holds them.
pub(super) struct RawHooks<'a> {
    pub(super) on_up: &'a Option<Spanned<RawCommand>>,
    pub(super) on_down: &'a Option<Spanned<RawCommand>>,
    pub(super) hook_timeout: &'a Option<Spanned<String>>,
}

/// Validates the hooks of tunnel `name`. The command's form is an error (it can never
/// work); the program's state on this host is a warning, because hooks are often
/// installed after the configuration and a broken hook does not break the tunnel.
pub(super) fn hooks(cx: &Ctx, name: &str, raw: RawHooks) -> Result<Hooks, ConfigError> {
    let err = |span, m: String| cx.err(Some(span), format!("tunnel \"{name}\": {m}"));
    let timeout = match raw.hook_timeout {
        None => DEFAULT_HOOK_TIMEOUT,
        Some(v) => {
            let (min, max) = HOOK_TIMEOUT_RANGE;
            match parse_duration(v.get_ref()) {
                Ok(d) if d >= min && d <= max => d,
                Ok(_) => return Err(err(v.span(), "hook_timeout must be 100ms to 1h".into())),
                Err(m) => return Err(err(v.span(), format!("hook_timeout: {m}"))),
            }
        }
    };
    let command = |key: &str, c: &Option<Spanned<RawCommand>>| -> Result<_, ConfigError> {
        let Some(c) = c else { return Ok(None) };
        let Some(program) = c.get_ref().0.first() else {
            return Err(err(
                c.span(),
                format!("{key} is empty: give the program to run, e.g. [\"/usr/local/bin/script\"], or remove the line"),
            ));
        };
        for a in &c.get_ref().0 {
            if a.get_ref().contains('\0') {
                return Err(err(
                    a.span(),
                    format!("{key}: NUL character in an argument"),
                ));
            }
        }
        let path = Path::new(program.get_ref());
        if !path.is_absolute() {
            let shell = if program.get_ref().contains(' ') {
                " (no shell is used: write the program and each argument as its own string)"
            } else {
                ""
            };
            return Err(err(
                program.span(),
                format!(
                    "{key}: the program must be an absolute path, not {:?}{shell}",
                    program.get_ref()
                ),
            ));
        }
        if let Some(problem) = program_problem(path) {
            cx.warn(
                Some(program.span()),
                format!("tunnel \"{name}\": {key}: {problem}"),
            );
        }
        Ok(Some(
            c.get_ref().0.iter().map(|s| s.get_ref().clone()).collect(),
        ))
    };
    Ok(Hooks {
        on_up: command("on_up", raw.on_up)?,
        on_down: command("on_down", raw.on_down)?,
        timeout,
    })
}

/// What is wrong with the program on this host, if anything.
fn program_problem(path: &Path) -> Option<String> {
    let p = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!(
                "{p} does not exist (yet): the hook will fail until it is installed"
            ))
        }
        Err(e) => return Some(format!("cannot inspect {p}: {e}")),
    };
    let mode = meta.permissions().mode();
    if !meta.is_file() {
        return Some(format!("{p} is not a regular file"));
    }
    if mode & 0o111 == 0 {
        return Some(format!("{p} is not executable: chmod +x it"));
    }
    // The hook runs with the daemon's privileges (CAP_NET_ADMIN or root).
    if mode & 0o022 != 0 {
        return Some(format!(
            "{p} is writable by group or others (mode {:04o}) and runs with the daemon's privileges: chmod go-w it",
            mode & 0o7777
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::{parse, parse_checked};
    use super::*;

    const MIN: &str = "[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\npsk = \"correct-horse-battery-staple\"\n";

    fn err(extra: &str) -> String {
        parse(&format!("{MIN}{extra}"), "c.toml")
            .unwrap_err()
            .to_string()
    }

    fn warnings(extra: &str) -> Vec<String> {
        let c = parse_checked(&format!("{MIN}{extra}"), "c.toml").unwrap();
        c.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn parsed_with_defaults() {
        let c = parse(MIN, "c.toml").unwrap();
        assert_eq!(c.tunnels[0].hooks, Hooks::default());
        let c = parse(
            &format!("{MIN}on_up = [\"/bin/sh\", \"-c\", \"x\"]\non_down = [\"/bin/true\"]\nhook_timeout = \"1m30s\"\n"),
            "c.toml",
        )
        .unwrap();
        let h = &c.tunnels[0].hooks;
        assert_eq!(h.on_up.as_deref().unwrap(), ["/bin/sh", "-c", "x"]);
        assert_eq!(h.on_down.as_deref().unwrap(), ["/bin/true"]);
        assert_eq!(h.timeout, Duration::from_secs(90));
        assert!(warnings("on_up = [\"/bin/true\"]\n").is_empty());
    }

    #[test]
    fn form_errors_name_the_line() {
        for (extra, expect) in [
            (
                "on_up = []\n",
                "c.toml:6:9: tunnel \"t0\": on_up is empty: give the program to run",
            ),
            (
                "on_down = [\"up.sh\"]\n",
                "c.toml:6:12: tunnel \"t0\": on_down: the program must be an absolute path, not \"up.sh\"",
            ),
            (
                "on_up = [\"ip link set dev t0 up\"]\n",
                "(no shell is used: write the program and each argument as its own string)",
            ),
            (
                "on_up = \"/usr/local/bin/x arg\"\n",
                "c.toml:6:9: on_up: expected a list like [\"/usr/local/bin/script\", \"arg\"] (program and arguments, no shell), found string",
            ),
            ("hook_timeout = \"ten\"\n", "c.toml:6:16: tunnel \"t0\": hook_timeout: invalid duration"),
            ("hook_timeout = \"2h\"\n", "hook_timeout must be 100ms to 1h"),
            ("on_upp = [\"/bin/true\"]\n", "unknown key `on_upp`, did you mean `on_up`?"),
        ] {
            let e = err(extra);
            assert!(e.contains(expect), "{extra}: {e}");
        }
    }

    #[test]
    fn program_state_is_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("routevpn-hookcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p.display().to_string()
        };
        let (plain, writable) = (file("plain", 0o644), file("writable", 0o777));
        for (program, expect) in [
            (
                "/nonexistent/hook".to_string(),
                "/nonexistent/hook does not exist (yet)".to_string(),
            ),
            (
                plain.clone(),
                format!("{plain} is not executable: chmod +x it"),
            ),
            (
                writable.clone(),
                format!("{writable} is writable by group or others (mode 0777)"),
            ),
            (
                dir.display().to_string(),
                "is not a regular file".to_string(),
            ),
        ] {
            let w = warnings(&format!("on_down = [\"{program}\"]\n"));
            assert_eq!(w.len(), 1, "{program}: {w:?}");
            assert!(
                w[0].starts_with("c.toml:6:12: tunnel \"t0\": on_down: "),
                "{w:?}"
            );
            assert!(w[0].contains(&expect), "{expect}: {w:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
