//! Control socket: a Unix stream socket; the client writes one JSON request line, the
//! daemon answers with one JSON response line and closes.
//!
//! ```text
//! --> {"cmd":"status"}
//! <-- {"result":"status","daemon_pid":42,"uptime_secs":7,"tunnels":[...]}
//! --> {"cmd":"up","name":"vti0"}
//! <-- {"result":"ok","message":"initiating vti0"}
//! ```

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// How long the client waits for the daemon, end to end.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server waits for a client to send its whole request line; the CLI
/// sends it at once, so this only bounds how long an idle client holds a slot.
pub const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server waits for a client to take its response.
pub const SERVER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; further ones are closed at once (the client retries).
pub const MAX_CONNECTIONS: usize = 32;
/// Upper bound on a request line; real requests are tiny.
pub const MAX_REQUEST_LEN: u64 = 64 * 1024;
/// Upper bound on a response line the client accepts.
pub const MAX_RESPONSE_LEN: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Initiate (or re-initiate) the named tunnel.
    Up {
        name: String,
    },
    /// Tear down the named tunnel's SAs.
    Down {
        name: String,
    },
    /// Re-read the configuration file (as SIGHUP).
    Reload,
}

/// The `schema` of `status --json`; bumped when a field changes meaning or goes away
/// (adding fields does not bump it). Fields are documented in docs/status.md.
pub const STATUS_SCHEMA: &str = "routevpn-status/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Always [`STATUS_SCHEMA`] from this daemon (empty from a daemon before it).
    #[serde(default)]
    pub schema: String,
    pub daemon_pid: u32,
    pub uptime_secs: u64,
    pub tunnels: Vec<TunnelStatus>,
    /// The embedded BGP speaker, when `[bgp]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<RoutingStatus>,
    /// Port-4500 drops no SA can be charged with.
    #[serde(default)]
    pub dataplane: DataplaneStatus,
}

/// Dataplane-wide counters (ESP drops that belong to no SA).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneStatus {
    /// ESP whose SPI matches no installed inbound SA (RFC 4303 §3.4.2).
    pub unknown_spi: u64,
    /// Port-4500 datagrams that are neither ESP, IKE nor a NAT-keepalive.
    pub invalid: u64,
    pub keepalives: u64,
    /// IKE messages received on port 4500.
    pub ike_on_4500: u64,
    /// Packets the kernel dropped at the port-4500 sockets: their receive buffers were
    /// full (the workers did not keep up). A GRO/GSO batch of datagrams counts once.
    #[serde(default)]
    pub socket_drops: u64,
}

