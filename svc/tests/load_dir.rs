//! Loading whole directories: good files survive bad ones, and the checks
//! that span files (missing dependencies, cycles) reject just what they must.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};

use svc::service::Kind;
use svc::{load_dir, ErrorKind};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

fn daemon(name: &str, dependencies: &str) -> String {
    format!("[service]\nname = \"{name}\"\nexec = \"/bin/sleep 100\"\n\n[dependencies]\n{dependencies}\n")
}

#[test]
fn seed_services_load_unchanged_and_plan_in_order() {
    let report = load_dir(&repo_path("examples/services")).unwrap();
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert_eq!(
        report.plan().start,
        [
            vec!["install-mycelium"],
            vec!["mycelium"],
            vec!["call-home"]
        ]
    );
    let mycelium = report
        .services
        .iter()
        .find(|s| s.name == "mycelium")
        .unwrap();
    assert_eq!(
        mycelium.health.len(),
        1,
        "the [[actions]] check is a health check"
    );
    let call_home = report
        .services
        .iter()
        .find(|s| s.name == "call-home")
        .unwrap();
    assert_eq!(call_home.kind, Kind::Oneshot);
    assert_eq!(
        call_home.env.get("CALL_HOME_URL").map(String::as_str),
        Some("https://beacon.znzfreezone.net/api/v1/nodes/register")
    );
}

#[test]
fn zinit_style_directory_with_targets_loads_and_plans() {
    let report = load_dir(&repo_path("svc/tests/fixtures/zinit-style")).unwrap();
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let plan = report.plan();
    assert_eq!(
        plan.start,
        [
            vec!["apache", "sysinit"],
            vec!["devices", "early-fs", "entropy"],
            vec!["base"],
            vec!["rescan", "web"],
            vec!["volumes"],
        ]
    );
    let base = report.services.iter().find(|s| s.name == "base").unwrap();
    assert_eq!(base.kind, Kind::Target);
}

#[test]
fn four_kinds_of_error_beside_good_files_are_each_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a", &daemon("a", "requires = [\"b\"]"));
    write(d, "b", &daemon("b", "after = [\"c\"]"));
    write(d, "c", &daemon("c", "wants = [\"a\"]"));
    write(d, "typo", &daemon("typo", "require = [\"good\"]"));
    write(d, "lonely", &daemon("lonely", "requires = [\"ghost\"]"));
    write(d, "misnamed", &daemon("other-name", ""));
    write(d, "good", &daemon("good", ""));
    write(
        d,
        "better",
        &daemon("better", "requires = [\"good\"]\nwants = [\"absent\"]"),
    );

    let report = load_dir(d).unwrap();
    let messages: Vec<String> = report
        .errors
        .iter()
        .map(|e| e.to_string().replace(&format!("{}/", d.display()), ""))
        .collect();
    assert_eq!(
        messages,
        [
            "a.toml:6:13: dependency cycle: a -> b -> c -> a",
            "lonely.toml:6:13: `ghost` in [dependencies].requires is not a known service",
            "misnamed.toml:2:8: service name `other-name` does not match its file name `misnamed.toml`",
            "typo.toml:6:1: unknown key `require` in [dependencies]; did you mean `requires`?",
        ]
    );
    let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["better", "good"]);
    assert_eq!(report.plan().start, [vec!["good"], vec!["better"]]);
}

#[test]
fn rejection_cascades_to_services_that_require_the_rejected_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "broken", "[service]\nname = \"broken\"\n");
    write(d, "middle", &daemon("middle", "requires = [\"broken\"]"));
    write(d, "top", &daemon("top", "after = [\"middle\"]"));
    write(d, "tolerant", &daemon("tolerant", "wants = [\"broken\"]"));

    let report = load_dir(d).unwrap();
    let kinds: Vec<&ErrorKind> = report.errors.iter().map(|e| &e.kind).collect();
    assert_eq!(kinds.len(), 3, "{:#?}", report.errors);
    assert!(matches!(kinds[0], ErrorKind::Missing { field: "exec", .. }));
    assert!(
        matches!(kinds[1], ErrorKind::MissingDependency { dependency, rejected: true, .. } if dependency == "broken")
    );
    assert!(
        matches!(kinds[2], ErrorKind::MissingDependency { dependency, relation: "after", .. } if dependency == "middle")
    );
    let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["tolerant"]);
}

