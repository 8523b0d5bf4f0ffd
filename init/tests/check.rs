//! `spore check` run as a real process on real directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn spore_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spore"))
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services")
}

#[test]
fn examples_plan_install_mycelium_then_mycelium_then_call_home() {
    let out = spore_check(&[examples().to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("start: install-mycelium → mycelium → call-home"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn bad_directory_prints_every_error_with_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let daemon = |name: &str, deps: &str| {
        format!("[service]\nname = \"{name}\"\nexec = \"/bin/sleep 1\"\n[dependencies]\n{deps}\n")
    };
    fs::write(d.join("a.toml"), daemon("a", "requires = [\"b\"]")).unwrap();
    fs::write(d.join("b.toml"), daemon("b", "requires = [\"a\"]")).unwrap();
    fs::write(d.join("typo.toml"), daemon("typo", "require = [\"ok\"]")).unwrap();
    fs::write(
        d.join("lost.toml"),
        daemon("lost", "requires = [\"ghost\"]"),
    )
    .unwrap();
    fs::write(d.join("wrong.toml"), daemon("right", "")).unwrap();
    fs::write(d.join("ok.toml"), daemon("ok", "")).unwrap();
    fs::write(d.join("ok2.toml"), daemon("ok2", "after = [\"ok\"]")).unwrap();

    let out = spore_check(&[d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 4, "{stderr}");
    for (error, (file, line)) in
        errors
            .iter()
            .zip([("a", 5), ("lost", 5), ("typo", 5), ("wrong", 2)])
    {
        let location = format!("{}/{file}.toml:{line}:", d.display());
        assert!(error.contains(&location), "{error} should name {location}");
    }
    assert!(stderr.contains("dependency cycle: a -> b -> a"));
    assert!(stderr.contains("did you mean `requires`?"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("start: ok → ok2"),
        "good services still planned: {stdout}"
    );
}

#[test]
fn json_output_carries_plan_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("x.toml"),
        "[service]\nname = \"x\"\nexec = \"/bin/true\"\nstatus = \"strat\"\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("y.toml"),
        "[service]\nname = \"y\"\nexec = \"/bin/true\"\n",
    )
    .unwrap();
    let out = spore_check(&[dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["services"], serde_json::json!(["y"]));
    assert_eq!(doc["start"], serde_json::json!([["y"]]));
    assert_eq!(doc["errors"][0]["line"], 4);
    assert_eq!(doc["errors"][0]["column"], 10);
    assert!(doc["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `start`?"));

    let ok = spore_check(&[examples().to_str().unwrap(), "--json"]);
    assert!(ok.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(
        doc["stop"],
        serde_json::json!([["call-home"], ["mycelium"], ["install-mycelium"]])
    );
}

#[test]
fn missing_directory_and_bad_usage_fail_clearly() {
    let out = spore_check(&["/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/dir: No such file"),
        "{stderr}"
    );
    let usage = spore_check(&[]);
    assert_eq!(usage.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&usage.stderr);
    assert!(stderr.contains("`check` needs a path"), "{stderr}");
    assert!(stderr.contains("spore --help"), "{stderr}");
}

#[test]
fn check_takes_files_directories_and_spore_toml() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services");
    fs::create_dir(&services).unwrap();
    fs::write(
        services.join("db.toml"),
        "[service]\nname = \"db\"\nexec = \"sleep 9\"\n",
    )
    .unwrap();
    let web = dir.path().join("web.toml");
    fs::write(
        &web,
        "[service]\nname = \"web\"\nexec = \"sleep 9\"\n[dependencies]\nrequires = [\"db\"]\n",
    )
    .unwrap();
    // One file alone: it requires a service it is not given.
    let alone = spore_check(&[web.to_str().unwrap()]);
    assert_eq!(alone.status.code(), Some(1));
    // With the directory that holds its dependency: valid, planned together.
    let together = spore_check(&[web.to_str().unwrap(), services.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&together.stdout);
    assert!(
        together.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&together.stderr)
    );
    assert!(stdout.contains("start: db → web"), "{stdout}");
    // A name that does not match its file is refused here as on deploy.
    let renamed = dir.path().join("other.toml");
    fs::write(&renamed, "[service]\nname = \"web\"\nexec = \"sleep 9\"\n").unwrap();
    let out = spore_check(&[renamed.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "other.toml:2:8: service name `web` does not match its file name `other.toml`"
        ),
        "{stderr}"
    );
    // spore.toml: a typo in [rpc] names file, line, column and the key meant.
    let node = dir.path().join("spore.toml");
    fs::write(
        &node,
        "[rpc]\nlisten = [\"mycelium\"]\nmax_conections = 8\n",
    )
    .unwrap();
    let out = spore_check(&[node.to_str().unwrap(), services.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:1: unknown field `max_conections`",
            node.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `max_connections`?"),
        "{stderr}"
    );
    // Every error at once, in the file's order, as cargo reports them.
    fs::write(
        &node,
        "[rpc]\nmax_conections = 8\nhandshake_timeout_ms = \"5\"\n[control]\nidle_timeout_ms = \"1m\"\nmax_connections = -1\n",
    )
    .unwrap();
    let out = spore_check(&[node.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = |line: &str| stderr.find(&format!("{}:{line}", node.display()));
    let (Some(first), Some(second), Some(third)) = (at("2:1:"), at("3:24:"), at("6:19:")) else {
        panic!("three errors expected: {stderr}");
    };
    assert!(first < second && second < third, "{stderr}");
    assert!(stderr.contains("has no unit"), "{stderr}");
    assert!(
        !stderr.contains(":5:"),
        "a time span is a valid duration: {stderr}"
    );
    fs::write(
        &node,
        "[rpc]\nlisten = [\"mycelium\"]\nmax_connections = 8\n",
    )
    .unwrap();
    let out = spore_check(&[node.to_str().unwrap(), services.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn secrets_in_the_environment_are_valid_but_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("old.toml"),
        "[service]\nname = \"old\"\nexec = \"sleep 1\"\n\n[secrets]\nDB_PASSWORD = \"db-password\"\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("new.toml"),
        "[service]\nname = \"new\"\nexec = \"sleep 1\"\n\n[credentials]\nload = [\"db-password\"]\n",
    )
    .unwrap();
    let out = spore_check(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "a warning is not an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warning: ")
            && stderr.contains("old.toml")
            && stderr.contains("[credentials] load = [\"db-password\"]"),
        "{stderr}"
    );
    let json = spore_check(&[dir.path().to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(report["ok"], true);
}
