//! Every configuration under `examples/` (found by walking the directory, so a new one
//! is covered without touching this file) passes `routevpn check --strict`, run in a
//! network namespace that holds the example's `local` addresses (they are RFC 5737
//! placeholders no real host has). The files are checked from a copy made mode 600, as
//! the examples tell users to install them (git keeps no such mode).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every `.toml` file below `dir`, sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A mode-600 copy of the example's directory; returns the copied config's path.
fn private_copy(example: &Path, into: &testbed::TestDir) -> PathBuf {
    let src = example.parent().unwrap();
    let rel = src.strip_prefix(examples_dir()).unwrap();
    let dst = into.join(rel);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            let to = dst.join(p.file_name().unwrap());
            std::fs::copy(&p, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    dst.join(example.file_name().unwrap())
}

fn run(mut cmd: Command) -> (bool, String, String) {
    let out = cmd.output().expect("running routevpn check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_passes_check_strict() {
    let files = toml_files(&examples_dir());
    assert!(
        !files.is_empty(),
        "no .toml file under {}",
        examples_dir().display()
    );
    let copies = testbed::TestDir::new("examples");
    let configs: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|f| (f.clone(), private_copy(f, &copies)))
        .collect();

    // Anywhere: the files are valid, and the only warnings are about the placeholder
    // addresses this host does not have.
    for (orig, copy) in &configs {
        let mut cmd = Command::new(testbed::routevpn_bin());
        cmd.args(["check", "--config"]).arg(copy);
        let (ok, stdout, stderr) = run(cmd);
        assert!(ok, "{}: {stderr}", orig.display());
        assert!(
            stdout.starts_with("config OK"),
            "{}: {stdout}",
            orig.display()
        );
        for line in stderr.lines().filter(|l| l.contains(": warning: ")) {
            assert!(
                line.contains("is not on any interface of this host"),
                "{}: unexpected warning {line}",
                orig.display()
            );
        }
    }

    // Where those addresses exist (on lo of a fresh namespace): no warning at all.
    if !testbed::require_root() {
        return;
    }
    for (orig, copy) in &configs {
        let cfg =
            routevpn::config::load(copy).unwrap_or_else(|e| panic!("{}: {e}", orig.display()));
        let ns = testbed::Netns::new("examples");
        let mut locals: Vec<String> = cfg.tunnels.iter().map(|t| t.local.to_string()).collect();
        locals.dedup();
        for a in &locals {
            let len = if a.contains(':') { 128 } else { 32 };
            ns.addr_add("lo", &format!("{a}/{len}"));
        }
        let bin = testbed::routevpn_bin();
        let path = copy.to_string_lossy();
        let (ok, stdout, stderr) = run(ns.command(&[bin, "check", "--strict", "--config", &path]));
        testbed::report(&format!(
            "$ routevpn check --strict --config examples/{}\n{stdout}{stderr}",
            orig.strip_prefix(examples_dir()).unwrap().display()
        ));
        assert!(ok, "{}: {stderr}", orig.display());
        assert!(stderr.is_empty(), "{}: {stderr}", orig.display());
        let tunnels = cfg.tunnels.len();
        let plural = if tunnels == 1 { "" } else { "s" };
        assert_eq!(
            stdout.trim(),
            format!("config OK: {tunnels} tunnel{plural}"),
            "{}",
            orig.display()
        );
    }
}

/// Every `swanctl.conf` under `examples/` loads into a real charon (strongSwan 5.9):
/// its syntax, keywords and secrets are what swanctl accepts.
#[test]
fn every_swanctl_example_loads_into_charon() {
    let mut confs = Vec::new();
    let mut stack = vec![examples_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "swanctl.conf") {
                confs.push(p);
            }
        }
    }
    assert!(
        !confs.is_empty(),
        "the strongSwan example has a swanctl.conf"
    );
    if !testbed::require_strongswan() {
        return;
    }
    for conf in confs {
        let ns = testbed::Netns::new("swexample");
        // A charon with no connections of its own; then the example replaces its file.
        let sw = testbed::Strongswan::start(&ns, &[]).unwrap();
        let target = sw.dir().join("swanctl").join("swanctl.conf");
        std::fs::copy(&conf, &target).unwrap();
        let out = sw
            .load_all()
            .unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        testbed::report(&format!(
            "$ swanctl --load-all  # {}\n{out}",
            conf.display()
        ));
        assert!(
            out.contains("successfully loaded 1 connections, 0 unloaded"),
            "{}: {out}",
            conf.display()
        );
        assert!(out.contains("loaded ike secret 'ike-routevpn'"), "{out}");
    }
}