#[test]
fn services_behind_a_cycle_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "x", &daemon("x", "requires = [\"y\"]"));
    write(d, "y", &daemon("y", "requires = [\"x\"]"));
    write(d, "z", &daemon("z", "requires = [\"x\"]"));
    let report = load_dir(d).unwrap();
    assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
    assert!(report.errors[0]
        .to_string()
        .ends_with("dependency cycle: x -> y -> x"));
    assert!(report.errors[1]
        .to_string()
        .contains("`x` in [dependencies].requires is not a known service (it was rejected)"));
    assert!(report.services.is_empty());
}

#[test]
fn files_that_are_not_toml_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "one", &daemon("one", ""));
    fs::write(d.join("README"), "not a service").unwrap();
    fs::write(d.join("one.toml.bak"), "garbage").unwrap();
    // (A directory named *.toml is an error, not ignored: see
    // entries_that_are_not_regular_files_are_errors_naming_them.)
    let report = load_dir(d).unwrap();
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert_eq!(report.services.len(), 1);
}

#[test]
fn missing_directory_is_an_error_naming_it() {
    let error = load_dir(Path::new("/nonexistent/spore/services")).unwrap_err();
    assert!(error
        .to_string()
        .starts_with("cannot read service directory /nonexistent/spore/services:"));
}

#[test]
fn entries_that_are_not_regular_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ok", &daemon("ok", ""));
    let status = std::process::Command::new("mkfifo")
        .arg(d.join("fifo.toml"))
        .status()
        .unwrap();
    assert!(status.success());
    fs::create_dir(d.join("dir.toml")).unwrap();
    std::os::unix::fs::symlink("loop.toml", d.join("loop.toml")).unwrap();
    std::os::unix::fs::symlink("nowhere.toml", d.join("gone.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.toml")).unwrap();
    // Reading the FIFO or /dev/zero would never end: this returns at once.
    let report = load_dir(d).unwrap();
    assert_eq!(report.services.len(), 1, "{:?}", report.errors);
    let said: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    for (file, reason) in [
        ("dir.toml", "a directory"),
        ("fifo.toml", "a FIFO"),
        ("gone.toml", "a symlink that leads nowhere"),
        ("loop.toml", "a symlink that leads nowhere"),
        ("zero.toml", "a device"),
    ] {
        assert!(
            said.iter().any(|e| e.contains(file) && e.contains(reason)),
            "{file}: {reason} in {said:#?}"
        );
    }
    assert!(report
        .errors
        .iter()
        .all(|e| matches!(e.kind, ErrorKind::Read(_))));
}

#[test]
fn the_deployed_layer_replaces_adds_and_masks_image_services() {
    let root = tempfile::tempdir().unwrap();
    let (image, layer) = (root.path().join("image"), root.path().join("layer"));
    fs::create_dir_all(&image).unwrap();
    fs::create_dir_all(&layer).unwrap();
    write(&image, "a", &daemon("a", ""));
    write(&image, "b", &daemon("b", ""));
    write(&image, "keep", &daemon("keep", ""));
    write(&layer, "b", &daemon("b", "after = [\"keep\"]"));
    write(&layer, "c", &daemon("c", "requires = [\"b\"]"));
    fs::write(layer.join(svc::load::mask_name("a")), "").unwrap();
    let report = svc::load_layers(&image, &layer).unwrap();
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let from: Vec<(String, PathBuf)> = report
        .services
        .iter()
        .map(|s| (s.name.clone(), s.file.parent().unwrap().to_path_buf()))
        .collect();
    assert_eq!(
        from,
        [
            ("b".to_owned(), layer.clone()),
            ("c".to_owned(), layer.clone()),
            ("keep".to_owned(), image.clone()),
        ],
        "a is masked, b deployed over the image's, c deployed, keep from the image"
    );
    // No layer at all (a first boot): the image alone.
    let alone = svc::load_layers(&image, &root.path().join("none")).unwrap();
    assert_eq!(alone.services.len(), 3);
}