/// The embedded BGP speaker and BFD (`routing` module).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingStatus {
    pub asn: u32,
    pub router_id: String,
    pub neighbors: Vec<NeighborStatus>,
    /// Routes routevpn installed in the kernel (protocol 251).
    pub routes: Vec<BgpRouteStatus>,
    /// Route installs and withdrawals the kernel refused since start (each logged,
    /// rate-limited).
    #[serde(default)]
    pub route_failures: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborStatus {
    pub address: String,
    pub asn: u32,
    /// RFC 4271 state (`Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm`,
    /// `Established`), or `Paused` while the tunnel under the neighbor is down.
    pub state: String,
    /// Seconds since the session became Established.
    pub uptime_secs: Option<u64>,
    /// Prefixes held from this neighbor (after the import policy: rejected ones are
    /// not kept).
    pub prefixes_received: u64,
    /// Of those, how many are the selected best route.
    pub prefixes_accepted: u64,
    /// Prefixes we announce to it.
    pub prefixes_sent: u64,
    /// Routes the import guard refused (they would take traffic for our own
    /// infrastructure, or had a third-party next hop) since the session started.
    #[serde(default)]
    pub prefixes_refused: u64,
    /// BFD state (`AdminDown`, `Down`, `Init`, `Up`), None when BFD is off.
    pub bfd: Option<String>,
    /// BFD authentication (`keyed-sha1`, `meticulous-keyed-sha1`), None when off; never
    /// the key.
    #[serde(default)]
    pub bfd_auth: Option<String>,
    /// BFD packets dropped because they arrived on another interface than the
    /// neighbour's tunnel.
    #[serde(default)]
    pub bfd_wrong_interface: u64,
    /// Times the BFD session left Up since the daemon started.
    #[serde(default)]
    pub bfd_flaps: u64,
    /// `bfd = { esp_hint = true }`: the tunnel's inbound ESP silence is a hint.
    #[serde(default)]
    pub bfd_esp_hint: bool,
    /// Of the flaps, the times the ESP-silence hint took the session down.
    #[serde(default)]
    pub bfd_esp_hint_downs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpRouteStatus {
    pub prefix: String,
    /// The best path's next hop and device.
    pub next_hop: String,
    pub device: String,
    /// Further equal-cost paths of a multipath route, as "next-hop dev device".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_via: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    pub name: String,
    pub local: String,
    pub remote: String,
    pub local_id: String,
    pub remote_id: String,
    /// "down" | "connecting" | "established" | ...
    pub state: String,
    pub last_error: Option<String>,
    pub ike_sas: Vec<IkeSaStatus>,
    pub child_sas: Vec<ChildSaStatus>,
    /// CHILD SA rekeys of this tunnel since the daemon (or a reload that redid it) started.
    #[serde(default)]
    pub child_rekeys: u64,
    /// IKE SA rekeys of this tunnel, counted the same way.
    #[serde(default)]
    pub ike_rekeys: u64,
    /// The peer's certificate as last validated (certificate authentication only).
    #[serde(default)]
    pub peer_cert: Option<PeerCertStatus>,
    /// Our own certificate expires within 30 days (or has expired).
    #[serde(default)]
    pub cert_warning: Option<String>,
    /// Milliseconds until the CHILD SAs this tunnel lacks are created (again): after the
    /// peer deleted one outside a rekey. None when nothing is due.
    #[serde(default)]
    pub child_sa_refill_in_ms: Option<u64>,
    /// Inner packets the dataplane or the kernel in front of it dropped, by where.
    #[serde(default)]
    pub dataplane: TunnelDataplaneStatus,
}

/// A tunnel's drops outside its SAs' counters: where a loaded tunnel loses packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelDataplaneStatus {
    /// Routed into the tunnel while its TUN queue was full (the kernel's `tx_dropped`).
    pub tun_queue_drops: u64,
    /// Read from the TUN while the tunnel had no outbound SA.
    pub no_sa_drops: u64,
    /// Could not be sealed (not IP, too large, sequence numbers exhausted).
    pub seal_errors: u64,
    /// Failed `sendmsg` calls (each may carry a batch of ESP packets).
    pub send_errors: u64,
    /// TUN reads that failed or whose offload header was refused.
    pub tun_read_errors: u64,
    /// Failed TUN writes of decrypted packets (each may carry a batch).
    pub tun_write_errors: u64,
}

/// A validated peer certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCertStatus {
    /// Distinguished names in strongSwan's syntax, e.g. `C=CH, O=Lab, CN=routerB`.
    pub subject: String,
    pub issuer: String,
    /// e.g. `2046-11-26 20:31:00 UTC`.
    pub not_after: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeSaStatus {
    pub state: String,
    pub initiator: bool,
    /// 16 hex digits.
    pub spi_i: String,
    pub spi_r: String,
    /// e.g. `AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519`.
    pub proposal: String,
    /// Peer address and port, e.g. `192.0.2.2:500`.
    pub peer: String,
    pub age_secs: u64,
    pub rekeys: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaStatus {
    pub state: String,
    /// 8 hex digits.
    pub spi_in: String,
    pub spi_out: String,
    pub proposal: String,
    pub esn: bool,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub age_secs: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Inbound packets dropped by the anti-replay check (RFC 4303 §3.4.3).
    #[serde(default)]
    pub replayed: u64,
    /// Inbound packets whose ICV did not verify.
    #[serde(default)]
    pub icv_failures: u64,
    /// Inbound packets with bad padding, next header or inner packet.
    #[serde(default)]
    pub malformed: u64,
    /// Packets outside the negotiated traffic selectors, dropped (RFC 4301 §5.2):
    /// authentic inbound ones, and outbound ones the SA was not negotiated for.
    #[serde(default)]
    pub ts_mismatch_in: u64,
    #[serde(default)]
    pub ts_mismatch_out: u64,
    /// 0: the fallback (or only) CHILD SA; 1..: a per-resource one (RFC 9611), sent
    /// from the dataplane worker `resource` places after the tunnel's own.
    #[serde(default)]
    pub resource: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(StatusReport),
    Ok { message: String },
    Error { message: String },
}

/// Client side: send `req` to the daemon at `socket` and wait (at most
/// [`CLIENT_TIMEOUT`]) for its response.
pub async fn request(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    request_with_timeout(socket, req, CLIENT_TIMEOUT).await
}

/// [`request`] with a caller-chosen timeout.
pub async fn request_with_timeout(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let unreachable = || format!("cannot reach routevpn daemon at {}", socket.display());
    tokio::time::timeout(timeout, exchange(socket, req))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {:?}", timeout))
        .with_context(unreachable)?
        .with_context(unreachable)
}

/// One request; a connection the daemon closes without a word (all its slots taken by
/// other clients, see [`MAX_CONNECTIONS`]) is retried until the caller's timeout.
async fn exchange(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    loop {
        // A daemon that is not there at all is reported at once.
        let stream = UnixStream::connect(socket).await?;
        match exchange_once(stream, req).await {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e),
        }
    }
}

