//! What `routevpn check` tells a user beyond "parsed": plain-words schema errors with
//! the nearest valid key, the offending line with a caret, and the checks across
//! tables (overlapping tunnel subnets, BGP neighbors outside every tunnel, addresses
//! this host does not have).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use toml::Spanned;

use super::routing::RawBgp;
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
/// two interfaces: an error on the later tunnel's `address`.
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
                if na.contains(&nb.network()) || nb.contains(&na.network()) {
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
        let inside = tunnels
            .iter()
            .any(|t| t.addresses.iter().any(|net| net.contains(&n.address)));
        if !inside {
            cx.warn(
                Some(r.get_ref().address.span()),
                format!(
                    "[[bgp.neighbor]] {}: not inside any tunnel's address subnet",
                    n.address
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
    use super::*;

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