/// `daemon(name, deps)` parsed.
fn parsed(name: &str, dependencies: &str) -> svc::service::Service {
    svc::parse::parse_service(
        Path::new(&format!("{name}.toml")),
        &daemon(name, dependencies),
    )
    .unwrap()
}

#[test]
fn a_deploy_fits_when_what_it_names_exists_and_no_path_comes_back_to_it() {
    let a = parsed("a", "");
    let b = parsed("b", "requires = [\"a\"]");
    let c = parsed("c", "after = [\"b\"]\nwants = [\"ghost\"]");
    let others: std::collections::HashMap<&str, &svc::service::Service> =
        [(&a, "a"), (&b, "b"), (&c, "c")]
            .into_iter()
            .map(|(s, n)| (n, s))
            .collect();
    // Every case agrees with the whole check.
    let cases = [
        ("d", "requires = [\"c\"]", true),
        ("d", "wants = [\"nobody\"]", true),
        ("d", "requires = [\"nobody\"]", false),
        ("d", "conflicts = [\"nobody\"]", false),
        ("d", "after = [\"d\"]", false),
        // Replacing a with one that orders after c closes a -> c -> b -> a.
        ("a", "after = [\"c\"]", false),
        ("a", "wants = [\"c\"]", false),
        ("a", "conflicts = [\"c\"]", true),
    ];
    for (name, deps, fits) in cases {
        let service = parsed(name, deps);
        let mut rest: std::collections::HashMap<&str, &svc::service::Service> = others.clone();
        rest.remove(name);
        assert_eq!(
            svc::load::fits_with(&rest, &service),
            fits,
            "{name}: {deps}"
        );
        let mut all: Vec<svc::service::Service> = rest.values().map(|s| (*s).clone()).collect();
        all.push(service);
        let whole = svc::load::check_together(all, Vec::new(), Default::default());
        assert_eq!(
            whole.errors.is_empty(),
            fits,
            "{name}: {deps}: {:?}",
            whole.errors
        );
    }
}

#[test]
fn two_services_on_one_address_keep_the_first_and_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listening = |name: &str, listen: &str| {
        format!("[service]\nname = \"{name}\"\nexec = \"/bin/sleep 100\"\n\n[[sockets]]\nlisten = \"{listen}\"\n")
    };
    write(d, "alpha", &listening("alpha", "tcp:127.0.0.1:8080"));
    write(d, "beta", &listening("beta", "tcp:127.0.0.1:8080"));
    write(d, "gamma", &listening("gamma", "tcp:127.0.0.1:8081"));
    write(
        d,
        "needs-beta",
        &daemon("needs-beta", "requires = [\"beta\"]"),
    );
    let report = load_dir(d).unwrap();
    let shown: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(
        shown[0].ends_with("beta.toml:6:10: `listen` in [[sockets]]: tcp:127.0.0.1:8080 is service `alpha`'s already; two services cannot listen on one address"),
        "{shown:#?}"
    );
    assert!(shown[1].contains("`beta`"), "{shown:#?}");
    let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["alpha", "gamma"]);
    // A deploy checks the same, and agrees with the whole check.
    let parse = |name: &str, listen: &str| {
        svc::parse::parse_service(Path::new(&format!("{name}.toml")), &listening(name, listen))
            .unwrap()
    };
    let alpha = parse("alpha", "tcp:127.0.0.1:8080");
    let others: std::collections::HashMap<&str, &svc::service::Service> =
        [("alpha", &alpha)].into_iter().collect();
    for (listen, fits) in [("tcp:127.0.0.1:8080", false), ("tcp:127.0.0.1:8082", true)] {
        let beta = parse("beta", listen);
        assert_eq!(svc::load::fits_with(&others, &beta), fits, "{listen}");
        let whole =
            svc::load::check_together(vec![alpha.clone(), beta], Vec::new(), Default::default());
        assert_eq!(whole.errors.is_empty(), fits, "{listen}");
    }
    // Replacing alpha with itself on the same address fits (it is not
    // among the others).
    assert!(svc::load::fits_with(&Default::default(), &alpha));
}
