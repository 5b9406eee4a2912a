//! Certificate authentication of a tunnel (`cert`, `key`, `ca`, `crl`, `rsa_pss`):
//! the files are read and cross-checked when the configuration is loaded, so `check`
//! reports what the daemon would refuse.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ike::cert::{CertAuth, Credentials, TrustStore};
use toml::Spanned;

use super::values::{item_span, Identity, StrList};
use super::{ConfigError, Ctx};

/// Warn this long before our own certificate expires (in `check`, the log and `status`).
pub const CERT_EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// A tunnel's certificate, key, CAs and CRLs, loaded.
#[derive(Clone)]
pub struct CertConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Vec<PathBuf>,
    pub crl: Vec<PathBuf>,
    pub rsa_pss: bool,
    /// The credentials and trust anchors as the IKE session uses them.
    pub auth: Arc<CertAuth>,
    /// SHA-256 over every file's content: a reload sees changed files.
    digest: Vec<u8>,
}

impl PartialEq for CertConfig {
    fn eq(&self, o: &CertConfig) -> bool {
        (
            &self.cert,
            &self.key,
            &self.ca,
            &self.crl,
            self.rsa_pss,
            &self.digest,
        ) == (&o.cert, &o.key, &o.ca, &o.crl, o.rsa_pss, &o.digest)
    }
}

impl std::fmt::Debug for CertConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertConfig")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("ca", &self.ca)
            .field("crl", &self.crl)
            .field("rsa_pss", &self.rsa_pss)
            .finish_non_exhaustive()
    }
}

impl CertConfig {
    /// Our certificate's subject as an identity (the default `local_id`).
    pub fn subject_id(&self) -> Identity {
        Identity::Dn(self.auth.credentials.subject_der.clone())
    }
}

/// The certificate keys of one `[[tunnel]]` as written.
pub(super) struct RawCerts<'a> {
    pub cert: &'a Option<Spanned<PathBuf>>,
    pub key: &'a Option<Spanned<PathBuf>>,
    pub ca: &'a Option<Spanned<StrList>>,
    pub crl: &'a Option<Spanned<StrList>>,
    pub rsa_pss: &'a Option<Spanned<bool>>,
    /// The span of `psk` or `psk_file`, if either is set.
    pub psk: Option<Range<usize>>,
}

