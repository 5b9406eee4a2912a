//! A real strongSwan 5.9 peer (charon with kernel-libipsec: userspace ESP-in-UDP on a
//! TUN device `ipsec0`) running inside a test namespace, driven by `swanctl` over vici.
//!
//! Each charon gets a private directory holding `strongswan.conf` (found through the
//! `STRONGSWAN_CONF` environment variable, which libstrongswan 5.9.8 honours),
//! `swanctl/swanctl.conf`, and `run/`, bind-mounted over `/run` in a private mount
//! namespace (`unshare -m`). So the hard-coded `/var/run/charon.pid`, the vici socket
//! `/var/run/charon.vici` and the file log `/run/charon.log` are per instance and many
//! charons coexist. Nothing is written under `/etc`.

use crate::{dump_log, output_result, tail, wait_until, Netns, Proc, TestDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The verified configuration from shared/interop/README.md: an explicit load list
/// with kernel-libipsec before kernel-netlink and no include of Debian's
/// strongswan.d (which would set kernel-libipsec to `load = no`).
pub const STRONGSWAN_CONF: &str = "\
charon {
  load = random nonce openssl aes sha1 sha2 hmac gcm kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
  filelog { charon { path = /run/charon.log
    time_format = %b %e %T
    time_add_ms = yes
    default = 1
    cfg = 2
    flush_line = yes } }
  syslog { daemon { default = -1 } }
  plugins { kernel-libipsec { allow_peer_ts = no } }
}
swanctl { load = pem pkcs1 x509 revocation constraints pubkey openssl random }
";

