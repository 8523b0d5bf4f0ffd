//! `[sandbox]` under `spore run`, with real accounts the test makes
//! (`useradd`, `groupadd`): a service runs as its user with its groups,
//! its state directory and credentials are its own (another service's
//! user cannot read them), `no_new_privileges` stops a setuid binary from
//! giving it root, `capabilities` lets a non-root service bind a
//! privileged port that it cannot bind without, and `limit_*` sets its
//! resource limits; the same through the spawner.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Spore;
use serde_json::json;

/// A user (and its group of the same name) made for one test, removed
/// when dropped.
struct Account {
    name: String,
}

impl Account {
    fn new(tag: &str) -> Account {
        let name = format!("spt{}{tag}", std::process::id() % 100_000);
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--shell", "/usr/sbin/nologin", &name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
        Account { name }
    }

    fn id(&self, flag: &str) -> String {
        let out = Command::new("id")
            .args([flag, &self.name])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        // (userdel takes the user's own group with it.)
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A group made for one test, removed when dropped.
struct Group(String);

impl Group {
    fn new(tag: &str) -> Group {
        let name = format!("sptg{}{tag}", std::process::id() % 100_000);
        assert!(Command::new("groupadd")
            .args(["--system", &name])
            .status()
            .unwrap()
            .success());
        Group(name)
    }

    fn gid(&self) -> String {
        let out = Command::new("getent")
            .args(["group", &self.0])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split(':')
            .nth(2)
            .unwrap()
            .to_owned()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

/// The lines `name` wrote, joined.
fn output(spore: &Spore, name: &str) -> String {
    let logs = spore.call("service.logs", json!({ "name": name })).unwrap();
    logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] != "spore")
        .map(|l| l["text"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_output(spore: &Spore, name: &str, needle: &str) -> String {
    spore.wait_for(
        &format!("{name} to say {needle}"),
        Duration::from_secs(20),
        |s| output(s, name).contains(needle),
    );
    output(spore, name)
}

/// A test directory other users can pass through (a tempdir is 0700).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn write_service(dir: &Path, name: &str, text: &str) {
    let etc = dir.join("etc/services");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join(format!("{name}.toml")), text).unwrap();
}

/// `spore run` on `dir`, its console in `DIR/spore.err`; every service
/// through the spawner when `spawner`.
fn start(dir: tempfile::TempDir, spawner: bool) -> Spore {
    let console = std::fs::File::create(dir.path().join("spore.err")).unwrap();
    let env: &[(&str, &str)] = if spawner {
        &[("SPORE_SPAWNER", "always")]
    } else {
        &[]
    };
    Spore::start_with_env(dir, Stdio::from(console), env)
}

/// A privileged port nothing listens on now.
fn free_privileged_port() -> u16 {
    let start = (std::process::id() % 400) as u16;
    (0..400)
        .map(|i| 600 + (start + i) % 400)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .unwrap()
}

fn identity_and_privileges(spawner: bool) {
    let web = Account::new(if spawner { "ws" } else { "w" });
    let other = Account::new(if spawner { "os" } else { "o" });
    let extra = Group::new(if spawner { "s" } else { "d" });
    let dir = open_dir();
    let state = dir.path().join("state-web");
    // A setuid-root copy of `id`: what no_new_privileges must defuse.
    let setuid_id = dir.path().join("id-setuid");
    std::fs::copy("/usr/bin/id", &setuid_id).unwrap();
    std::fs::set_permissions(&setuid_id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // A secret web reads as a credential, and other must not.
    let secrets = dir.path().join("state/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("token"), "s3cret").unwrap();
    std::fs::set_permissions(
        secrets.join("token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let port = free_privileged_port();
    let bind = format!(
        "perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0) or die; bind(S, sockaddr_in({port}, inet_aton(\\\"127.0.0.1\\\"))) or die \\\"bind: $!\\\\n\\\"; print \\\"bound\\\\n\\\"'"
    );
    write_service(
        dir.path(),
        "web",
        &format!(
            "[service]\nname = \"web\"\nexec = [\"/bin/sh\", \"-c\", \"echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo setuid euid=$({setuid} -u); echo nofile=$(ulimit -n); ls -ld {state} | cut -d' ' -f3; cat $CREDENTIALS_DIRECTORY/token; echo; echo creds=$CREDENTIALS_DIRECTORY; {bind}; exec sleep 1000\"]\nstate_dir = \"{state}\"\n\n[credentials]\nload = [\"token\"]\n\n[resources]\nlimit_nofile = 100\n\n[sandbox]\nuser = \"{user}\"\nsupplementary_groups = [\"{extra}\"]\ncapabilities = [\"CAP_NET_BIND_SERVICE\"]\n",
            setuid = setuid_id.display(),
            state = state.display(),
            user = web.name,
            extra = extra.0,
        ),
    );
    // The same user, no capability, and no_new_privileges turned off: the
    // port is refused, and the setuid binary does run as root (so the
    // check above means something on this machine).
    write_service(
        dir.path(),
        "bare",
        &format!(
            "[service]\nname = \"bare\"\nexec = [\"/bin/sh\", \"-c\", \"echo setuid euid=$({setuid} -u); {bind}; exec sleep 1000\"]\n\n[sandbox]\nuser = \"{user}\"\nno_new_privileges = false\n",
            setuid = setuid_id.display(),
            user = web.name,
        ),
    );
    let spore = start(dir, spawner);
    let said = wait_output(&spore, "web", "bound");
    let (uid, gid) = (web.id("-u"), web.id("-g"));
    assert!(
        said.contains(&format!("uid={uid} gid={gid} groups={gid} {}", extra.gid())),
        "{said}"
    );
    assert!(said.contains(&format!("setuid euid={uid}")), "{said}");
    assert!(said.contains("nofile=100"), "{said}");
    assert!(
        said.contains(&format!("\n{}\n", web.name)),
        "state_dir owned by it: {said}"
    );
    assert!(said.contains("s3cret"), "{said}");
    let bare = wait_output(&spore, "bare", "bind: ");
    assert!(bare.contains("setuid euid=0"), "{bare}");
    assert!(bare.contains("bind: Permission denied"), "{bare}");
    // Another service's user cannot read web's credentials.
    let creds = said
        .lines()
        .find_map(|l| l.strip_prefix("creds="))
        .unwrap()
        .to_owned();
    std::fs::write(
        spore.path("etc/services/peek.toml"),
        format!(
            "[service]\nname = \"peek\"\noneshot = true\nexec = [\"/bin/sh\", \"-c\", \"cat {creds}/token || echo refused\"]\n\n[sandbox]\nuser = \"{}\"\n",
            other.name
        ),
    )
    .unwrap();
    spore.call("node.reload", json!({})).unwrap();
    let peek = wait_output(&spore, "peek", "refused");
    assert!(peek.contains("Permission denied"), "{peek}");
    assert!(!peek.contains("s3cret"), "{peek}");
}

#[test]
fn a_service_runs_as_its_user_with_its_groups_limits_and_capabilities() {
    identity_and_privileges(false);
}

#[test]
fn the_spawner_starts_a_service_as_its_user_too() {
    identity_and_privileges(true);
}

#[test]
fn an_unknown_user_fails_the_start_and_names_it() {
    let dir = open_dir();
    write_service(
        dir.path(),
        "ghost",
        "[service]\nname = \"ghost\"\nexec = [\"sleep\", \"1000\"]\n\n[sandbox]\nuser = \"no-such-user-here\"\n",
    );
    write_service(
        dir.path(),
        "fine",
        "[service]\nname = \"fine\"\nexec = [\"sleep\", \"1000\"]\n",
    );
    let spore = Spore::start_in(dir);
    spore.wait_state("fine", "ready");
    spore.wait_for("ghost's start to fail", Duration::from_secs(20), |s| {
        s.stderr()
            .contains("user `no-such-user-here` is not in /etc/passwd")
    });
    assert_ne!(spore.state("ghost"), "ready");
}

/// A service in a mount namespace of its own: a private /tmp, the whole
/// filesystem read-only but its state directory (and /dev), a path made
/// read-only and a directory hidden; nothing of it reaches the host.
fn mounts(spawner: bool) {
    // Not under /tmp: the service's private /tmp would hide it (as
    // systemd's PrivateTmp= does).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tag = format!("{}-{}", std::process::id(), u8::from(spawner));
    let state = dir.path().join("state-walled");
    let data = dir.path().join("data");
    let hidden = dir.path().join("hidden");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(hidden.join("secret"), "hidden-file-visible").unwrap();
    let host_tmp = std::path::PathBuf::from(format!("/tmp/spore-host-{tag}"));
    std::fs::write(&host_tmp, "").unwrap();
    let probe = format!("/etc/spore-strict-probe-{tag}");
    write_service(
        dir.path(),
        "walled",
        &format!(
            "[service]\nname = \"walled\"\nexec = [\"/bin/sh\", \"-c\", \"touch /tmp/inside-{tag} /var/tmp/inside-{tag}; echo tmp=$(ls -A /tmp | wc -l) var-tmp=$(ls -A /var/tmp | wc -l); touch {probe} 2>&1; touch {state}/ok && echo state-writable; echo x > /dev/null && echo devnull-writable; touch {data}/probe 2>&1; cat {hidden}/secret 2>&1; echo hidden=$(ls -A {hidden} | wc -l); echo done; exec sleep 1000\"]\nstate_dir = \"{state}\"\n\n[sandbox]\nprivate_tmp = true\nprotect_system = \"strict\"\nread_only_paths = [\"{data}\"]\ninaccessible_paths = [\"{hidden}\"]\n",
            state = state.display(),
            data = data.display(),
            hidden = hidden.display(),
        ),
    );
    // A path that is not there fails its own start, named.
    write_service(
        dir.path(),
        "missing",
        "[service]\nname = \"missing\"\nexec = [\"sleep\", \"1000\"]\n\n[sandbox]\nread_only_paths = [\"/no/such/path\"]\n",
    );
    let spore = start(dir, spawner);
    let said = wait_output(&spore, "walled", "done");
    let host_wrote = Path::new(&probe).exists();
    let _ = std::fs::remove_file(&probe);
    let _ = std::fs::remove_file(&host_tmp);
    assert!(
        !host_wrote,
        "the read-only root let {probe} through: {said}"
    );
    assert!(
        said.contains("tmp=1 var-tmp=1"),
        "its own /tmp and /var/tmp: {said}"
    );
    assert!(
        said.contains(&format!(
            "touch: cannot touch '{probe}': Read-only file system"
        )),
        "{said}"
    );
    assert!(said.contains("state-writable"), "{said}");
    assert!(said.contains("devnull-writable"), "{said}");
    assert!(said.contains("probe': Read-only file system"), "{said}");
    assert!(!said.contains("hidden-file-visible"), "{said}");
    assert!(said.contains("hidden=0"), "{said}");
    // The host is untouched: its /tmp, the read-only path still writable.
    assert!(!Path::new(&format!("/tmp/inside-{tag}")).exists());
    assert!(!Path::new(&format!("/var/tmp/inside-{tag}")).exists());
    std::fs::write(spore.path("data/host-can-write"), "").unwrap();
    spore.wait_for("missing's start to fail", Duration::from_secs(20), |s| {
        s.stderr()
            .contains("read_only_paths: /no/such/path does not exist")
    });
}

#[test]
fn a_sandboxed_service_sees_its_own_filesystem() {
    mounts(false);
}

#[test]
fn the_spawner_builds_the_same_sandbox() {
    mounts(true);
}

/// A service with its own user runs the artifact it pins: its
/// `$ARTIFACTS_DIRECTORY` is its own, and the way to the store's files is
/// passable for it, while the state directory stays unlistable and what
/// else is in it stays closed to it (the node key, the secrets).
#[test]
fn a_service_with_its_own_user_runs_its_pinned_artifact() {
    let user = Account::new("art");
    let dir = open_dir();
    let program = dir.path().join("tool.sh");
    std::fs::write(
        &program,
        "#!/bin/sh\necho artifact ran as $(id -un)\nls \"$ARTIFACTS_DIRECTORY\"\nls /proc/self/cwd/../state 2>&1 | head -1\ncat \"$STATE\"/node_key 2>&1 | head -1\necho looked\nexec sleep 1000\n",
    )
    .unwrap();
    let digest = common::sha256sum(&program);
    // The state directory as spore makes it (0700), the store in it.
    let store = dir.path().join("state/artifacts/sha256");
    std::fs::create_dir_all(&store).unwrap();
    for closed in ["state", "state/artifacts", "state/artifacts/sha256"] {
        let path = dir.path().join(closed);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::copy(&program, store.join(&digest)).unwrap();
    std::fs::set_permissions(store.join(&digest), std::fs::Permissions::from_mode(0o444)).unwrap();
    write_service(
        dir.path(),
        "tool",
        &format!(
            "[service]\nname = \"tool\"\nexec = [\"$ARTIFACTS_DIRECTORY/tool\"]\ndir = \"{}\"\n\n[service.env]\nSTATE = \"{}\"\n\n[sandbox]\nuser = \"{}\"\n\n[[artifacts]]\nname = \"tool\"\nsha256 = \"{digest}\"\nmode = \"0755\"\n",
            dir.path().join("etc").display(),
            dir.path().join("state").display(),
            user.name
        ),
    );
    let spore = start(dir, false);
    let said = wait_output(&spore, "tool", "looked");
    assert!(
        said.contains(&format!("artifact ran as {}", user.name)),
        "{said}"
    );
    // Its own directory it may list; the state directory and the node key
    // it may not read.
    assert!(said.contains("\ntool\n"), "{said}");
    assert!(said.contains("state': Permission denied"), "{said}");
    assert!(said.contains("node_key: Permission denied"), "{said}");
    assert!(!said.contains("BEGIN OPENSSH"), "{said}");
    let state = spore.path("state");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o711, "the state directory: passable, not listable");
    // Nothing in it is readable or writable by others, and only the ways
    // to the artifacts are passable.
    for entry in std::fs::read_dir(&state).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode();
        let passable =
            ["artifacts", "service-artifacts"].contains(&entry.file_name().to_str().unwrap());
        assert_eq!(
            mode & 0o007,
            if passable { 0o001 } else { 0 },
            "{} is open to others: {mode:o}",
            entry.path().display()
        );
    }
}
