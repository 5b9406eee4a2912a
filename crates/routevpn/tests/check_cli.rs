//! `routevpn check` as a user runs it, on five broken configurations that used to pass
//! silently (issue 11): each message names file:line:column, shows the line with a
//! caret, and `--strict` turns warnings into a failure.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const TUNNEL: &str = r#"[[tunnel]]
name = "vti0"
local = "192.0.2.1"
remote = "192.0.2.2"
psk = "correct-horse-battery-staple"
address = ["169.254.12.1/30"]
"#;

const BGP: &str = r#"
[bgp]
asn = 65001
router_id = "10.1.0.1"

[[bgp.neighbor]]
asn = 65002
"#;

/// Runs `routevpn check [extra] --config FILE` on `text` (mode 0600, or `mode`);
/// returns (success, stdout, stderr).
fn check(name: &str, text: &str, mode: u32, extra: &[&str]) -> (bool, String, String) {
    let dir = testbed::TestDir::new("check");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let out = Command::new(testbed::routevpn_bin())
        .arg("check")
        .args(extra)
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .expect("running routevpn check");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&*path.to_string_lossy(), name);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn assert_error(name: &str, text: &str, expected: &str) {
    let (ok, _, stderr) = check(name, text, 0o600, &[]);
    testbed::report(&format!("$ routevpn check --config {name}\n{stderr}"));
    assert!(!ok, "{name} must fail check");
    assert_eq!(stderr, expected, "{name}");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let text = format!("{TUNNEL}{BGP}address = \"169.254.12.2\"\nbfd = {{ multipler = 3 }}\n");
    assert_error(
        "unknown-key.toml",
        &text,
        "unknown-key.toml:15:9: error: unknown key `multipler`, did you mean `multiplier`?\n   \
         |\n15 | bfd = { multipler = 3 }\n   |         ^^^^^^^^^\n",
    );
}

#[test]
fn type_error_in_plain_words() {
    assert_error(
        "dpd.toml",
        &format!("{TUNNEL}dpd = 30\n"),
        "dpd.toml:7:7: error: dpd: expected a duration like \"30s\" or false, found integer 30\n  \
         |\n7 | dpd = 30\n  |       ^^\n",
    );
}

#[test]
fn remote_port_is_refused() {
    assert_error(
        "port.toml",
        &format!("{TUNNEL}remote_port = 4500\n"),
        "port.toml:7:15: error: tunnel \"vti0\": remote_port = 4500 is not supported: routevpn \
         sends IKE to the peer's port 500 (4500 after NAT detection); remove the line\n  \
         |\n7 | remote_port = 4500\n  |               ^^^^\n",
    );
}

#[test]
fn overlapping_tunnel_subnets() {
    let second = TUNNEL
        .replace("vti0", "vti1")
        .replace("192.0.2.2", "192.0.2.3")
        .replace("169.254.12.1/30", "169.254.12.2/24");
    assert_error(
        "overlap.toml",
        &format!("{TUNNEL}\n{second}"),
        "overlap.toml:13:11: error: tunnel \"vti1\": address 169.254.12.2/24 overlaps address \
         169.254.12.1/30 of tunnel \"vti0\"\n   |\n13 | address = [\"169.254.12.2/24\"]\n   \
         |           ^^^^^^^^^^^^^^^^^^\n",
    );
}

