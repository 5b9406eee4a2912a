//! `routevpn generate man DIR` / `generate completions DIR` (hidden; scripts/package
//! runs them): manual pages from the clap definitions (routevpn(8), one page per
//! subcommand) and from the configuration reference (routevpn.toml(5)), and shell
//! completions for bash, zsh and fish.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{bold, italic, roman, Roff};

use crate::cli::Cli;
use crate::config::reference::SECTIONS;

/// Section 8: system administration commands (man-pages(7)).
const COMMAND_SECTION: &str = "8";

/// Writes routevpn.8, routevpn-SUBCOMMAND.8 for every visible subcommand, and
/// routevpn.toml.5; returns the files written.
pub fn man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    command_pages(cmd, dir, &mut written)?;
    let path = dir.join("routevpn.toml.5");
    std::fs::write(&path, config_page())?;
    written.push(path);
    Ok(written)
}

fn command_pages(cmd: clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub.clone(), dir, out)?;
    }
    let man = clap_mangen::Man::new(cmd)
        .section(COMMAND_SECTION)
        .manual("routevpn");
    out.push(man.generate_to(dir)?);
    Ok(())
}

/// routevpn.toml(5) from [`SECTIONS`].
pub fn config_page() -> String {
    let mut r = Roff::new();
    r.control("TH", ["ROUTEVPN.TOML", "5", "", "routevpn", "routevpn"]);
    r.control("SH", ["NAME"]);
    r.text([roman("routevpn.toml - routevpn configuration file")]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([
        roman("One TOML file, by default "),
        italic("/etc/routevpn/routevpn.toml"),
        roman(", read by "),
        bold("routevpn daemon --config"),
        roman(" and validated by "),
        bold("routevpn check --config"),
        roman(". Errors and warnings name the file, line and column. An unknown key is an error. Durations are written like \"30s\", \"500ms\", \"4h\" or \"1h30m\". The file holds secrets: keep it mode 0600 (check warns otherwise)."),
    ]);
    for s in SECTIONS {
        let title = if s.table.is_empty() {
            "TOP-LEVEL KEYS"
        } else {
            s.table
        };
        r.control("SH", [title]);
        r.text([roman(s.about)]);
        for k in s.keys {
            r.control("TP", []);
            r.text([bold(k.name), roman(" = "), italic(k.form)]);
            r.text([roman(k.about)]);
            r.text([roman(format!("Default: {}.", k.default))]);
        }
    }
    r.control("SH", ["EXAMPLE"]);
    r.control("nf", []);
    for line in EXAMPLE.lines() {
        r.text([roman(line)]);
    }
    r.control("fi", []);
    r.control("SH", ["FILES"]);
    r.text([
        italic("/etc/routevpn/routevpn.toml"),
        roman(", "),
        italic("/run/routevpn/routevpn.sock"),
    ]);
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("routevpn"),
        roman("(8), "),
        bold("swanctl.conf"),
        roman("(5)"),
    ]);
    r.render()
}

const EXAMPLE: &str = r#"control_socket_group = "routevpn"

[[tunnel]]
name = "vti0"
local = "192.0.2.1"
remote = "192.0.2.2"
psk_file = "/etc/routevpn/vti0.psk"
address = ["169.254.12.1/30"]
routes = ["10.2.0.0/24"]"#;

/// Writes routevpn.bash, _routevpn (zsh) and routevpn.fish.
pub fn completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|sh| clap_complete::generate_to(sh, &mut cmd, "routevpn", dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("routevpn-gen-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn man_pages_cover_every_subcommand_and_every_config_key() {
        let dir = temp("man");
        let files = man_pages(&dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "routevpn.8",
            "routevpn-daemon.8",
            "routevpn-status.8",
            "routevpn-check.8",
            "routevpn.toml.5",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        // The hidden generator is not documented to users.
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        let main = std::fs::read_to_string(dir.join("routevpn.8")).unwrap();
        assert!(
            main.contains(".TH routevpn 8"),
            "{}",
            &main[..200.min(main.len())]
        );
        assert!(main.contains("status"), "subcommands listed");
        let conf = std::fs::read_to_string(dir.join("routevpn.toml.5")).unwrap();
        for s in SECTIONS {
            for k in s.keys {
                assert!(
                    conf.contains(&format!("\\fB{}\\fR", k.name)),
                    "{} documented",
                    k.name
                );
            }
        }
        assert!(conf.contains("\\fBmetrics\\fR") && conf.contains("\\fBon_up\\fR"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completions_for_three_shells() {
        let dir = temp("comp");
        let files = completions(&dir).unwrap();
        assert_eq!(files.len(), 3);
        for f in ["routevpn.bash", "_routevpn", "routevpn.fish"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(text.contains("reload") && text.contains("--config"), "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
