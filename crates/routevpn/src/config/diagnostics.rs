//! What `routevpn check` tells a user beyond "parsed": plain-words schema errors with
//! the nearest valid key, the offending line with a caret, and the checks across
//! tables (overlapping tunnel subnets, BGP neighbors outside every tunnel, addresses
//! this host does not have).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use toml::Spanned;

use super::routing::{inside_a_tunnel, RawBgp};
use super::tunnel::RawTunnel;
use super::{BgpConfig, ConfigError, Ctx, TunnelConfig};

impl ConfigError {
    /// `file:line:col: SEVERITY: message`, then the line with a caret under the column
    /// (when the error can be placed in `text`).
    pub fn render(&self, text: &str, severity: &str) -> String {
        let place = match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file),
            (Some(l), None) => format!("{}:{l}", self.file),
            _ => self.file.clone(),
        };
        let mut out = format!("{place}: {severity}: {}\n", self.message);
        let (Some(line_no), Some(col)) = (self.line, self.column) else {
            return out;
        };
        let Some(line) = text.lines().nth(line_no - 1) else {
            return out;
        };
        let gutter = line_no.to_string().len();
        let pad = " ".repeat(gutter);
        let before: String = line.chars().take(col - 1).collect();
        // Tabs keep their width under the caret.
        let indent: String = before
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = token_width(&line.chars().skip(col - 1).collect::<String>());
        out.push_str(&format!(
            "{pad} |\n{line_no} | {line}\n{pad} | {indent}{}\n",
            "^".repeat(width)
        ));
        out
    }
}

/// Characters of the value or key starting a line remainder: a quoted string, or up to
/// the next separator.
fn token_width(rest: &str) -> usize {
    let mut chars = rest.chars();
    match chars.next() {
        None => 1,
        Some(q @ ('"' | '\'')) => {
            let mut n = 1;
            let mut escaped = false;
            for c in chars {
                n += 1;
                if c == q && !escaped {
                    return n;
                }
                escaped = c == '\\' && !escaped;
            }
            n
        }
        Some(_) => rest
            .chars()
            .take_while(|c| !matches!(c, ' ' | '\t' | ',' | ']' | '}' | '=' | '#'))
            .count()
            .max(1),
    }
}

/// Rewrites serde/toml's schema messages for a user: "unknown key `multipler`, did you
/// mean `multiplier`?", "dpd: expected a duration like "30s" or false, found ...",
/// never a Rust type name.
pub(super) fn plain_toml_message(msg: &str, text: &str, span: Option<Range<usize>>) -> String {
    let msg = msg.trim();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = backticked(expected);
        return match nearest(key, &valid) {
            Some(best) => format!("unknown key `{key}`, did you mean `{best}`?"),
            None if valid.is_empty() => format!("unknown key `{key}`: this table takes no keys"),
            None => format!("unknown key `{key}`; valid keys: {}", valid.join(", ")),
        };
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return format!("missing key `{key}`");
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        let Some(rest) = msg.strip_prefix(prefix) else {
            continue;
        };
        let Some((found, expected)) = rest.rsplit_once(", expected ") else {
            continue;
        };
        let key = span
            .as_ref()
            .and_then(|s| key_before(text, s.start))
            .map(|k| format!("{k}: "))
            .unwrap_or_default();
        return format!(
            "{key}expected {}, found {}",
            plain_expected(expected),
            found.replace('`', "")
        );
    }
    msg.to_string()
}

/// serde's names for primitive types, in words.
fn plain_expected(e: &str) -> String {
    match e {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list [...]".into(),
        "a map" | "struct" => "a table { ... }".into(),
        other if other.starts_with("struct ") || other.starts_with("enum ") => {
            "a table { ... }".into()
        }
        other => other.to_string(),
    }
}

/// The names in backticks of "expected one of `a`, `b`" / "expected `a` or `b`".
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// The key whose value starts at `offset`: the last `key =` before it.
fn key_before(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let mut end = before.len();
    while let Some(eq) = before[..end].rfind('=') {
        let head = before[..eq].trim_end();
        let key: String = head
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !key.is_empty() {
            return Some(key);
        }
        end = eq;
    }
    None
}