#[test]
fn warnings_and_strict() {
    let text = format!(
        "{}ike = [\"default\"]\n{BGP}address = \"10.9.9.9\"\n",
        TUNNEL.replace("correct-horse-battery-staple", "short")
    );
    let (ok, stdout, stderr) = check("warn.toml", &text, 0o644, &[]);
    testbed::report(&format!(
        "$ routevpn check --config warn.toml\n{stderr}{stdout}"
    ));
    assert!(ok, "warnings alone pass: {stderr}");
    // The test runs outside any namespace holding TEST-NET-1 addresses.
    let foreign = !routevpn::config::host_has_address("192.0.2.1".parse().unwrap());
    let n = if foreign { 4 } else { 3 };
    assert_eq!(stdout.trim(), format!("config OK: 1 tunnel, {n} warnings"));
    for needle in [
        "warn.toml: warning: the configuration file is accessible by group or others (mode 0644)",
        "warn.toml:5:7: warning: tunnel \"vti0\": the pre-shared key is 5 bytes long; use at least 20",
        "5 | psk = \"short\"\n  |       ^^^^^^^\n",
        "warn.toml:15:11: warning: [[bgp.neighbor]] 10.9.9.9: not inside any tunnel's address subnet",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in\n{stderr}");
    }
    if foreign {
        assert!(
            stderr.contains(
                "warn.toml:3:9: warning: tunnel \"vti0\": local address 192.0.2.1 is not on any interface of this host"
            ),
            "{stderr}"
        );
    }
    let (ok, stdout, stderr) = check("warn.toml", &text, 0o644, &["--strict"]);
    testbed::report(&format!(
        "$ routevpn check --strict --config warn.toml\n{stderr}"
    ));
    assert!(!ok, "--strict fails on warnings");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("warn.toml:5:7: error: tunnel \"vti0\": the pre-shared key is 5 bytes"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!(
            "warn.toml: {n} warning(s) treated as errors (--strict)\n"
        )),
        "{stderr}"
    );
    // A clean file passes both ways.
    let local = TUNNEL
        .replace("192.0.2.1", "127.0.0.1")
        .replace("192.0.2.2", "127.0.0.2");
    let (ok, stdout, stderr) = check("ok.toml", &local, 0o600, &["--strict"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "config OK: 1 tunnel");
}

#[test]
fn unsupported_algorithm_lists_the_supported_ones() {
    let (ok, _, stderr) = check(
        "alg.toml",
        &format!("{TUNNEL}ike = [\"aes512-sha256-modp2048\"]\n"),
        0o600,
        &[],
    );
    testbed::report(&format!("$ routevpn check --config alg.toml\n{stderr}"));
    assert!(!ok, "an unknown algorithm must fail check");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(
            "alg.toml:7:8: error: tunnel \"vti0\": ike: unsupported algorithm \"aes512\" in \
             proposal \"aes512-sha256-modp2048\"; supported: aes128gcm16, "
        ),
        "{stderr}"
    );
    for kind in [
        "aes256 (encryption)",
        "sha512 (integrity)",
        "prfsha512 (PRF)",
        "modp2048, modp3072, modp4096, ecp256, ecp384, x25519 (key exchange)",
    ] {
        assert!(first.contains(kind), "{kind:?} in {first}");
    }
    assert!(
        stderr.contains("7 | ike = [\"aes512-sha256-modp2048\"]\n  |        ^"),
        "{stderr}"
    );
}

#[test]
fn hooks_are_checked() {
    assert_error(
        "hook.toml",
        &format!("{TUNNEL}on_up = [\"vti0-up.sh\"]\n"),
        "hook.toml:7:10: error: tunnel \"vti0\": on_up: the program must be an absolute path, \
         not \"vti0-up.sh\"\n  |\n7 | on_up = [\"vti0-up.sh\"]\n  |          ^^^^^^^^^^^^\n",
    );
    // A program not installed yet is a warning: the tunnel works without it.
    let local = TUNNEL
        .replace("192.0.2.1", "127.0.0.1")
        .replace("192.0.2.2", "127.0.0.2");
    let text = format!("{local}on_down = [\"/nonexistent/vti0-down\", \"x\"]\n");
    let (ok, stdout, stderr) = check("hook.toml", &text, 0o600, &[]);
    testbed::report(&format!(
        "$ routevpn check --config hook.toml\n{stderr}{stdout}"
    ));
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "config OK: 1 tunnel, 1 warning");
    assert!(
        stderr.starts_with(
            "hook.toml:7:12: warning: tunnel \"vti0\": on_down: /nonexistent/vti0-down does not \
             exist (yet): the hook will fail until it is installed\n"
        ),
        "{stderr}"
    );
    let (ok, _, _) = check("hook.toml", &text, 0o600, &["--strict"]);
    assert!(!ok, "--strict fails on the missing hook");
}