/// `None` when the daemon closed the connection without answering.
async fn exchange_once(stream: UnixStream, req: &Request) -> anyhow::Result<Option<Response>> {
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    // A refused connection may already be closed: its write or read fails.
    if wr.write_all(line.as_bytes()).await.is_err() || wr.shutdown().await.is_err() {
        return Ok(None);
    }
    let mut buf = Vec::new();
    let read = BufReader::new(rd)
        .take(MAX_RESPONSE_LEN)
        .read_until(b'\n', &mut buf)
        .await;
    match read {
        Ok(_) if buf.is_empty() => return Ok(None),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && buf.is_empty() => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .context("invalid response from the daemon")
}

/// Server side: listen on `path`. Creates the parent directory if missing, replaces a
/// stale socket left by a dead daemon (but refuses if one is still answering) and
/// restricts the socket to its owner (mode 0600). Must run inside a tokio runtime.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    bind_with_group(path, None)
}

/// [`bind`]; with `group`, the socket belongs to that group with mode 0660, so its
/// members can run `routevpn status` (`control_socket_group`).
pub fn bind_with_group(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "{} is in use: another routevpn daemon is running",
                            path.display()
                        ),
                    ))
                }
                Err(_) => std::fs::remove_file(path)?,
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    let mode = match group {
        Some(gid) => {
            // Connecting to a Unix socket needs write permission on it (unix(7)).
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot give {} to group id {gid}: {e}", path.display()),
                )
            })?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Parses one request line as the server receives it (trailing newline included).
pub fn parse_request(line: &[u8]) -> Result<Request, serde_json::Error> {
    serde_json::from_slice(line)
}

/// Serve one connection: read a request line, answer with `handler`'s response. A
/// malformed request, or one longer than [`MAX_REQUEST_LEN`], gets an `Error`
/// response; a client that has not sent its line within [`SERVER_READ_TIMEOUT`], or
/// does not take the response within [`SERVER_WRITE_TIMEOUT`], is dropped.
pub async fn handle_connection<F, Fut>(stream: UnixStream, handler: F) -> io::Result<()>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let (rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    let mut reader = BufReader::new(rd).take(MAX_REQUEST_LEN);
    let read = reader.read_until(b'\n', &mut buf);
    tokio::time::timeout(SERVER_READ_TIMEOUT, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "control client sent nothing"))??;
    let response = if buf.len() as u64 >= MAX_REQUEST_LEN && buf.last() != Some(&b'\n') {
        Response::Error {
            message: format!("invalid request: longer than {MAX_REQUEST_LEN} bytes"),
        }
    } else {
        match parse_request(&buf) {
            Ok(req) => handler(req).await,
            Err(e) => Response::Error {
                message: format!("invalid request: {e}"),
            },
        }
    };
    drop(buf);
    let mut line = serde_json::to_string(&response).map_err(io::Error::other)?;
    line.push('\n');
    let write = async {
        wr.write_all(line.as_bytes()).await?;
        wr.shutdown().await
    };
    tokio::time::timeout(SERVER_WRITE_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "control client took no response"))?
}

