//! Reading a daemon's status defensively, as JSON: the lab must keep compiling and
//! reporting sensibly while the status report grows (e.g. the `bgp` section).

use std::path::Path;

use anyhow::bail;
use serde_json::Value;

use crate::control::{Request, Response};

/// One status request to a daemon, as JSON.
pub fn fetch(rt: &tokio::runtime::Runtime, socket: &Path) -> anyhow::Result<Value> {
    match rt.block_on(crate::control::request(socket, &Request::Status))? {
        Response::Status(r) => Ok(serde_json::to_value(r)?),
        Response::Error { message } => bail!("{message}"),
        Response::Ok { message } => bail!("unexpected answer: {message}"),
    }
}

/// What the lab needs from one daemon's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tunnel names whose state is `up`.
    pub tunnels_up: Vec<String>,
    /// `name=state` for every tunnel (for progress lines).
    pub tunnels: Vec<String>,
    /// None: the report has no `bgp` field (this daemon has no BGP speaker).
    pub bgp: Option<Vec<Neighbor>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub address: String,
    pub state: String,
    /// BFD session state, when reported.
    pub bfd: Option<String>,
    /// Times the ESP-silence hint took the BFD session down.
    pub esp_hint_downs: u64,
}

impl Neighbor {
    pub fn established(&self) -> bool {
        self.state.eq_ignore_ascii_case("established")
    }
}

impl Summary {
    pub fn bgp_established(&self) -> usize {
        self.bgp
            .as_ref()
            .map_or(0, |n| n.iter().filter(|n| n.established()).count())
    }
}

fn str_field(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

/// Summarizes the JSON of a `StatusReport` (the `status` response without its tag).
pub fn summarize(v: &Value) -> Summary {
    let mut s = Summary::default();
    for t in v
        .get("tunnels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = str_field(t, &["name"]).unwrap_or_else(|| "?".into());
        let state = str_field(t, &["state"]).unwrap_or_else(|| "?".into());
        if state == "up" {
            s.tunnels_up.push(name.clone());
        }
        s.tunnels.push(format!("{name}={state}"));
    }
    s.bgp = match v.get("bgp") {
        None | Some(Value::Null) => None,
        Some(bgp) => {
            // `bgp: {neighbors: [...]}` or directly `bgp: [...]`.
            let list = bgp
                .get("neighbors")
                .or_else(|| bgp.get("peers"))
                .unwrap_or(bgp);
            Some(
                list.as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| Neighbor {
                        address: str_field(n, &["address", "neighbor", "peer", "remote"])
                            .unwrap_or_else(|| "?".into()),
                        state: str_field(n, &["state", "session_state", "bgp_state"])
                            .unwrap_or_else(|| "?".into()),
                        bfd: n.get("bfd").and_then(|b| match b {
                            Value::String(s) => Some(s.clone()),
                            Value::Null => None,
                            other => str_field(other, &["state", "status"]),
                        }),
                        esp_hint_downs: n
                            .get("bfd_esp_hint_downs")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                    })
                    .collect(),
            )
        }
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn without_bgp() {
        let s = summarize(&json!({
            "daemon_pid": 1, "uptime_secs": 2,
            "tunnels": [{"name": "ab", "state": "up"}, {"name": "ac", "state": "connecting"}]
        }));
        assert_eq!(s.tunnels_up, ["ab"]);
        assert_eq!(s.tunnels, ["ab=up", "ac=connecting"]);
        assert_eq!(s.bgp, None);
        assert_eq!(s.bgp_established(), 0);
        assert_eq!(summarize(&json!({"bgp": null})).bgp, None);
    }

    #[test]
    fn bgp_shapes() {
        let s = summarize(&json!({
            "tunnels": [],
            "bgp": {"asn": 65001, "neighbors": [
                {"address": "169.254.12.2", "state": "Established", "bfd": {"state": "up"}},
                {"address": "169.254.13.2", "state": "connect", "bfd": "down"},
                {"state": "established"}
            ]}
        }));
        let n = s.bgp.as_ref().unwrap();
        assert_eq!(n.len(), 3);
        assert_eq!(n[0].bfd.as_deref(), Some("up"));
        assert_eq!(n[1].bfd.as_deref(), Some("down"));
        assert_eq!(n[2].address, "?");
        assert_eq!(s.bgp_established(), 2);
        let s = summarize(&json!({"bgp": [{"peer": "x", "session_state": "ESTABLISHED"}]}));
        assert_eq!(s.bgp_established(), 1);
        assert_eq!(summarize(&json!({"bgp": {}})).bgp, Some(vec![]));
    }
}