fn full_path(path: &Path, base_dir: Option<&Path>) -> PathBuf {
    match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Loads the certificate keys of tunnel `name`; None if the tunnel uses a PSK.
pub(super) fn cert_config(
    cx: &Ctx,
    name: &str,
    raw: RawCerts<'_>,
    base_dir: Option<&Path>,
) -> Result<Option<CertConfig>, ConfigError> {
    let err = |span: Range<usize>, m: String| cx.err(Some(span), format!("tunnel \"{name}\": {m}"));
    let first_span = [
        raw.cert.as_ref().map(Spanned::span),
        raw.key.as_ref().map(Spanned::span),
        raw.ca.as_ref().map(Spanned::span),
        raw.crl.as_ref().map(Spanned::span),
        raw.rsa_pss.as_ref().map(Spanned::span),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|s| s.start);
    let Some(span) = first_span else {
        return Ok(None);
    };
    if let Some(psk) = raw.psk {
        return Err(err(
            psk,
            "psk/psk_file and certificates (cert, key, ca) are mutually exclusive; set only one"
                .into(),
        ));
    }
    let (Some(cert), Some(key)) = (raw.cert, raw.key) else {
        return Err(err(
            span,
            "certificate authentication needs both cert and key".into(),
        ));
    };
    let Some(ca) = raw.ca.as_ref().filter(|c| !c.get_ref().0.is_empty()) else {
        return Err(err(
            span,
            "certificate authentication needs ca = [\"...\"]: the CA certificates the peer's certificate must chain to".into(),
        ));
    };
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut read = |p: &Path, what: &str, span: Range<usize>| {
        let full = full_path(p, base_dir);
        let bytes = std::fs::read(&full)
            .map_err(|e| err(span, format!("cannot read {what} {}: {e}", full.display())))?;
        digest.update(&bytes);
        Ok::<_, ConfigError>(bytes)
    };
    let cert_pem = read(cert.get_ref(), "cert", cert.span())?;
    key_mode_ok(&full_path(key.get_ref(), base_dir)).map_err(|m| err(key.span(), m))?;
    let key_pem = zeroize::Zeroizing::new(read(key.get_ref(), "key", key.span())?);
    let paths = |l: &Spanned<StrList>| -> Vec<(PathBuf, Range<usize>)> {
        l.get_ref()
            .0
            .iter()
            .map(|s| (PathBuf::from(s.get_ref()), item_span(s, l.span())))
            .collect()
    };
    let ca_paths = paths(ca);
    let crl_paths = raw.crl.as_ref().map(paths).unwrap_or_default();
    let ca_pems = ca_paths
        .iter()
        .map(|(p, s)| read(p, "ca", s.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let crls = crl_paths
        .iter()
        .map(|(p, s)| read(p, "crl", s.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let credentials = Credentials::from_pem(&cert_pem, &key_pem).map_err(|e| {
        err(
            cert.span(),
            format!(
                "cert {} / key {}: {e}",
                cert.get_ref().display(),
                key.get_ref().display()
            ),
        )
    })?;
    let trust =
        TrustStore::new(&ca_pems, &crls).map_err(|e| err(ca.span(), format!("ca/crl: {e}")))?;
    let now = now_unix();
    // Our own chain is only checked against the peer's CAs for a hint: the two ends
    // may well use different CAs.
    if let Err(e) = trust.validate(&credentials.chain, now) {
        cx.warn(
            Some(cert.span()),
            format!(
                "tunnel \"{name}\": our certificate does not validate against this tunnel's ca ({}); fine only if the peer trusts another CA",
                e.to_string().replacen("peer certificate", "certificate", 1)
            ),
        );
    }
    if let Some(w) = expiry_warning(&credentials, now) {
        cx.warn(Some(cert.span()), format!("tunnel \"{name}\": {w}"));
    }
    Ok(Some(CertConfig {
        cert: cert.get_ref().clone(),
        key: key.get_ref().clone(),
        ca: ca_paths.into_iter().map(|(p, _)| p).collect(),
        crl: crl_paths.into_iter().map(|(p, _)| p).collect(),
        rsa_pss: raw.rsa_pss.as_ref().is_some_and(|b| *b.get_ref()),
        auth: Arc::new(CertAuth {
            credentials,
            trust,
            rsa_pss: raw.rsa_pss.as_ref().is_some_and(|b| *b.get_ref()),
        }),
        digest: digest.finish().as_ref().to_vec(),
    }))
}

/// A private key readable by group or others is refused (ssh and strongSwan's
/// swanctl warn; a VPN key is worth an error).
fn key_mode_ok(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // the read that follows reports it
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "key {} is accessible by group or others (mode {:04o}): chmod 600 it",
            path.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// "our certificate CN=... expires on ..." within [`CERT_EXPIRY_WARNING`] of `now`.
pub fn expiry_warning(c: &Credentials, now: u64) -> Option<String> {
    let left = c.not_after - i64::try_from(now).unwrap_or(i64::MAX);
    let date = ike::cert::format_unix_date(c.not_after);
    if left < 0 {
        Some(format!(
            "our certificate \"{}\" expired on {date}",
            c.subject
        ))
    } else if left < CERT_EXPIRY_WARNING.as_secs() as i64 {
        Some(format!(
            "our certificate \"{}\" expires on {date} (in {} days)",
            c.subject,
            left / 86_400
        ))
    } else {
        None
    }
}

/// `local_id`, when set, must be in our certificate (the peer checks the same).
pub(super) fn check_local_id(c: &CertConfig, id: &Identity) -> Result<(), String> {
    let payload = ike::wire::IdPayload::new(id.id_type(), id.data());
    if ike::cert::id_in_cert_der(&payload, c.auth.credentials.leaf()) {
        Ok(())
    } else {
        Err(format!(
            "local_id \"{id}\" is not in our certificate \"{}\" (its subject or a subjectAltName); the peer would refuse it",
            c.auth.credentials.subject
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, parse_checked};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// The fixtures of crates/ike copied to a fresh directory, keys mode 0600 (git
    /// keeps 0644).
    fn fixtures() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("routevpn-certs-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ike/testdata/certs");
        for e in std::fs::read_dir(src).unwrap() {
            let p = e.unwrap().path();
            let to = dir.join(p.file_name().unwrap());
            std::fs::copy(&p, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        dir
    }

    fn tunnel(dir: &std::path::Path, extra: &str) -> String {
        let d = dir.display();
        format!(
            "[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\ncert = \"{d}/a-p256.pem\"\nkey = \"{d}/a-p256.key\"\nca = [\"{d}/root-ca.pem\"]\n{extra}"
        )
    }

    #[test]
    fn certificate_tunnel_loads_with_defaults() {
        let dir = fixtures();
        let c = parse_checked(
            &tunnel(&dir, "remote_id = \"C=CH, O=Lab, CN=routerB\"\n"),
            "c.toml",
        )
        .unwrap();
        let t = &c.config.tunnels[0];
        assert_eq!(t.local_id.to_string(), "C=CH, O=Lab, CN=routerA");
        assert_eq!(t.remote_id.to_string(), "C=CH, O=Lab, CN=routerB");
        let certs = t.certs.as_ref().unwrap();
        assert_eq!(certs.auth.credentials.chain.len(), 2);
        assert!(t.psk.as_bytes().is_empty());
        assert!(
            c.warnings.is_empty(),
            "{:?}",
            c.warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        // A SAN as local_id, and an FQDN remote_id.
        let c = parse(
            &tunnel(&dir, "local_id = \"routerA.example\"\nremote_id = \"routerB.example\"\nrsa_pss = true\ncrl = []\n"),
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.tunnels[0].local_id.to_string(), "routerA.example");
        assert!(c.tunnels[0].certs.as_ref().unwrap().rsa_pss);
        // The same files give an equal configuration (a reload changes nothing).
        let again = parse(
            &tunnel(&dir, "local_id = \"routerA.example\"\nremote_id = \"routerB.example\"\nrsa_pss = true\ncrl = []\n"),
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.tunnels[0], again.tunnels[0]);
    }

    #[test]
    fn certificate_errors_name_the_line() {
        let dir = fixtures();
        let d = dir.display();
        let cases: &[(String, &str, usize)] = &[
            (tunnel(&dir, "remote_id = \"routerB\"\npsk = \"correct-horse-battery-staple\"\n"), "mutually exclusive", 9),
            (tunnel(&dir, ""), "remote_id is required with certificates", 1),
            (tunnel(&dir, "remote_id = \"routerB\"\nlocal_id = \"routerX.example\"\n"), "is not in our certificate", 9),
            (
                tunnel(&dir, "remote_id = \"routerB\"\n").replace("a-p256.key", "b-p256.key"),
                "does not belong to certificate \"C=CH, O=Lab, CN=routerA\"",
                5,
            ),
            (tunnel(&dir, "remote_id = \"routerB\"\n").replace("root-ca.pem", "missing.pem"), "cannot read ca", 7),
            (tunnel(&dir, "remote_id = \"routerB\"\n").replace("ca = [", "crl = ["), "needs ca", 5),
            (
                format!("[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\nremote_id = \"x\"\nkey = \"{d}/a-p256.key\"\n"),
                "needs both cert and key",
                6,
            ),
            (tunnel(&dir, "remote_id = \"C=CH, XX=routerB\"\n"), "unknown attribute type \"XX\"", 8),
        ];
        for (text, needle, line) in cases {
            let e = parse(text, "c.toml").unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert_eq!(e.line, Some(*line), "{e}");
        }
    }

    #[test]
    fn readable_key_is_refused() {
        let dir = fixtures();
        let key = dir.join("a-p256.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = parse(&tunnel(&dir, "remote_id = \"routerB\"\n"), "c.toml").unwrap_err();
        assert!(e.to_string().contains("(mode 0640): chmod 600 it"), "{e}");
        assert_eq!(e.line, Some(6));
        // The error never shows the key.
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(!e.to_string().contains(pem.lines().nth(1).unwrap()));
    }

    #[test]
    fn own_chain_and_expiry_are_warnings() {
        let dir = fixtures();
        let text = tunnel(&dir, "remote_id = \"routerB\"\n").replace("root-ca.pem", "other-ca.pem");
        let c = parse_checked(&text, "c.toml").unwrap();
        let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("our certificate does not validate against this tunnel's ca")),
            "{w:?}"
        );
        let creds = &c.config.tunnels[0].certs.as_ref().unwrap().auth.credentials;
        let not_after = u64::try_from(creds.not_after).unwrap();
        assert_eq!(super::expiry_warning(creds, not_after - 31 * 86_400), None);
        let w = super::expiry_warning(creds, not_after - 29 * 86_400 - 60).unwrap();
        assert!(
            w.starts_with("our certificate \"C=CH, O=Lab, CN=routerA\" expires on 2046-"),
            "{w}"
        );
        assert!(w.ends_with("(in 29 days)"), "{w}");
        assert!(super::expiry_warning(creds, not_after + 1)
            .unwrap()
            .contains("expired on"));
    }
}