/// The charon binary: the classic daemon if the `strongswan-charon` package is there,
/// otherwise `charon-systemd` (package `charon-systemd`; it reads the `charon` section
/// as fallback for its own and simply finds no journal socket under the private /run).
pub fn charon_binary() -> Option<PathBuf> {
    ["/usr/lib/ipsec/charon", "/usr/sbin/charon-systemd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// One IKE connection with one CHILD SA, written as swanctl.conf.
#[derive(Clone, Debug)]
pub struct SwanConn {
    /// Connection (IKE SA) name.
    pub name: String,
    /// CHILD SA name.
    pub child: String,
    pub local_addr: String,
    pub remote_addr: String,
    pub local_id: String,
    pub remote_id: String,
    pub psk: String,
    /// Comma-separated IKE proposals, e.g. `aes256gcm16-prfsha384-x25519`.
    pub ike_proposals: String,
    /// Comma-separated ESP proposals, e.g. `aes256gcm16` (add a group for PFS rekeys).
    pub esp_proposals: String,
    /// Comma-separated traffic selectors. Charon needs one of its own addresses inside.
    pub local_ts: String,
    pub remote_ts: String,
    /// `none`, `start` or `trap`.
    pub start_action: String,
    /// swanctl durations like `30s`, `5m`; None keeps strongSwan's default.
    pub ike_rekey_time: Option<String>,
    pub ike_over_time: Option<String>,
    pub ike_rand_time: Option<String>,
    pub child_rekey_time: Option<String>,
    pub child_life_time: Option<String>,
    pub child_rand_time: Option<String>,
    pub dpd_delay: Option<String>,
    /// Remote IKE port if not 500 (charon floats to 4500 anyway with libipsec).
    pub remote_port: Option<u16>,
    /// Extra raw `key = value` lines for the connection and the child sections.
    pub extra_conn: Vec<String>,
    pub extra_child: Vec<String>,
    /// Authenticate with this certificate (a file in `swanctl/x509/`) instead of `psk`;
    /// the peer then with `auth = pubkey` too.
    pub cert: Option<String>,
}

impl Default for SwanConn {
    fn default() -> Self {
        SwanConn {
            name: "tun".into(),
            child: "net".into(),
            local_addr: String::new(),
            remote_addr: String::new(),
            local_id: String::new(),
            remote_id: String::new(),
            psk: "supersecret".into(),
            ike_proposals: "aes256gcm16-prfsha384-x25519".into(),
            esp_proposals: "aes256gcm16".into(),
            local_ts: String::new(),
            remote_ts: String::new(),
            start_action: "none".into(),
            ike_rekey_time: None,
            ike_over_time: None,
            ike_rand_time: None,
            child_rekey_time: None,
            child_life_time: None,
            child_rand_time: None,
            dpd_delay: None,
            remote_port: None,
            extra_conn: Vec::new(),
            extra_child: Vec::new(),
            cert: None,
        }
    }
}

impl SwanConn {
    /// strongSwan on router B of [`crate::Topology::two_sites`] facing router A ("routerB"
    /// and "routerA" with `psk`), with the two site networks, IPv4 and IPv6, as
    /// selectors (a libipsec peer must not route 0/0 into its tunnel) and no start
    /// action; tests change the rest with `..`.
    pub fn router_b(psk: &str, ike: &str, esp: &str) -> SwanConn {
        use crate::Topology;
        SwanConn {
            local_addr: Topology::RIGHT_WAN.into(),
            remote_addr: Topology::LEFT_WAN.into(),
            local_id: "routerB".into(),
            remote_id: "routerA".into(),
            psk: psk.into(),
            ike_proposals: ike.into(),
            esp_proposals: esp.into(),
            local_ts: format!("{},{}", Topology::RIGHT_NET, Topology::RIGHT_NET6),
            remote_ts: format!("{},{}", Topology::LEFT_NET, Topology::LEFT_NET6),
            start_action: "none".into(),
            ..SwanConn::default()
        }
    }

    /// The `connections { NAME {...} }` entry.
    pub fn connection_section(&self) -> String {
        let mut s = String::new();
        let line = |s: &mut String, indent: usize, text: &str| {
            s.push_str(&" ".repeat(indent));
            s.push_str(text);
            s.push('\n');
        };
        let opt = |s: &mut String, indent: usize, key: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!("{}{key} = {v}\n", " ".repeat(indent)));
            }
        };
        line(&mut s, 2, &format!("{} {{", self.name));
        line(&mut s, 4, "version = 2");
        line(&mut s, 4, &format!("local_addrs = {}", self.local_addr));
        line(&mut s, 4, &format!("remote_addrs = {}", self.remote_addr));
        if let Some(p) = self.remote_port {
            line(&mut s, 4, &format!("remote_port = {p}"));
        }
        line(&mut s, 4, &format!("proposals = {}", self.ike_proposals));
        opt(&mut s, 4, "rekey_time", &self.ike_rekey_time);
        opt(&mut s, 4, "over_time", &self.ike_over_time);
        opt(&mut s, 4, "rand_time", &self.ike_rand_time);
        opt(&mut s, 4, "dpd_delay", &self.dpd_delay);
        for l in &self.extra_conn {
            line(&mut s, 4, l);
        }
        let auth = if self.cert.is_some() { "pubkey" } else { "psk" };
        line(&mut s, 4, "local {");
        line(&mut s, 6, &format!("auth = {auth}"));
        if let Some(c) = &self.cert {
            line(&mut s, 6, &format!("certs = {c}"));
        }
        line(&mut s, 6, &format!("id = {}", self.local_id));
        line(&mut s, 4, "}");
        line(&mut s, 4, "remote {");
        line(&mut s, 6, &format!("auth = {auth}"));
        line(&mut s, 6, &format!("id = {}", self.remote_id));
        line(&mut s, 4, "}");
        line(&mut s, 4, "children {");
        line(&mut s, 6, &format!("{} {{", self.child));
        line(&mut s, 8, &format!("local_ts = {}", self.local_ts));
        line(&mut s, 8, &format!("remote_ts = {}", self.remote_ts));
        line(
            &mut s,
            8,
            &format!("esp_proposals = {}", self.esp_proposals),
        );
        line(&mut s, 8, &format!("start_action = {}", self.start_action));
        opt(&mut s, 8, "rekey_time", &self.child_rekey_time);
        opt(&mut s, 8, "life_time", &self.child_life_time);
        opt(&mut s, 8, "rand_time", &self.child_rand_time);
        for l in &self.extra_child {
            line(&mut s, 8, l);
        }
        line(&mut s, 6, "}");
        line(&mut s, 4, "}");
        line(&mut s, 2, "}");
        s
    }

    /// The `secrets { ike-N {...} }` entry.
    pub fn secret_section(&self, index: usize) -> String {
        if self.cert.is_some() {
            return String::new(); // keys are loaded from swanctl/{ecdsa,rsa,pkcs8}/
        }
        format!(
            "  ike-{index} {{\n    id-1 = {}\n    id-2 = {}\n    secret = \"{}\"\n  }}\n",
            self.local_id,
            self.remote_id,
            self.psk.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }
}

/// A whole swanctl.conf for the given connections.
pub fn swanctl_conf(conns: &[SwanConn]) -> String {
    let mut s = String::from("connections {\n");
    for c in conns {
        s.push_str(&c.connection_section());
    }
    s.push_str("}\nsecrets {\n");
    for (i, c) in conns.iter().enumerate() {
        s.push_str(&c.secret_section(i + 1));
    }
    s.push_str("}\n");
    s
}

