//! What spore and sporectl give `man` and the shells: pages groff reads
//! without a warning, every page a page refers to, and completion scripts
//! a real bash runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

fn spore(args: &[&str]) -> std::process::Output {
    Command::new(common::spore_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn spore_has_a_manual_page_groff_reads_cleanly() {
    let page = spore(&["man"]);
    assert!(page.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spore.8");
    std::fs::write(&file, &page.stdout).unwrap();
    let groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .expect("groff (man-db's dependency)");
    assert!(groff.status.success());
    assert!(
        groff.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&groff.stderr)
    );
    let text = String::from_utf8_lossy(&page.stdout);
    assert!(text.starts_with(".TH SPORE 8"), "{text}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "COMMANDS",
        "EXIT STATUS",
        "FILES",
        "SEE ALSO",
    ] {
        assert!(text.contains(&format!(".SH {section}")), "{section}");
    }
}

#[test]
fn spore_completes_its_commands_in_bash_and_suggests_a_misspelt_one() {
    let script = String::from_utf8(spore(&["completions", "bash"]).stdout).unwrap();
    let run = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{script}\nCOMP_WORDS=(spore sta); COMP_CWORD=1; _spore; echo \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&run.stdout);
    assert_eq!(offered.trim(), "status start", "{offered}");
    for shell in ["zsh", "fish"] {
        let out = spore(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let unknown = spore(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
    let typo = spore(&["stauts", "web"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("did you mean `status`?"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
}

#[test]
fn every_page_sporectls_manual_refers_to_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::sporectl_bin())
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let page = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for reference in page.split_whitespace().filter(|w| w.ends_with("(1)")) {
            let name = reference.replace('\\', "").replace("(1)", "");
            if name.starts_with("sporectl") {
                assert!(
                    dir.path().join(format!("{name}.1")).exists(),
                    "{name}(1) is missing"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} references");
}