/// Accept connections forever, each served on its own task by a clone of `handler`
/// (typically a closure holding a channel sender to the daemon's main loop), at most
/// [`MAX_CONNECTIONS`] at once: one slow client never blocks another.
pub async fn serve<F, Fut>(listener: UnixListener, handler: F)
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning or giving up.
                tracing::warn!("control socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                "control socket: {MAX_CONNECTIONS} connections busy, closing a new one"
            );
            continue; // dropping `stream` closes it
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_connection(stream, handler).await {
                tracing::debug!("control connection: {e}");
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A report with every kind of entry; the CLI's formatting tests use it too.
    pub(crate) fn sample() -> StatusReport {
        StatusReport {
            schema: STATUS_SCHEMA.into(),
            daemon_pid: 4242,
            uptime_secs: 3723,
            tunnels: vec![
                TunnelStatus {
                    name: "vti0".into(),
                    local: "192.0.2.1".into(),
                    remote: "192.0.2.2".into(),
                    local_id: "routerA".into(),
                    remote_id: "routerB".into(),
                    state: "established".into(),
                    last_error: None,
                    ike_sas: vec![IkeSaStatus {
                        state: "ESTABLISHED".into(),
                        initiator: true,
                        spi_i: "0123456789abcdef".into(),
                        spi_r: "fedcba9876543210".into(),
                        proposal: "AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519".into(),
                        peer: "192.0.2.2:500".into(),
                        age_secs: 65,
                        rekeys: 1,
                    }],
                    child_sas: vec![ChildSaStatus {
                        state: "INSTALLED".into(),
                        spi_in: "c0ffee01".into(),
                        spi_out: "c0ffee02".into(),
                        proposal: "AES_GCM_16_256/NO_EXT_SEQ".into(),
                        esn: false,
                        local_ts: vec!["0.0.0.0/0".into(), "::/0".into()],
                        remote_ts: vec!["0.0.0.0/0".into(), "::/0".into()],
                        age_secs: 5,
                        packets_in: 10,
                        packets_out: 12,
                        bytes_in: 1000,
                        bytes_out: 1200,
                        replayed: 1,
                        icv_failures: 2,
                        malformed: 0,
                        ts_mismatch_in: 0,
                        ts_mismatch_out: 0,
                        resource: 0,
                    }],
                    child_rekeys: 0,
                    ike_rekeys: 0,
                    peer_cert: Some(PeerCertStatus {
                        subject: "C=CH, O=Lab, CN=routerB".into(),
                        issuer: "C=CH, O=Lab, CN=Lab Root CA".into(),
                        not_after: "2046-11-26 20:31:00 UTC".into(),
                    }),
                    cert_warning: Some("our certificate \"C=CH, O=Lab, CN=routerA\" expires on 2026-12-20 00:00:00 UTC (in 18 days)".into()),
                    child_sa_refill_in_ms: None,
                    dataplane: TunnelDataplaneStatus {
                        tun_queue_drops: 17,
                        no_sa_drops: 2,
                        ..Default::default()
                    },
                },
                TunnelStatus {
                    name: "vti1".into(),
                    local: "2001:db8::1".into(),
                    remote: "2001:db8::2".into(),
                    local_id: "2001:db8::1".into(),
                    remote_id: "2001:db8::2".into(),
                    state: "connecting".into(),
                    last_error: Some("AUTHENTICATION_FAILED".into()),
                    ike_sas: vec![],
                    child_sas: vec![],
                    child_rekeys: 0,
                    ike_rekeys: 0,
                    peer_cert: None,
                    cert_warning: None,
                    child_sa_refill_in_ms: None,
                    dataplane: TunnelDataplaneStatus::default(),
                },
            ],
            dataplane: DataplaneStatus {
                unknown_spi: 3,
                invalid: 1,
                keepalives: 0,
                ike_on_4500: 9,
                socket_drops: 0,
            },
            bgp: Some(RoutingStatus {
                asn: 65001,
                router_id: "10.1.0.1".into(),
                neighbors: vec![NeighborStatus {
                    address: "169.254.12.2".into(),
                    asn: 65002,
                    state: "Established".into(),
                    uptime_secs: Some(61),
                    prefixes_received: 2,
                    prefixes_accepted: 2,
                    prefixes_sent: 2,
                    prefixes_refused: 0,
                    bfd: Some("Up".into()),
                    bfd_auth: None,
                    bfd_wrong_interface: 0,
                    bfd_flaps: 1,
                    bfd_esp_hint: true,
                    bfd_esp_hint_downs: 1,
                }],
                routes: vec![BgpRouteStatus {
                    prefix: "10.2.0.0/24".into(),
                    next_hop: "169.254.12.2".into(),
                    also_via: vec![],
                    device: "vti0".into(),
                }],
                route_failures: 0,
            }),
        }
    }

    #[test]
    fn every_status_key_is_documented() {
        // Every optional part present, so every key the daemon can emit is walked.
        let mut r = sample();
        r.bgp.as_mut().unwrap().routes[0].also_via = vec!["169.254.13.2 dev vti1".into()];
        let v = serde_json::to_value(&r).unwrap();
        let paths = testbed::json_key_paths(&v);
        assert!(paths.contains(&"bgp.routes[].also_via".to_string()));
        assert!(paths.contains(&"tunnels[].child_sas[].bytes_in".to_string()));
        let doc = include_str!("../../../docs/status.md");
        let mut missing: Vec<&String> = paths
            .iter()
            .filter(|p| !doc.contains(&format!("| `{p}` |")))
            .collect();
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "status --json keys not documented in docs/status.md: {missing:?}"
        );
        assert_eq!(v["schema"], STATUS_SCHEMA);
        assert!(doc.contains(&format!("`\"{STATUS_SCHEMA}\"`")));
    }

    #[test]
    fn wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Up {
                name: "vti0".into()
            })
            .unwrap(),
            r#"{"cmd":"up","name":"vti0"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"down","name":"x"}"#).unwrap(),
            Request::Down { name: "x".into() }
        );
        assert_eq!(
            serde_json::to_string(&Response::Ok {
                message: "m".into()
            })
            .unwrap(),
            r#"{"result":"ok","message":"m"}"#
        );
        let r = Response::Status(sample());
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.starts_with(
                r#"{"result":"status","schema":"routevpn-status/1","daemon_pid":4242,"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), r);
        // Without BGP the key is absent and old reports still parse.
        let mut plain = sample();
        plain.bgp = None;
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("\"bgp\""), "{json}");
        assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), plain);
    }

    fn temp_socket(tag: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("routevpn-ctl-{}-{tag}", std::process::id()))
            .join("sub")
            .join("ctl.sock")
    }

    #[tokio::test]
    async fn serve_and_request() {
        let path = temp_socket("serve");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second daemon must not steal a live socket.
        let e = bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);

        let server = tokio::spawn(serve(listener, |req: Request| async move {
            match req {
                Request::Status => Response::Status(sample()),
                Request::Up { name } => Response::Ok {
                    message: format!("initiating {name}"),
                },
                Request::Down { name } => Response::Error {
                    message: format!("no tunnel {name}"),
                },
                Request::Reload => Response::Ok {
                    message: "reloaded".into(),
                },
            }
        }));
        assert_eq!(
            request(&path, &Request::Status).await.unwrap(),
            Response::Status(sample())
        );
        assert_eq!(
            request(
                &path,
                &Request::Up {
                    name: "vti0".into()
                }
            )
            .await
            .unwrap(),
            Response::Ok {
                message: "initiating vti0".into()
            }
        );
        assert_eq!(
            request(&path, &Request::Down { name: "x".into() })
                .await
                .unwrap(),
            Response::Error {
                message: "no tunnel x".into()
            }
        );
        // A malformed request gets an error response, not a hang.
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(b"{\"cmd\":\"reboot\"}\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let r: Response = serde_json::from_str(&out).unwrap();
        assert!(matches!(r, Response::Error { message } if message.contains("invalid request")));

        server.abort();
        let _ = server.await;
        drop(std::fs::remove_dir_all(
            path.parent().unwrap().parent().unwrap(),
        ));
    }

    #[tokio::test]
    async fn group_socket_is_0660_and_owned_by_the_group() {
        use std::os::unix::fs::MetadataExt;
        let path = temp_socket("group");
        let root = path.parent().unwrap().parent().unwrap().to_path_buf();
        let _ = std::fs::remove_dir_all(&root);
        // Our own primary group: chown to it works without privileges.
        // SAFETY: getegid(2) takes no arguments and cannot fail.
        let gid = unsafe { libc::getegid() };
        let l = bind_with_group(&path, Some(gid)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        drop(l);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_files_are_not() {
        let path = temp_socket("stale");
        let root = path.parent().unwrap().parent().unwrap().to_path_buf();
        let _ = std::fs::remove_dir_all(&root);
        drop(bind(&path).unwrap()); // listener gone, socket file stays
        assert!(path.exists());
        let l = bind(&path).unwrap();
        drop(l);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"not a socket").unwrap();
        assert_eq!(
            bind(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn unreachable_daemon_is_a_clear_error() {
        let path = temp_socket("none");
        let e = request(&path, &Request::Status).await.unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with(&format!(
                "cannot reach routevpn daemon at {}: ",
                path.display()
            )),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn silent_daemon_times_out() {
        let path = temp_socket("silent");
        let root = path.parent().unwrap().parent().unwrap().to_path_buf();
        let _ = std::fs::remove_dir_all(&root);
        let listener = bind(&path).unwrap();
        // Accepts but never answers.
        let server = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let e = request_with_timeout(&path, &Request::Status, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("no answer within 50ms"), "{e:#}");
        server.abort();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