/// A CHILD SA from `swanctl --list-sas --raw`.
#[derive(Clone, Debug, Default)]
pub struct ChildSa {
    /// The section key, `NAME-UNIQUEID`.
    pub key: String,
    pub name: String,
    pub state: String,
    /// Every scalar field (`spi-in`, `encr-alg`, `bytes-in`, ...); lists such as
    /// `local-ts` are joined with spaces.
    pub fields: BTreeMap<String, String>,
}

/// An IKE SA from `swanctl --list-sas --raw`.
#[derive(Clone, Debug, Default)]
pub struct IkeSa {
    pub name: String,
    pub state: String,
    /// Every scalar field (`uniqueid`, `initiator-spi`, `dh-group`, `remote-port`, ...).
    pub fields: BTreeMap<String, String>,
    pub children: Vec<ChildSa>,
}

impl IkeSa {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn is_established(&self) -> bool {
        self.state == "ESTABLISHED"
    }

    /// The installed CHILD SAs.
    pub fn installed(&self) -> impl Iterator<Item = &ChildSa> {
        self.children.iter().filter(|c| c.state == "INSTALLED")
    }
}

impl ChildSa {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// A value in swanctl's raw vici dump.
#[derive(Debug)]
enum Raw {
    Str(String),
    List(Vec<String>),
    Section(Vec<(String, Raw)>),
}

fn raw_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '{' | '}' | '[' | ']' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(ch.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses a section body up to its closing `}` (tokens after the opening `{`).
fn raw_section(tokens: &[String], pos: &mut usize) -> Result<Vec<(String, Raw)>, String> {
    let mut items = Vec::new();
    while let Some(tok) = tokens.get(*pos) {
        *pos += 1;
        if tok == "}" {
            return Ok(items);
        }
        if let Some((key, value)) = tok.split_once('=') {
            if value.is_empty() && tokens.get(*pos).map(String::as_str) == Some("[") {
                *pos += 1;
                let mut list = Vec::new();
                loop {
                    match tokens.get(*pos) {
                        None => return Err("unterminated list".into()),
                        Some(t) if t == "]" => {
                            *pos += 1;
                            break;
                        }
                        // A selector with protocol/port, `10.2.0.0/24[icmp/0]`: the
                        // brackets belong to the item before them.
                        Some(t) if t == "[" => {
                            let close = tokens[*pos..]
                                .iter()
                                .position(|t| t == "]")
                                .ok_or("unterminated selector")?;
                            let inner = tokens[*pos + 1..*pos + close].join(" ");
                            let last: &mut String =
                                list.last_mut().ok_or("bracket without selector")?;
                            last.push_str(&format!("[{inner}]"));
                            *pos += close + 1;
                        }
                        Some(t) => {
                            list.push(t.clone());
                            *pos += 1;
                        }
                    }
                }
                items.push((key.to_string(), Raw::List(list)));
            } else {
                items.push((key.to_string(), Raw::Str(value.to_string())));
            }
        } else if tokens.get(*pos).map(String::as_str) == Some("{") {
            *pos += 1;
            let sub = raw_section(tokens, pos)?;
            items.push((tok.clone(), Raw::Section(sub)));
        } else {
            return Err(format!("unexpected token {tok:?}"));
        }
    }
    Err("unterminated section".into())
}

fn raw_scalars(items: &[(String, Raw)]) -> BTreeMap<String, String> {
    items
        .iter()
        .filter_map(|(k, v)| match v {
            Raw::Str(s) => Some((k.clone(), s.clone())),
            Raw::List(l) => Some((k.clone(), l.join(" "))),
            Raw::Section(_) => None,
        })
        .collect()
}

/// Parses the output of `swanctl --list-sas --raw` (one `list-sa event {...}` line per
/// IKE SA, then `list-sas reply {}`).
pub fn parse_list_sas_raw(text: &str) -> Result<Vec<IkeSa>, String> {
    let mut sas = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("list-sa event")) {
        let body = line
            .split_once('{')
            .map(|(_, b)| b)
            .ok_or_else(|| format!("no body in {line:?}"))?;
        let tokens = raw_tokens(body);
        let mut pos = 0;
        let top = raw_section(&tokens, &mut pos).map_err(|e| format!("{e} in {line:?}"))?;
        for (name, v) in top {
            let Raw::Section(items) = v else { continue };
            let fields = raw_scalars(&items);
            let mut children = Vec::new();
            for (k, v) in &items {
                if let (true, Raw::Section(childs)) = (k == "child-sas", v) {
                    for (ckey, cv) in childs {
                        if let Raw::Section(citems) = cv {
                            let cf = raw_scalars(citems);
                            children.push(ChildSa {
                                key: ckey.clone(),
                                name: cf.get("name").cloned().unwrap_or_default(),
                                state: cf.get("state").cloned().unwrap_or_default(),
                                fields: cf,
                            });
                        }
                    }
                }
            }
            sas.push(IkeSa {
                name,
                state: fields.get("state").cloned().unwrap_or_default(),
                fields,
                children,
            });
        }
    }
    Ok(sas)
}

/// A running charon in a namespace. Drop stops it (SIGTERM, then SIGKILL) and removes
/// its directory; if the test is panicking, its log is dumped to stderr first.
#[derive(Debug)]
pub struct Strongswan {
    ns: Netns,
    proc: Option<Proc>,
    conf: PathBuf,
    swanctl_conf: PathBuf,
    log: PathBuf,
    stdout_log: PathBuf,
    uri: String,
    label: String,
    // Last field: removed after the process is gone.
    dir: TestDir,
}

impl Strongswan {
    /// Writes the configs, starts charon in `ns`, waits for its vici socket and loads
    /// the connections with `swanctl --load-all`.
    pub fn start(ns: &Netns, conns: &[SwanConn]) -> Result<Strongswan, String> {
        Strongswan::start_with(ns, conns, STRONGSWAN_CONF)
    }