/// The valid key closest to `word` by edit distance, if close enough to be a typo.
pub(super) fn nearest<'a>(word: &str, valid: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    valid
        .iter()
        .map(|v| (levenshtein(word, v), *v))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Two tunnels whose interface subnets overlap would route the same addresses into
/// two interfaces: an error on the later tunnel's `address`. A host address (/32, /128)
/// installs no subnet route, so it clashes only with the very same address.
pub(super) fn check_overlap(
    cx: &Ctx,
    raw: &[Spanned<RawTunnel>],
    earlier: &[TunnelConfig],
    new: &TunnelConfig,
) -> Result<(), ConfigError> {
    for old in earlier {
        for a in &new.addresses {
            for b in &old.addresses {
                let (na, nb) = (a.trunc(), b.trunc());
                let host = |n: &ipnet::IpNet| n.prefix_len() == n.max_prefix_len();
                let clash = if host(a) || host(b) {
                    a.addr() == b.addr()
                } else {
                    na.contains(&nb.network()) || nb.contains(&na.network())
                };
                if clash {
                    let span = raw
                        .get(earlier.len())
                        .and_then(|t| t.get_ref().address.as_ref())
                        .map(|l| l.span());
                    return Err(cx.err(
                        span,
                        format!(
                            "tunnel \"{}\": address {a} overlaps address {b} of tunnel \"{}\"",
                            new.name, old.name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A BGP neighbor is reached through a tunnel: one outside every tunnel's subnet is
/// most likely a typo (or a session that would follow the underlay).
pub(super) fn check_neighbors(cx: &Ctx, bgp: &BgpConfig, raw: &RawBgp, tunnels: &[TunnelConfig]) {
    for (n, r) in bgp.neighbors.iter().zip(&raw.neighbor) {
        if !inside_a_tunnel(tunnels, n.address) {
            cx.warn(
                Some(r.get_ref().address.span()),
                format!(
                    "[[bgp.neighbor]] {}: not inside any tunnel's address subnet",
                    n.address
                ),
            );
        }
        // The hint takes about two intervals; BFD alone takes `multiplier`.
        if let Some(b) = n.bfd.as_ref().filter(|b| b.esp_hint && b.multiplier <= 2) {
            cx.warn(
                r.get_ref().bfd.as_ref().map(|s| s.span()),
                format!(
                    "[[bgp.neighbor]] {}: bfd esp_hint with multiplier {} detects no sooner than BFD alone (about 2 intervals)",
                    n.address, b.multiplier
                ),
            );
        }
    }
}

/// Whether an interface of this host holds `ip` (binding a UDP socket to it succeeds).
pub fn host_has_address(ip: IpAddr) -> bool {
    match std::net::UdpSocket::bind(SocketAddr::new(ip, 0)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::AddrNotAvailable,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load_checked, parse, parse_checked};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const TUN: &str = "[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\n\
                       psk = \"correct-horse-battery-staple\"\naddress = [\"169.254.12.1/30\"]\n";
    const BGP: &str =
        "\n[bgp]\nasn = 65001\nrouter_id = \"10.1.0.1\"\n[[bgp.neighbor]]\nasn = 65002\n";

    fn err(text: &str) -> ConfigError {
        parse(text, "c.toml").unwrap_err()
    }

    fn warnings(text: &str) -> Vec<String> {
        parse_checked(text, "c.toml")
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn unknown_keys_in_every_table_suggest_the_nearest() {
        let bfd = format!("{TUN}{BGP}address = \"169.254.12.2\"\nbfd = {{ multipler = 3 }}\n");
        let e = err(&bfd);
        assert_eq!(
            e.to_string(),
            "c.toml:14:9: unknown key `multipler`, did you mean `multiplier`?"
        );
        let cases = [
            (
                format!("contrl_socket = \"/x\"\n{TUN}"),
                "`contrl_socket`, did you mean `control_socket`?",
                1,
            ),
            (
                format!("{TUN}remote_idd = \"x\"\n"),
                "`remote_idd`, did you mean `remote_id`?",
                7,
            ),
            (
                format!("{TUN}routes = [{{ prefix = \"10.0.0.0/8\", metrc = 1 }}]\n"),
                "`metrc`, did you mean `metric`?",
                7,
            ),
            (
                format!("{TUN}{BGP}address = \"169.254.12.2\"\npasive = true\n"),
                "`pasive`, did you mean `passive`?",
                14,
            ),
            (
                format!("{TUN}{BGP}adress = \"169.254.12.2\"\n"),
                "`adress`, did you mean `address`?",
                13,
            ),
            (
                format!("{TUN}{BGP}address = \"169.254.12.2\"\n[bgp.x]\n"),
                "unknown key `x`",
                14,
            ),
        ];
        for (text, needle, line) in &cases {
            let e = err(text);
            assert!(e.message.contains(needle), "{e}");
            assert_eq!(e.line, Some(*line), "{e}");
            assert!(e.column.is_some(), "{e}");
        }
        // Far from every key: the list instead of a guess.
        let e = err(&format!("{TUN}colour = 1\n"));
        assert!(e.message.contains("valid keys: name, local,"), "{e}");
    }

    #[test]
    fn type_errors_are_plain_words() {
        let cases = [
            (
                "dpd = 30",
                "dpd: expected a duration like \"30s\" or false, found integer 30",
            ),
            (
                "local_port = 70000",
                "local_port: expected a whole number from 0 to 65535, found integer 70000",
            ),
            (
                "start = \"yes\"",
                "start: expected true or false, found string \"yes\"",
            ),
            (
                "mtu = \"1400\"",
                "mtu: expected a whole number from 0 to 65535",
            ),
            (
                "child_lifetime_bytes = -1",
                "child_lifetime_bytes: expected a whole number (0 or more)",
            ),
        ];
        for (line, needle) in cases {
            let e = err(&format!("{TUN}{line}\n"));
            assert!(e.message.contains(needle), "{line}: {e}");
            assert_eq!((e.line, e.column.is_some()), (Some(7), true), "{e}");
            for rust in ["u16", "u64", "DpdSetting", "untagged", "boolean"] {
                assert!(!e.message.contains(rust), "{line}: {e}");
            }
        }
        let e = err(&format!("{TUN}{BGP}address = \"169.254.12.2\"\nbfd = 7\n"));
        assert!(
            e.message.contains("bfd: expected true, false or a table"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_tunnel_subnets() {
        let second = TUN
            .replace("t0", "t1")
            .replace("192.0.2.2", "192.0.2.3")
            .replace("169.254.12.1/30", "169.254.12.2/24");
        let e = err(&format!("{TUN}{second}"));
        assert_eq!(e.line, Some(12), "{e}");
        assert!(
            e.message.contains(
                "address 169.254.12.2/24 overlaps address 169.254.12.1/30 of tunnel \"t0\""
            ),
            "{e}"
        );
        let apart = second.replace("169.254.12.2/24", "169.254.12.5/30");
        assert!(parse(&format!("{TUN}{apart}"), "c.toml").is_ok());
        // A host address inside another tunnel's subnet adds no subnet route: allowed;
        // the very same address twice is not.
        let host = second.replace("169.254.12.2/24", "169.254.12.2/32");
        assert!(parse(&format!("{TUN}{host}"), "c.toml").is_ok());
        let same = second.replace("169.254.12.2/24", "169.254.12.1/32");
        let e = err(&format!("{TUN}{same}"));
        assert!(
            e.message.contains("overlaps address 169.254.12.1/30"),
            "{e}"
        );
    }

    #[test]
    fn remote_port_other_than_500_is_refused() {
        let e = err(&format!("{TUN}remote_port = 4500\n"));
        assert_eq!((e.line, e.column), (Some(7), Some(15)), "{e}");
        assert!(
            e.message.contains("remote_port = 4500 is not supported"),
            "{e}"
        );
        assert!(parse(&format!("{TUN}remote_port = 500\n"), "c.toml").is_ok());
    }

    #[test]
    fn strongswan_default_proposal_keyword() {
        let c = parse(
            &format!("{TUN}ike = [\"default\"]\nesp = \"aes128gcm16, default\"\n"),
            "c",
        )
        .unwrap();
        let t = &c.tunnels[0];
        assert_eq!(t.ike, ike::proposal::default_ike());
        assert_eq!(t.esp.len(), 1 + ike::proposal::default_esp().len());
    }

    #[test]
    fn short_psk_and_outside_neighbor_warn() {
        assert!(warnings(TUN).is_empty());
        let w = warnings(&TUN.replace("correct-horse-battery-staple", "short"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("c.toml:5:7: tunnel \"t0\": the pre-shared key is 5 bytes long"),
            "{w:?}"
        );
        let inside = format!("{TUN}{BGP}address = \"169.254.12.2\"\n");
        assert!(warnings(&inside).is_empty());
        let w = warnings(&inside.replace("169.254.12.2\"", "10.9.9.9\""));
        assert_eq!(
            w,
            ["c.toml:13:11: [[bgp.neighbor]] 10.9.9.9: not inside any tunnel's address subnet"]
        );
        // esp_hint only pays with a multiplier above 2.
        let hinted = |m: u8| {
            warnings(&format!(
                "{inside}bfd = {{ interval = \"50ms\", multiplier = {m}, esp_hint = true }}\n"
            ))
        };
        assert!(hinted(3).is_empty());
        let w = hinted(2);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "c.toml:14:7: [[bgp.neighbor]] 169.254.12.2: bfd esp_hint with multiplier 2"
            ),
            "{w:?}"
        );
    }

    #[test]
    fn readable_files_and_foreign_local_address_warn() {
        let dir = std::env::temp_dir().join(format!("routevpn-diag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("peer.psk");
        std::fs::write(&key, "correct-horse-battery-staple\n").unwrap();
        let cfg = dir.join("r.toml");
        let text = TUN
            .replace(
                "psk = \"correct-horse-battery-staple\"",
                "psk_file = \"peer.psk\"",
            )
            .replace("192.0.2.1", "127.0.0.1")
            .replace("192.0.2.2", "127.0.0.2");
        std::fs::write(&cfg, &text).unwrap();
        let chmod = |p: &std::path::Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        chmod(&cfg, 0o600);
        chmod(&key, 0o600);
        assert!(load_checked(&cfg).unwrap().0.warnings.is_empty());
        chmod(&cfg, 0o644);
        chmod(&key, 0o640);
        let w: Vec<String> = load_checked(&cfg)
            .unwrap()
            .0
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains(
                "r.toml: the configuration file is accessible by group or others (mode 0644)"
            ),
            "{w:?}"
        );
        assert!(w[1].contains("r.toml:5:12: tunnel \"t0\": psk_file peer.psk is accessible by group or others (mode 0640)"), "{w:?}");
        // An address no interface of this host has (TEST-NET-1 outside any namespace).
        chmod(&cfg, 0o600);
        chmod(&key, 0o600);
        std::fs::write(
            &cfg,
            text.replace("127.0.0.1", "192.0.2.1")
                .replace("127.0.0.2", "192.0.2.2"),
        )
        .unwrap();
        if !host_has_address("192.0.2.1".parse().unwrap()) {
            let w = load_checked(&cfg).unwrap().0.warnings;
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].to_string().contains("r.toml:3:9: tunnel \"t0\": local address 192.0.2.1 is not on any interface of this host"), "{w:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nearest_key() {
        let valid = ["interval", "multiplier"];
        assert_eq!(nearest("multipler", &valid), Some("multiplier"));
        assert_eq!(nearest("intervall", &valid), Some("interval"));
        assert_eq!(nearest("colour", &valid), None);
    }

    #[test]
    fn render_places_a_caret() {
        let e = ConfigError {
            file: "c.toml".into(),
            line: Some(2),
            column: Some(10),
            message: "bad".into(),
        };
        let text = "a = 1\nremote = \"x.y\" # c\n";
        assert_eq!(
            e.render(text, "error"),
            "c.toml:2:10: error: bad\n  |\n2 | remote = \"x.y\" # c\n  |          ^^^^^\n"
        );
        assert_eq!(key_before(text, 15), Some("remote".into()));
    }

    #[test]
    fn plain_messages() {
        let m = plain_toml_message(
            "invalid value: integer `70000`, expected u16",
            "local_port = 70000",
            Some(13..18),
        );
        assert_eq!(
            m,
            "local_port: expected a whole number from 0 to 65535, found integer 70000"
        );
    }
}
