//! Embeds the git commit in `routevpn --version` (`ROUTEVPN_GIT_COMMIT`): the short hash
//! with `-dirty` when tracked files have changes, or `unknown` outside a git checkout
//! (a source tarball, `cargo package`).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Only existing paths: cargo reruns a build script on every build for a missing one.
fn rerun_if_changed(p: &Path) {
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=ROUTEVPN_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");

    // Rerun when HEAD moves (HEAD itself, the branch ref it names, packed refs), when
    // the index changes, and when the workspace's sources change (the dirty flag).
    let abs = |what: &str| {
        git(&["rev-parse", "--path-format=absolute", what]).map(std::path::PathBuf::from)
    };
    let (Some(git_dir), Some(common)) = (abs("--git-dir"), abs("--git-common-dir")) else {
        return;
    };
    let head = git_dir.join("HEAD");
    rerun_if_changed(&head);
    rerun_if_changed(&git_dir.join("index"));
    rerun_if_changed(&common.join("packed-refs"));
    if let Some(r) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        // A linked worktree keeps its branch refs in the common directory.
        rerun_if_changed(&git_dir.join(&r));
        rerun_if_changed(&common.join(&r));
    }
    rerun_if_changed(Path::new("..")); // crates/: every workspace crate's sources
}