    /// [`Strongswan::start`] with another strongswan.conf (e.g. [`STRONGSWAN_CONF`]
    /// with extra settings). Keep `filelog` at `/run/charon.log` and the vici plugin.
    pub fn start_with(
        ns: &Netns,
        conns: &[SwanConn],
        strongswan_conf: &str,
    ) -> Result<Strongswan, String> {
        let charon = charon_binary().ok_or("charon not installed")?;
        let dir = TestDir::new("swan");
        let run = dir.join("run");
        let swanctl_dir = dir.join("swanctl");
        std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        // swanctl --file looks for credential folders beside the file.
        for sub in [
            "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private",
            "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12",
        ] {
            std::fs::create_dir_all(swanctl_dir.join(sub)).map_err(|e| e.to_string())?;
        }
        let conf = dir.join("strongswan.conf");
        std::fs::write(&conf, strongswan_conf).map_err(|e| e.to_string())?;
        let swanctl_path = swanctl_dir.join("swanctl.conf");
        std::fs::write(&swanctl_path, swanctl_conf(conns)).map_err(|e| e.to_string())?;
        let stdout_log = dir.join("charon.stdout");
        let run_s = run.to_str().ok_or("non-UTF-8 temp dir")?;
        let charon_s = charon.to_str().ok_or("non-UTF-8 charon path")?;
        let conf_s = conf.to_str().ok_or("non-UTF-8 temp dir")?;
        // A private /run in a private mount namespace: pid file, vici socket and log.
        let proc = ns.spawn_env(
            &[
                "unshare",
                "-m",
                "sh",
                "-c",
                "mount --bind \"$1\" /run && exec \"$2\"",
                "sh",
                run_s,
                charon_s,
            ],
            &[("STRONGSWAN_CONF", conf_s)],
            &stdout_log,
        );
        let sw = Strongswan {
            ns: ns.clone(),
            proc: Some(proc),
            conf,
            swanctl_conf: swanctl_path,
            log: run.join("charon.log"),
            stdout_log,
            uri: format!("unix://{}", run.join("charon.vici").display()),
            label: format!("charon in {}", ns.name()),
            dir,
        };
        let vici = run.join("charon.vici");
        let waited = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            if let Some(p) = sw.proc.as_ref() {
                if let Some(st) = p.try_wait() {
                    return Ok(Err(format!("charon exited early: {st}")));
                }
            }
            if !vici.exists() {
                return Err("no vici socket yet".into());
            }
            sw.swanctl(&["--stats"]).map(Ok)
        });
        match waited {
            Ok(Ok(_)) => {}
            Ok(Err(e)) | Err(e) => return Err(sw.failure(&e)),
        }
        sw.load_all().map_err(|e| sw.failure(&e))?;
        Ok(sw)
    }

    fn failure(&self, e: &str) -> String {
        format!(
            "{}: {e}\n--- charon stdout ---\n{}\n--- charon log ---\n{}",
            self.label,
            std::fs::read_to_string(&self.stdout_log).unwrap_or_default(),
            tail(&self.log(), 100)
        )
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `unix:///.../run/charon.vici`
    pub fn vici_uri(&self) -> &str {
        &self.uri
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map(Proc::pid).unwrap_or(0)
    }

    /// Runs `swanctl ARGS --uri ...` with this instance's strongswan.conf; Ok(stdout).
    /// (vici is a Unix socket, so swanctl itself needs no namespace.)
    pub fn swanctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("swanctl")
            .args(args)
            .args(["--uri", &self.uri])
            .env("STRONGSWAN_CONF", &self.conf)
            .output();
        output_result(&format!("swanctl {}", args.join(" ")), out)
    }

    /// `swanctl --load-all` from this instance's swanctl.conf.
    pub fn load_all(&self) -> Result<String, String> {
        let file = self
            .swanctl_conf
            .to_str()
            .ok_or("non-UTF-8 path")?
            .to_string();
        self.swanctl(&["--load-all", "--file", &file])
    }

    /// Rewrites swanctl.conf and reloads it (connections not listed are unloaded).
    pub fn reconfigure(&self, conns: &[SwanConn]) -> Result<String, String> {
        std::fs::write(&self.swanctl_conf, swanctl_conf(conns)).map_err(|e| e.to_string())?;
        self.load_all()
    }

    /// Human-readable `swanctl --list-sas`.
    pub fn list_sas(&self) -> String {
        self.swanctl(&["--list-sas"]).unwrap_or_else(|e| e)
    }

    /// Parsed `swanctl --list-sas --raw`.
    pub fn sas(&self) -> Result<Vec<IkeSa>, String> {
        parse_list_sas_raw(&self.swanctl(&["--list-sas", "--raw"])?)
    }

    /// Waits until an IKE SA of connection `conn` is ESTABLISHED with at least one
    /// CHILD SA INSTALLED; returns that SA.
    pub fn wait_established(&self, conn: &str, timeout: Duration) -> Result<IkeSa, String> {
        wait_until(timeout, Duration::from_millis(20), || {
            let sas = self.sas()?;
            sas.iter()
                .find(|sa| {
                    sa.name == conn && sa.is_established() && sa.installed().next().is_some()
                })
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{}: no established {conn} yet:\n{}",
                        self.label,
                        self.list_sas()
                    )
                })
        })
    }

    /// Waits until charon's log contains `needle`; returns the whole log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        wait_until(timeout, Duration::from_millis(20), || {
            let log = self.log();
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(format!("{}: log has no {needle:?}", self.label))
            }
        })
    }

    /// `swanctl --initiate --child CHILD` (waits for the result, at most 10 s).
    pub fn initiate(&self, child: &str) -> Result<String, String> {
        self.swanctl(&["--initiate", "--child", child, "--timeout", "10"])
    }

    /// `swanctl --initiate --ike CONN` (IKE SA only; at most 10 s).
    pub fn initiate_ike(&self, conn: &str) -> Result<String, String> {
        self.swanctl(&["--initiate", "--ike", conn, "--timeout", "10"])
    }

    /// `swanctl --rekey --child CHILD` (asynchronous in charon: poll the SAs after).
    pub fn rekey_child(&self, child: &str) -> Result<String, String> {
        self.swanctl(&["--rekey", "--child", child])
    }

    /// `swanctl --rekey --ike CONN`.
    pub fn rekey_ike(&self, conn: &str) -> Result<String, String> {
        self.swanctl(&["--rekey", "--ike", conn])
    }

    /// `swanctl --terminate --ike CONN` (at most 10 s).
    pub fn terminate_ike(&self, conn: &str) -> Result<String, String> {
        self.swanctl(&["--terminate", "--ike", conn, "--timeout", "10"])
    }

    /// `swanctl --terminate --child CHILD` (at most 10 s).
    pub fn terminate_child(&self, child: &str) -> Result<String, String> {
        self.swanctl(&["--terminate", "--child", child, "--timeout", "10"])
    }

    /// charon's file log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops charon now (SIGTERM, SIGKILL after 3 s); later calls do nothing.
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }
}

impl Drop for Strongswan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_log(
                &format!("{} swanctl --list-sas", self.label),
                &self.list_sas(),
            );
            dump_log(&format!("{} log", self.label), &self.log());
            let stdout = std::fs::read_to_string(&self.stdout_log).unwrap_or_default();
            if !stdout.trim().is_empty() {
                dump_log(&format!("{} stdout/stderr", self.label), &stdout);
            }
        }
        self.stop();
    }
}
