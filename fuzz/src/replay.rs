//! Every fuzz target on stable, as CI runs it (`cargo test --manifest-path fuzz/Cargo.toml`):
//! its seeds, then deterministic mutations of them, so each target's assertions execute
//! in debug (overflow checks on) without nightly, cargo-fuzz or a sanitizer. A panic
//! fails the test, names the target and leaves the input in `artifacts/` for
//! `cargo +nightly fuzz run <target> <file>`.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mutate::{fnv1a, mutant, XorShift};
use crate::{Target, TARGETS};

/// Mutants per target, or the time below, whichever ends first: the slow stateful
/// targets (`ike_session`, `bgp_speaker`) stop on time, the decoders on the count.
const RUNS: usize = 20_000;
/// A work budget, not a pass/fail threshold: the whole replay stays near a minute.
const BUDGET: Duration = Duration::from_secs(3);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Target names from `fuzz_targets/*.rs`: the list the replay must cover.
fn targets_on_disk() -> BTreeSet<String> {
    let dir = root().join("fuzz_targets");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| {
            p.file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("seeds").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("target {target} has no seeds ({}): {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "target {target}: {} is empty",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let d = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, d)
        })
        .collect()
}

/// Runs one input; on a panic keeps it in `artifacts/` and says where.
fn run(target: &str, f: Target, input: &[u8], what: &str) -> Result<(), String> {
    let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| f(input))) else {
        return Ok(());
    };
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into());
    let dir = root().join("artifacts");
    let path = dir.join(format!("replay-{target}-{:016x}", fnv1a(input)));
    let saved = fs::create_dir_all(&dir)
        .and_then(|()| fs::write(&path, input))
        .map_or_else(
            |e| format!("not saved: {e}"),
            |()| path.display().to_string(),
        );
    Err(format!(
        "target {target} panicked on {what}: {msg}\n  input: {saved}"
    ))
}

/// Seeds first, then mutants until the count or the budget runs out.
fn replay(target: &str, f: Target) -> Result<String, String> {
    let seeds = seeds(target);
    for (path, data) in &seeds {
        run(target, f, data, &format!("seed {}", path.display()))?;
    }
    let corpus: Vec<Vec<u8>> = seeds.into_iter().map(|(_, d)| d).collect();
    let mut rng = XorShift::new(fnv1a(target.as_bytes()));
    let start = Instant::now();
    let mut runs = 0;
    while runs < RUNS && start.elapsed() < BUDGET {
        let input = mutant(&mut rng, &corpus);
        runs += 1;
        run(target, f, &input, &format!("mutant {runs}"))?;
    }
    Ok(format!(
        "{} seeds, {runs} mutants in {:.1} s",
        corpus.len(),
        start.elapsed().as_secs_f64()
    ))
}

#[test]
fn fuzz_targets_bins_and_library_agree() {
    let disk = targets_on_disk();
    let manifest: toml::Table = fs::read_to_string(root().join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("Cargo.toml parses");
    let bins: BTreeSet<String> = manifest["bin"]
        .as_array()
        .expect("[[bin]] list")
        .iter()
        .map(|b| b["name"].as_str().expect("bin name").to_string())
        .collect();
    assert_eq!(
        disk, bins,
        "fuzz_targets/*.rs and Cargo.toml's [[bin]] list differ"
    );
    let lib: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        disk, lib,
        "fuzz_targets/*.rs and src/lib.rs TARGETS differ: a target the replay does not run"
    );
    // Each binary runs the very function the replay runs.
    for t in &disk {
        let src = fs::read_to_string(root().join(format!("fuzz_targets/{t}.rs"))).expect("target");
        assert!(
            src.contains(&format!("routevpn_fuzz::{t}(")),
            "fuzz_targets/{t}.rs does not call routevpn_fuzz::{t}"
        );
    }
}

#[test]
fn every_target_survives_its_seeds_and_their_mutants() {
    let mut failures = Vec::new();
    for name in targets_on_disk() {
        let Some(&(_, f)) = TARGETS.iter().find(|(n, _)| *n == name) else {
            failures.push(format!("target {name} is not in src/lib.rs TARGETS"));
            continue;
        };
        // Unbuffered, before the run: if a target aborts the process (stack overflow,
        // out of memory), the log's last line names it.
        eprint!("{name}: ");
        match replay(&name, f) {
            Ok(line) => eprintln!("{line}"),
            Err(e) => {
                eprintln!("FAILED");
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
