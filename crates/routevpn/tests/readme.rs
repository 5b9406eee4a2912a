//! The README is the user's specification: its configuration example must be a valid
//! configuration, with the values it documents.

use std::path::Path;

/// Every ```toml block of the README, in order.
fn toml_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn readme_configuration_example_parses_with_its_documented_values() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = toml_blocks(&readme);
    assert!(!blocks.is_empty(), "no ```toml block in the README");
    let main = blocks
        .iter()
        .find(|b| b.contains("[[tunnel]]") && b.contains("[bgp]"))
        .expect("the README's full example (tunnel and bgp)");
    let cfg = routevpn::config::parse(main, "README.md")
        .unwrap_or_else(|e| panic!("the README's example does not parse: {e}"));
    assert_eq!(cfg.tunnels.len(), 1);
    let t = &cfg.tunnels[0];
    assert_eq!(t.name, "vti0");
    assert_eq!(t.local.to_string(), "192.0.2.1");
    assert_eq!(t.remote_text(), "192.0.2.2");
    assert!(t.start);
    assert_eq!(t.ike.len(), 2, "two IKE proposals");
    assert_eq!(t.esp.len(), 2, "two ESP proposals");
    let bgp = cfg.bgp.as_ref().expect("[bgp]");
    assert_eq!(bgp.asn, 65001);
    assert_eq!(bgp.neighbors.len(), 1);
    assert_eq!(bgp.neighbors[0].asn, 65002);
    let bfd = bgp.neighbors[0]
        .bfd
        .as_ref()
        .expect("bfd = { interval, multiplier }");
    assert_eq!((bfd.interval.as_millis(), bfd.multiplier), (100, 3));
    assert_eq!(bgp.hold_time.as_secs(), 9);
    assert_eq!(bgp.connect_retry.as_secs(), 1);
    assert_eq!(t.addresses.len(), 2, "address = [v4, v6]");
    assert_eq!(t.routes.len(), 2, "routes = [plain, {{ prefix, metric }}]");
    // The hub of "Peers at unknown or changing addresses" is a whole configuration.
    let hub = blocks
        .iter()
        .find(|b| b.contains("remote = \"%any\""))
        .expect("the README's %any example");
    let hub = routevpn::config::parse(hub, "README.md")
        .unwrap_or_else(|e| panic!("the README's %any example does not parse: {e}"));
    assert_eq!(hub.tunnels.len(), 2);
    assert!(hub.tunnels.iter().all(|t| t.remote.is_none() && !t.start));
    // Every other toml block (snippets) must parse as TOML at least.
    for b in &blocks {
        if let Err(e) = b.parse::<toml::Table>() {
            panic!("README toml block is not TOML: {e}\n{b}");
        }
    }
}

/// "What the tests prove": every test file and test function the table names exists, so
/// the table cannot point at a renamed or deleted test.
#[test]
fn every_test_the_readme_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .split("## What the tests prove")
        .nth(1)
        .expect("README has a 'What the tests prove' section")
        .split("\n## ")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| claim"))
        .collect();
    assert!(table.len() >= 20, "{} rows", table.len());
    let tests = root.join("crates/routevpn/tests");
    let mut cited = 0;
    for row in table {
        let Some(cell) = row.trim_end_matches('|').rsplit('|').next() else {
            continue;
        };
        let mut last: Option<String> = None;
        for item in cell.split('`').skip(1).step_by(2) {
            let (file, func) = match item.split_once("::") {
                Some((f, n)) => (Some(f), Some(n)),
                None if item.ends_with(".rs") || item.contains('/') => (Some(item), None),
                // A bare function name continues the previous file's list.
                None => (None, Some(item)),
            };
            let path = match file {
                Some(f) if f.starts_with("crates/") => root.join(f),
                Some(f) => tests.join(f),
                None => tests.join(last.clone().expect("a file before a bare test name")),
            };
            assert!(
                path.exists(),
                "README cites {}, which does not exist",
                path.display()
            );
            if let Some(f) = func {
                let src = std::fs::read_to_string(&path).unwrap();
                // `external_routing_*` names a family of tests.
                let prefix = f.trim_end_matches('*');
                assert!(
                    src.contains(&format!("fn {prefix}")),
                    "README cites {}::{f}, which does not exist",
                    path.display()
                );
            }
            if let Some(f) = file {
                last = Some(f.to_string());
            }
            cited += 1;
        }
    }
    assert!(cited >= 20, "only {cited} citations checked");
}
