//! One service file's text to a [`Service`], or every error in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::error::{ConfigError, ErrorKind};
use crate::exec::{Command, SplitError};
use crate::section::{Context, Section};
use crate::service::{Class, Dependencies, Kind, Lifecycle, Logging, Service, Status};

mod artifacts;
mod health;
mod lifecycle;
mod resources;
pub mod sandbox;
mod sockets;
mod values;

pub use artifacts::BEACON;
use health::{read_action, read_health};
use lifecycle::{read_dependencies, read_lifecycle, read_logging, read_signal_named};
pub use lifecycle::{signal_number, MAX_BUFFER_LINES};
pub use sockets::{parse_endpoint, MAX_SOCKETS};
pub use values::is_valid_name;
use values::{choice, read_path};

/// Parses the service file `file` whose contents are `text`. The service's
/// name must equal the file's stem. Returns every error found, in file order.
pub fn parse_service(file: &Path, text: &str) -> Result<Service, Vec<ConfigError>> {
    let ctx = Context::new(file, text);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            ctx.error(&span, ErrorKind::Syntax(error.message().trim().to_owned()));
            return Err(ctx.into_errors());
        }
    };
    let mut top = Section::new(&ctx, root.get_ref(), root.span(), "the top level".into());
    let service = read_service(&mut top, file);
    top.finish();
    match service {
        Some(service) if ctx.is_clean() => Ok(service),
        _ => Err(ctx.into_errors()),
    }
}

fn read_service(top: &mut Section<'_, '_, '_>, file: &Path) -> Option<Service> {
    let service_table = top.table("service");
    let target_table = top.table("target");
    let (mut head, kind) = match (service_table, target_table) {
        (Some(head), None) => (head, None),
        (None, Some(head)) => (head, Some(Kind::Target)),
        (Some(_), Some(second)) => {
            second
                .ctx()
                .error(&second.span(), ErrorKind::NoServiceSection);
            return None;
        }
        (None, None) => {
            top.ctx().error(&(0..0), ErrorKind::NoServiceSection);
            // The other sections are fine by themselves; do not call them unknown.
            for section in [
                "dependencies",
                "lifecycle",
                "health",
                "actions",
                "logging",
                "secrets",
                "credentials",
                "artifacts",
                "resources",
                "sandbox",
                "sockets",
            ] {
                top.value(section);
            }
            return None;
        }
    };

    let name = read_name(&mut head, file);
    let description = head.string("description").map(|d| d.value);
    let critical = head.flag("critical");
    let mut state_dirs = Vec::new();
    let (kind, command, status, class, dir, env, ports, kill_others, process_filters) =
        if let Some(kind) = kind {
            head.finish();
            let (status, class) = (Some(Status::default()), Class::default());
            (
                kind,
                None,
                status,
                class,
                None,
                BTreeMap::new(),
                Vec::new(),
                false,
                Vec::new(),
            )
        } else {
            let command = read_exec(&mut head);
            let kind = if head.flag("oneshot") {
                Kind::Oneshot
            } else {
                Kind::Daemon
            };
            let status = choice(
                &mut head,
                "status",
                &[
                    ("start", Status::Start),
                    ("stop", Status::Stop),
                    ("ignore", Status::Ignore),
                ],
            );
            let class = choice(
                &mut head,
                "class",
                &[("user", Class::User), ("system", Class::System)],
            )
            .unwrap_or_default();
            let dir = read_path(&mut head, "dir");
            state_dirs = read_state_dirs(&mut head);
            let env = read_env(&mut head);
            let ports = read_ports(&mut head);
            let kill_others = head.flag("kill_others");
            let process_filters = head
                .strings("process_filters")
                .into_iter()
                .map(|f| f.value)
                .collect();
            head.finish();
            (
                kind,
                command,
                status,
                class,
                dir,
                env,
                ports,
                kill_others,
                process_filters,
            )
        };

    let dependencies = match top.table("dependencies") {
        Some(mut section) => {
            let dependencies = read_dependencies(&mut section);
            section.finish();
            dependencies
        }
        None => Dependencies::default(),
    };
    let lifecycle = match top.table("lifecycle") {
        Some(mut section) => {
            let lifecycle = read_lifecycle(&mut section);
            section.finish();
            lifecycle
        }
        None => Lifecycle::default(),
    };
    let mut health = Vec::new();
    if let Some(mut section) = top.table("health") {
        health.extend(read_health(&mut section));
        section.finish();
    }
    for mut action in top.tables("actions") {
        health.extend(read_action(&mut action));
        action.finish();
    }
    let secrets = read_secrets(top);
    let (credentials, reload_signal) = read_credentials(top);
    let artifacts = artifacts::read_artifacts(top);
    let resources = resources::read_resources(top);
    let sandbox = sandbox::read_sandbox(top);
    let sockets = sockets::read_sockets(top, name.as_deref());
    let logging = match top.table("logging") {
        Some(mut section) => {
            let logging = read_logging(&mut section);
            section.finish();
            logging
        }
        None => Logging::default(),
    };

    let uses_artifacts = matches!(&command, Some(Command::Argv { argv })
        if argv.iter().any(|w| w.contains(crate::exec::ARTIFACTS_DIRECTORY)));
    if uses_artifacts && artifacts.is_empty() {
        top.out_of_range(
            "artifacts",
            &top.span(),
            "are needed: exec names $ARTIFACTS_DIRECTORY, which only a service with [[artifacts]] has",
        );
    }
    if kind == Kind::Target && !sockets.is_empty() {
        top.out_of_range(
            "sockets",
            &top.span(),
            "cannot be set for a [target], which runs no process",
        );
    }
    // A service with sockets waits for its first connection, unless its
    // file says to start it at boot.
    let status = status.unwrap_or(if sockets.is_empty() {
        Status::Start
    } else {
        Status::Stop
    });
    if kind == Kind::Target && !health.is_empty() {
        top.out_of_range(
            "health",
            &top.span(),
            "cannot be set for a [target], which runs no process",
        );
    }

    Some(Service {
        name: name?,
        file: file.to_path_buf(),
        description,
        kind,
        command: if kind == Kind::Target {
            None
        } else {
            Some(command?)
        },
        status,
        class,
        dir,
        state_dirs,
        env,
        critical,
        ports,
        kill_others,
        process_filters,
        dependencies,
        lifecycle,
        health,
        logging,
        secrets,
        credentials,
        reload_signal,
        artifacts,
        resources,
        sandbox,
        sockets,
    })
}

/// `[secrets]`: `ENV_NAME = "secret-name"`.
fn read_secrets(top: &mut Section<'_, '_, '_>) -> BTreeMap<String, String> {
    read_variables(
        top,
        "secrets",
        "variable names must be non-empty and contain no `=` or NUL",
        (
            is_valid_name,
            "values must be secret names (letters, digits, `-`, `_`, `.`)",
        ),
    )
}

/// A table of environment variables (`[env]`, `[secrets]`): each key must
/// be a variable name (non-empty, no `=` or NUL: else `name_rule` is the
/// error) and each value pass the check beside its rule.
fn read_variables(
    section: &mut Section<'_, '_, '_>,
    table: &'static str,
    name_rule: &str,
    (value_ok, value_rule): (fn(&str) -> bool, &str),
) -> BTreeMap<String, String> {
    let Some(mut entries) = section.table(table) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (key, value) in entries.scalar_entries() {
        if key.value.is_empty() || key.value.contains(['=', '\0']) {
            entries.out_of_range(table, &key.span, name_rule);
        } else if !value_ok(&value) {
            entries.out_of_range(table, &key.span, value_rule);
        } else {
            out.insert(key.value, value);
        }
    }
    entries.finish();
    out
}

/// `[credentials]`: `load = ["secret-name", …]`, each handed to the
/// service as a file in `$CREDENTIALS_DIRECTORY`; `reload_signal`, sent
/// (after the files are rewritten) instead of a restart when a loaded
/// secret changes.
fn read_credentials(top: &mut Section<'_, '_, '_>) -> (Vec<String>, Option<i32>) {
    let Some(mut section) = top.table("credentials") else {
        return (Vec::new(), None);
    };
    let reload_signal = read_signal_named(&mut section, "reload_signal");
    let mut out = Vec::new();
    for name in section.strings("load") {
        if !is_valid_name(&name.value) {
            section.out_of_range(
                "load",
                &name.span,
                "must be secret names (letters, digits, `-`, `_`, `.`)",
            );
        } else if !out.contains(&name.value) {
            out.push(name.value);
        }
    }
    section.finish();
    (out, reload_signal)
}

fn read_name(head: &mut Section<'_, '_, '_>, file: &Path) -> Option<String> {
    let Some(name) = head.string("name") else {
        head.missing("name");
        return None;
    };
    if !is_valid_name(&name.value) {
        head.ctx()
            .error(&name.span, ErrorKind::InvalidName(name.value));
        return None;
    }
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != name.value {
        head.ctx().error(
            &name.span,
            ErrorKind::NameMismatch {
                name: name.value,
                expected: stem.to_owned(),
            },
        );
        return None;
    }
    Some(name.value)
}

fn read_exec(head: &mut Section<'_, '_, '_>) -> Option<Command> {
    let Some(value) = head.value("exec") else {
        head.missing("exec");
        return None;
    };
    let span = value.span();
    match value.get_ref() {
        toml::de::DeValue::String(line) => match Command::parse(line) {
            Ok(command) => Some(command),
            Err(SplitError::Empty) => {
                head.ctx().error(&span, ErrorKind::EmptyExec);
                None
            }
            Err(reason) => {
                head.ctx().error(
                    &span,
                    ErrorKind::BadCommand {
                        field: "exec".into(),
                        reason: reason.to_string(),
                    },
                );
                None
            }
        },
        toml::de::DeValue::Array(items) => {
            let argv: Option<Vec<String>> = items
                .iter()
                .map(|item| item.get_ref().as_str().map(str::to_owned))
                .collect();
            match argv {
                Some(argv) if argv.first().is_some_and(|program| !program.is_empty()) => {
                    Some(Command::Argv { argv })
                }
                Some(_) => {
                    head.ctx().error(&span, ErrorKind::EmptyExec);
                    None
                }
                None => {
                    head.ctx().error(
                        &span,
                        ErrorKind::WrongType {
                            field: "exec".into(),
                            section: head.name().to_owned(),
                            expected: "a string or an array of strings",
                            found: "an array with a non-string item",
                        },
                    );
                    None
                }
            }
        }
        other => {
            head.ctx().error(
                &span,
                ErrorKind::WrongType {
                    field: "exec".into(),
                    section: head.name().to_owned(),
                    expected: "a string or an array of strings",
                    found: other.type_str(),
                },
            );
            None
        }
    }
}

/// `state_dir`: one absolute path or an array of them, each without `..`
/// (a deploy must not aim it outside where it says) and not `/` itself.
fn read_state_dirs(head: &mut Section<'_, '_, '_>) -> Vec<PathBuf> {
    let is_one = head
        .value("state_dir")
        .is_some_and(|v| matches!(v.get_ref(), toml::de::DeValue::String(_)));
    let listed = if is_one {
        head.string("state_dir").into_iter().collect()
    } else {
        head.strings("state_dir")
    };
    let mut out = Vec::with_capacity(listed.len());
    for dir in listed {
        let path = PathBuf::from(&dir.value);
        let parent_step = path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        if !path.is_absolute() || parent_step || path.parent().is_none() {
            head.out_of_range(
                "state_dir",
                &dir.span,
                "must be an absolute directory below / without `..`",
            );
        } else if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

fn read_env(head: &mut Section<'_, '_, '_>) -> BTreeMap<String, String> {
    read_variables(
        head,
        "env",
        "names must be non-empty and contain no `=` or NUL",
        (|value| !value.contains('\0'), "values must not contain NUL"),
    )
}

fn read_ports(head: &mut Section<'_, '_, '_>) -> Vec<u16> {
    let Some(value) = head.value("ports") else {
        return Vec::new();
    };
    let items: &[_] = match value.get_ref() {
        toml::de::DeValue::Array(items) => items,
        _ => &[],
    };
    let ports: Vec<Option<u16>> = items
        .iter()
        .map(|item| {
            item.get_ref()
                .as_integer()
                .and_then(|i| u16::from_str_radix(i.as_str(), i.radix()).ok())
                .filter(|port| *port != 0)
        })
        .collect();
    if !value.get_ref().is_array() || ports.iter().any(Option::is_none) {
        head.out_of_range(
            "ports",
            &value.span(),
            "must be an array of port numbers from 1 to 65535",
        );
        return Vec::new();
    }
    ports.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorKind;
    use crate::service::{Probe, RestartPolicy};

    fn parse(name: &str, text: &str) -> Result<Service, Vec<ConfigError>> {
        parse_service(Path::new(&format!("/etc/spore/services/{name}.toml")), text)
    }

    /// The single error a file produces, with its line.
    fn only_error(name: &str, text: &str) -> (usize, ErrorKind) {
        let errors = parse(name, text).expect_err("file should be rejected");
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        let error = errors.into_iter().next().unwrap();
        (error.line, error.kind)
    }

    #[test]
    fn state_dir_takes_one_absolute_path_or_several() {
        let one = parse(
            "mycelium",
            "[service]\nname = \"mycelium\"\nexec = \"m\"\nstate_dir = \"/var/lib/mycelium\"\n",
        )
        .unwrap();
        assert_eq!(one.state_dirs, [PathBuf::from("/var/lib/mycelium")]);
        let two = parse(
            "db",
            "[service]\nname = \"db\"\nexec = \"d\"\nstate_dir = [\"/var/lib/db\", \"/var/lib/db-wal\", \"/var/lib/db\"]\n",
        )
        .unwrap();
        assert_eq!(two.state_dirs.len(), 2, "duplicates are one directory");
        for bad in ["var/lib/x", "/var/lib/../../etc", "/"] {
            let (line, kind) = only_error(
                "bad",
                &format!("[service]\nname = \"bad\"\nexec = \"b\"\nstate_dir = \"{bad}\"\n"),
            );
            assert_eq!(line, 4, "{bad}");
            assert!(
                kind.to_string().contains("absolute directory"),
                "{bad}: {kind}"
            );
        }
    }

    #[test]
    fn minimal_service_gets_zinit_defaults() {
        let service = parse(
            "web",
            "[service]\nname = \"web\"\nexec = \"/bin/web -p 80\"\n",
        )
        .unwrap();
        assert_eq!(service.kind, Kind::Daemon);
        assert_eq!(service.status, Status::Start);
        assert_eq!(service.class, Class::User);
        assert_eq!(service.lifecycle, Lifecycle::default());
        assert_eq!(service.logging.buffer_lines, 1000);
        assert_eq!(service.command.unwrap().argv(), ["/bin/web", "-p", "80"]);
    }

    #[test]
    fn full_zinit_service_loads_every_section() {
        let text = r#"
[service]
name = "web-server"
exec = "/usr/bin/nginx -g 'daemon off;'"
dir = "/var/www"
oneshot = false
status = "ignore"
class = "system"
critical = true
ports = [8080, 8443]
kill_others = true
process_filters = ["nginx"]

[service.env]
PORT = "8080"
DEBUG = false
WORKERS = 4

[dependencies]
requires = ["kernel"]
after = ["network-ready", "filesystem"]
wants = ["metrics"]
conflicts = ["apache"]

[lifecycle]
restart = "on-failure"
restart_delay_ms = 2000
restart_delay_max_ms = 300000
max_restarts = 0
stability_period_ms = 30000
start_timeout_ms = 60000
stop_timeout_ms = 30000
stop_signal = "SIGQUIT"

[health]
type = "http"
target = "http://localhost:8080/health"
expect_status = 204
interval_ms = 5000
timeout_ms = 2000
retries = 5
start_period_ms = 10000

[logging]
buffer_lines = 500
file = "/var/log/web-server.log"
"#;
        let service = parse("web-server", text).unwrap();
        assert_eq!(service.dir, Some(PathBuf::from("/var/www")));
        assert_eq!(service.status, Status::Ignore);
        assert_eq!(service.class, Class::System);
        assert!(service.critical && service.kill_others);
        assert_eq!(service.ports, [8080, 8443]);
        assert_eq!(service.env.get("DEBUG").map(String::as_str), Some("false"));
        assert_eq!(service.env.get("WORKERS").map(String::as_str), Some("4"));
        assert_eq!(service.dependencies.after.len(), 2);
        assert_eq!(service.dependencies.requires[0].line, 20);
        assert_eq!(service.lifecycle.restart, RestartPolicy::OnFailure);
        assert_eq!(service.lifecycle.max_restarts, 0);
        assert_eq!(service.lifecycle.stop_signal, 3);
        assert_eq!(service.lifecycle.stop_timeout, Duration::from_secs(30));
        let check = &service.health[0];
        assert_eq!(
            check.probe,
            Probe::Http {
                target: "http://localhost:8080/health".into(),
                expect_status: 204
            }
        );
        assert_eq!(check.retries, 5);
        assert_eq!(check.start_period, Duration::from_secs(10));
        assert_eq!(service.logging.buffer_lines, 500);
    }

    #[test]
    fn hero_proc_check_action_becomes_an_exec_health_check() {
        let text = r#"
[service]
name = "mycelium"
exec = "/usr/local/bin/mycelium --peers tcp://1.2.3.4:9651"

[[actions]]
name = "health"
script = "curl -sf http://127.0.0.1:8989/api/v1"
trigger = "check"
interval_ms = 10000
timeout_ms = 3000
"#;
        let service = parse("mycelium", text).unwrap();
        assert_eq!(service.health.len(), 1);
        assert_eq!(service.health[0].timeout, Duration::from_secs(3));
        let Probe::Exec { command } = &service.health[0].probe else {
            panic!("expected an exec probe");
        };
        assert_eq!(
            command.argv(),
            ["curl", "-sf", "http://127.0.0.1:8989/api/v1"]
        );
    }

    #[test]
    fn zinit_target_is_a_service_without_a_process() {
        let text = "[target]\nname = \"basic\"\ncritical = true\n\n[dependencies]\nrequires = [\"sysinit\"]\nwants = [\"haveged\"]\n";
        let service = parse("basic", text).unwrap();
        assert_eq!(service.kind, Kind::Target);
        assert!(service.command.is_none());
        assert!(service.critical);
    }

    #[test]
    fn oneshot_flag_makes_a_oneshot() {
        let service = parse(
            "o",
            "[service]\nname = \"o\"\nexec = \"/bin/true\"\noneshot = true\n",
        )
        .unwrap();
        assert_eq!(service.kind, Kind::Oneshot);
    }

    #[test]
    fn exec_array_is_used_as_argv() {
        let service = parse(
            "a",
            "[service]\nname = \"a\"\nexec = [\"/bin/echo\", \"two words\"]\n",
        )
        .unwrap();
        assert_eq!(service.command.unwrap().argv(), ["/bin/echo", "two words"]);
    }

    #[test]
    fn unknown_key_names_line_and_nearest_key() {
        let (line, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"/bin/true\"\n\n[dependencies]\nrequire = [\"x\"]\n",
        );
        assert_eq!(line, 6);
        assert_eq!(
            kind.to_string(),
            "unknown key `require` in [dependencies]; did you mean `requires`?"
        );
    }

    #[test]
    fn unknown_key_far_from_any_lists_the_known_keys() {
        let (_, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"/bin/true\"\nfrobnicate = 1\n",
        );
        let message = kind.to_string();
        assert!(
            message.starts_with("unknown key `frobnicate` in [service]; known keys: name,"),
            "{message}"
        );
    }

    #[test]
    fn unknown_top_level_table_is_reported() {
        let (line, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"/bin/true\"\n[dependency]\nrequires = []\n",
        );
        assert_eq!(line, 4);
        assert!(
            kind.to_string().contains("did you mean `dependencies`?"),
            "{kind}"
        );
    }

    #[test]
    fn wrong_type_names_field_and_types() {
        let (line, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"/bin/true\"\noneshot = \"yes\"\n",
        );
        assert_eq!(line, 4);
        assert_eq!(
            kind.to_string(),
            "`oneshot` in [service] must be true or false, found string"
        );
        let (_, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"/bin/true\"\n[dependencies]\nafter = \"x\"\n",
        );
        assert!(matches!(kind, ErrorKind::WrongType { .. }), "{kind}");
        let (_, kind) = only_error("c", "[service]\nname = \"c\"\nexec = 5\n");
        assert!(matches!(kind, ErrorKind::WrongType { .. }), "{kind}");
    }

    #[test]
    fn empty_exec_is_rejected() {
        for exec in ["\"\"", "\"   \"", "[]", "[\"\"]"] {
            let (line, kind) =
                only_error("c", &format!("[service]\nname = \"c\"\nexec = {exec}\n"));
            assert_eq!((line, kind), (3, ErrorKind::EmptyExec), "exec = {exec}");
        }
    }

    #[test]
    fn unterminated_quote_in_exec_is_rejected() {
        let (_, kind) = only_error("c", "[service]\nname = \"c\"\nexec = \"/bin/echo 'oops\"\n");
        assert!(matches!(kind, ErrorKind::BadCommand { .. }), "{kind}");
    }

    #[test]
    fn missing_exec_and_name_are_reported() {
        let (_, kind) = only_error("c", "[service]\nname = \"c\"\n");
        assert_eq!(kind.to_string(), "missing `exec` in [service]");
        let (_, kind) = only_error("c", "[service]\nexec = \"/bin/true\"\n");
        assert_eq!(kind.to_string(), "missing `name` in [service]");
    }

    #[test]
    fn file_without_service_or_target_is_rejected() {
        let (_, kind) = only_error("c", "[dependencies]\nrequires = []\n");
        assert_eq!(kind, ErrorKind::NoServiceSection);
    }

    #[test]
    fn name_must_match_file_name() {
        let (line, kind) = only_error("other", "[service]\nname = \"c\"\nexec = \"/bin/true\"\n");
        assert_eq!(line, 2);
        assert_eq!(
            kind,
            ErrorKind::NameMismatch {
                name: "c".into(),
                expected: "other".into()
            }
        );
    }

    #[test]
    fn names_that_cannot_be_files_are_rejected() {
        let (_, kind) = only_error("c", "[service]\nname = \"../etc\"\nexec = \"/bin/true\"\n");
        assert!(matches!(kind, ErrorKind::InvalidName(_)), "{kind}");
    }

    #[test]
    fn unknown_status_class_restart_and_health_type_are_rejected() {
        let cases = [
            ("[service]\nname = \"c\"\nexec = \"x\"\nstatus = \"strat\"\n", "status", Some("start")),
            ("[service]\nname = \"c\"\nexec = \"x\"\nclass = \"sytem\"\n", "class", Some("system")),
            ("[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nrestart = \"sometimes\"\n", "restart", None),
            ("[service]\nname = \"c\"\nexec = \"x\"\n[health]\ntype = \"htp\"\ntarget = \"http://x/\"\n", "type", Some("http")),
            ("[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nstop_signal = \"SIGTREM\"\n", "stop_signal", Some("SIGTERM")),
        ];
        for (text, field, nearest) in cases {
            let (_, kind) = only_error("c", text);
            let ErrorKind::UnknownValue {
                field: got,
                suggestion,
                ..
            } = &kind
            else {
                panic!("{field}: expected UnknownValue, got {kind}");
            };
            assert_eq!(got, field);
            assert_eq!(suggestion.as_deref(), nearest, "{field}");
        }
    }

    #[test]
    fn durations_take_milliseconds_or_time_spans() {
        let text = "[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nrestart_delay_ms = \"5s\"\nrestart_delay_max_ms = \"1m30s\"\nstop_timeout_ms = 2500\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\ninterval_ms = \"2 min\"\n";
        let service = parse("c", text).unwrap();
        assert_eq!(service.lifecycle.restart_delay, Duration::from_secs(5));
        assert_eq!(service.lifecycle.restart_delay_max, Duration::from_secs(90));
        assert_eq!(service.lifecycle.stop_timeout, Duration::from_millis(2500));
        assert_eq!(service.health[0].interval, Duration::from_secs(120));
        let (line, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nrestart_delay_ms = \"5\"\n",
        );
        assert_eq!(line, 5);
        let message = kind.to_string();
        assert!(
            message.contains("restart_delay_ms") && message.contains("no unit"),
            "{message}"
        );
        let (_, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nstop_timeout_ms = \"0s\"\n",
        );
        assert!(
            matches!(
                kind,
                ErrorKind::Zero {
                    field: "stop_timeout_ms",
                    ..
                }
            ),
            "{kind}"
        );
        let (_, kind) = only_error(
            "c",
            "[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nstop_timeout_ms = true\n",
        );
        assert!(kind.to_string().contains("time span"), "{kind}");
    }

    #[test]
    fn zero_where_zero_means_nothing_is_rejected() {
        let cases = [
            ("[lifecycle]\nrestart_delay_ms = 0\n", "restart_delay_ms"),
            ("[lifecycle]\nstop_timeout_ms = 0\n", "stop_timeout_ms"),
            ("[lifecycle]\nstart_timeout_ms = 0\n", "start_timeout_ms"),
            (
                "[lifecycle]\nstability_period_ms = 0\n",
                "stability_period_ms",
            ),
            (
                "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\ninterval_ms = 0\n",
                "interval_ms",
            ),
            (
                "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\ntimeout_ms = 0\n",
                "timeout_ms",
            ),
            (
                "[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nretries = 0\n",
                "retries",
            ),
            ("[logging]\nbuffer_lines = 0\n", "buffer_lines"),
        ];
        for (section, field) in cases {
            let text = format!("[service]\nname = \"c\"\nexec = \"x\"\n{section}");
            let (line, kind) = only_error("c", &text);
            assert!(
                matches!(kind, ErrorKind::Zero { field: f, .. } if f == field),
                "{field}: {kind}"
            );
            assert!(line >= 5, "{field} at line {line}");
        }
    }

    #[test]
    fn buffer_lines_above_the_cap_is_rejected_with_its_line() {
        let text = "[service]\nname = \"c\"\nexec = \"x\"\n[logging]\nbuffer_lines = 100001\n";
        let (line, kind) = only_error("c", text);
        assert!(
            matches!(
                kind,
                ErrorKind::OutOfRange {
                    field: "buffer_lines",
                    ..
                }
            ),
            "{kind}"
        );
        assert_eq!(line, 5);
        let at_cap = "[service]\nname = \"c\"\nexec = \"x\"\n[logging]\nbuffer_lines = 100000\n";
        assert!(parse("c", at_cap).is_ok());
    }

    #[test]
    fn zero_max_restarts_and_start_period_mean_something_and_are_allowed() {
        let text = "[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nmax_restarts = 0\n[health]\ntype = \"tcp\"\ntarget = \"h:1\"\nstart_period_ms = 0\n";
        assert!(parse("c", text).is_ok());
    }

    #[test]
    fn backoff_cap_below_first_delay_is_rejected() {
        let text = "[service]\nname = \"c\"\nexec = \"x\"\n[lifecycle]\nrestart_delay_ms = 5000\nrestart_delay_max_ms = 100\n";
        let (line, kind) = only_error("c", text);
        assert_eq!(line, 6);
        assert!(
            matches!(
                kind,
                ErrorKind::OutOfRange {
                    field: "restart_delay_max_ms",
                    ..
                }
            ),
            "{kind}"
        );
    }

    #[test]
    fn requires_and_conflicts_on_the_same_service_is_rejected() {
        let text = "[service]\nname = \"c\"\nexec = \"x\"\n[dependencies]\nrequires = [\"db\"]\nconflicts = [\"db\"]\n";
        let (line, kind) = only_error("c", text);
        assert_eq!(line, 6);
        assert_eq!(kind, ErrorKind::RequiresConflicts("db".into()));
    }

    #[test]
    fn health_targets_are_checked_for_their_type() {
        let bad = [
            "type = \"tcp\"\ntarget = \"no-port\"",
            "type = \"http\"\ntarget = \"localhost:80\"",
            "type = \"http\"\ntarget = \"https://x/\"",
            "type = \"http\"\ntarget = \"http://x/\"\nexpect_status = 42",
            "type = \"tcp\"\ntarget = \"h:1\"\nexpect_status = 200",
        ];
        for health in bad {
            let text = format!("[service]\nname = \"c\"\nexec = \"x\"\n[health]\n{health}\n");
            let (_, kind) = only_error("c", &text);
            assert!(
                matches!(kind, ErrorKind::OutOfRange { .. }),
                "{health}: {kind}"
            );
        }
    }

    #[test]
    fn sockets_are_passed_or_proxied_and_wait_for_a_connection() {
        use crate::service::{Endpoint, SocketMode};
        let text = "[service]\nname = \"web\"\nexec = \"/bin/web\"\n\n[[sockets]]\nlisten = \"tcp:[::]:8080\"\nname = \"http\"\nidle_stop = \"5m\"\n\n[[sockets]]\nlisten = \"unix:/run/web.sock\"\nmode = \"proxy\"\nbackend = \"tcp:127.0.0.1:18080\"\nidle_stop = 300000\n";
        let service = parse("web", text).unwrap();
        assert_eq!(service.sockets.len(), 2);
        assert_eq!(
            service.sockets[0].listen,
            Endpoint::Tcp("[::]:8080".parse().unwrap())
        );
        assert_eq!(service.sockets[0].name, "http");
        assert_eq!(service.sockets[0].mode, SocketMode::Pass);
        assert_eq!(service.sockets[0].idle_stop, Some(Duration::from_secs(300)));
        assert_eq!(service.sockets[1].name, "web");
        assert_eq!(
            service.sockets[1].mode,
            SocketMode::Proxy {
                backend: Endpoint::Tcp("127.0.0.1:18080".parse().unwrap())
            }
        );
        // Started by its first connection, not at boot…
        assert_eq!(service.status, Status::Stop);
        // …unless its file says so.
        let at_boot = text.replace("exec = ", "status = \"start\"\nexec = ");
        assert_eq!(parse("web", &at_boot).unwrap().status, Status::Start);
    }

    #[test]
    fn a_bad_socket_is_named_with_its_line() {
        let head = "[service]\nname = \"web\"\nexec = \"/bin/web\"\n\n[[sockets]]\n";
        for (socket, field, line) in [
            ("listen = \"8080\"\n", "listen", 6),
            ("listen = \"tcp:localhost:80\"\n", "listen", 6),
            ("listen = \"unix:run/x\"\n", "listen", 6),
            ("listen = \"tcp:[::]:80\"\nmode = \"proxy\"\n", "backend", 5),
            (
                "listen = \"tcp:[::]:80\"\nbackend = \"tcp:127.0.0.1:81\"\n",
                "backend",
                7,
            ),
            ("listen = \"tcp:[::]:80\"\nmode = \"xinet\"\n", "mode", 7),
            ("listen = \"tcp:[::]:80\"\nname = \"a:b\"\n", "name", 7),
            (
                "listen = \"tcp:[::]:80\"\nidle_stop = \"soon\"\n",
                "idle_stop",
                7,
            ),
            ("name = \"x\"\n", "listen", 5),
        ] {
            let (at, kind) = only_error("web", &format!("{head}{socket}"));
            assert_eq!(at, line, "{socket}: {kind:?}");
            assert!(format!("{kind:?}").contains(field), "{socket}: {kind:?}");
        }
        let twice =
            format!("{head}listen = \"tcp:[::]:80\"\n\n[[sockets]]\nlisten = \"tcp:[::]:80\"\n");
        assert!(format!("{:?}", only_error("web", &twice).1).contains("two sockets"));
        let target = "[target]\nname = \"t\"\n\n[[sockets]]\nlisten = \"tcp:[::]:80\"\n";
        assert!(format!("{:?}", only_error("t", target).1).contains("[target]"));
    }

    #[test]
    fn artifacts_are_pinned_by_hash_and_named_in_exec() {
        let pin = "9F2C".repeat(16);
        let text = format!(
            "[service]\nname = \"m\"\nexec = \"$ARTIFACTS_DIRECTORY/mycelium --peers tcp://a:9651\"\n\n[[artifacts]]\nname = \"mycelium\"\nsha256 = \"sha256:{pin}\"\nurl = [\"https://mirror.example/mycelium\", \"http://10.0.2.2:8000/mycelium\", \"beacon\"]\nmode = \"0755\"\n\n[[artifacts]]\nname = \"peers.txt\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        );
        let service = parse("m", &text).unwrap();
        assert_eq!(
            service.command,
            Some(Command::Argv {
                argv: vec![
                    "$ARTIFACTS_DIRECTORY/mycelium".into(),
                    "--peers".into(),
                    "tcp://a:9651".into()
                ]
            })
        );
        assert_eq!(service.artifacts.len(), 2);
        let mycelium = &service.artifacts[0];
        assert_eq!(mycelium.sha256, pin.to_lowercase());
        assert_eq!(
            mycelium.urls,
            [
                "https://mirror.example/mycelium",
                "http://10.0.2.2:8000/mycelium",
                "beacon"
            ]
        );
        assert!(mycelium.executable);
        assert!(!service.artifacts[1].executable);
        assert!(service.artifacts[1].urls.is_empty());
    }

    #[test]
    fn resources_take_systemd_units_and_shares() {
        use crate::service::{CpuMax, Limit, Memory, Resources};
        let text = "[service]\nname = \"m\"\nexec = \"x\"\n[resources]\nmemory_max = \"512M\"\nmemory_high = \"12.5%\"\nmemory_min = 67108864\ncpu_weight = 200\ncpu_max = \"150%\"\npids_max = 32\nio_weight = 10000\noom_score_adj = -900\n";
        let service = parse("m", text).unwrap();
        assert_eq!(
            service.resources,
            Resources {
                memory_max: Some(Memory::Bytes(512 << 20)),
                memory_high: Some(Memory::Percent(1250)),
                memory_min: Some(Memory::Bytes(64 << 20)),
                cpu_weight: Some(200),
                cpu_max: Some(CpuMax::Percent(15_000)),
                pids_max: Some(Limit::Count(32)),
                io_weight: Some(10_000),
                oom_score_adj: Some(-900),
                rlimits: Vec::new(),
                delegate: false,
            }
        );
        let unlimited = parse(
            "m",
            "[service]\nname = \"m\"\nexec = \"x\"\n[resources]\nmemory_max = \"infinity\"\ncpu_max = \"infinity\"\npids_max = \"infinity\"\n",
        )
        .unwrap();
        assert_eq!(unlimited.resources.memory_max, Some(Memory::Unlimited));
        assert_eq!(unlimited.resources.cpu_max, Some(CpuMax::Unlimited));
        assert_eq!(unlimited.resources.pids_max, Some(Limit::Unlimited));
        let none = parse("m", "[service]\nname = \"m\"\nexec = \"x\"\n").unwrap();
        assert_eq!(none.resources, Resources::default());
        let delegated = parse(
            "m",
            "[service]\nname = \"m\"\nexec = \"x\"\n[resources]\ndelegate = true\n",
        )
        .unwrap();
        assert!(delegated.resources.delegate);
    }

    #[test]
    fn bad_resources_are_reported_with_their_line_and_key() {
        let head = "[service]\nname = \"m\"\nexec = \"x\"\n[resources]\n";
        for (line, expected) in [
            ("memory_max = \"lots\"", "memory_max"),
            ("memory_max = \"0%\"", "memory_max"),
            ("memory_max = \"150%\"", "memory_max"),
            ("memory_high = true", "memory_high"),
            ("cpu_weight = 0", "cpu_weight"),
            ("io_weight = 10001", "io_weight"),
            ("cpu_max = \"2\"", "cpu_max"),
            ("cpu_max = \"-5%\"", "cpu_max"),
            ("cpu_max = \"0.5%\"", "cpu_max"),
            ("pids_max = 0", "pids_max"),
            ("pids_max = \"many\"", "pids_max"),
            ("oom_score_adj = 1001", "oom_score_adj"),
            ("oom_score_adj = \"low\"", "oom_score_adj"),
            ("memory_maximum = \"1G\"", "memory_maximum"),
            ("limit_nofile = \"8M\"", "limit_nofile"),
            ("limit_core = \"big\"", "limit_core"),
            ("limit_nofile = -1", "limit_nofile"),
            ("delegate = \"yes\"", "delegate"),
        ] {
            let text = format!("{head}{line}\n");
            let errors = parse("m", &text).unwrap_err();
            let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert_eq!(errors.len(), 1, "{line}: {shown:?}");
            assert!(shown[0].contains(":5:"), "{line}: {shown:?}");
            assert!(shown[0].contains(expected), "{line}: {shown:?}");
        }
    }

    #[test]
    fn rlimits_take_counts_sizes_and_infinity() {
        use crate::service::{Rlimit, RlimitResource};
        let text = "[service]\nname = \"m\"\nexec = \"x\"\n[resources]\nlimit_nofile = 65536\nlimit_core = \"infinity\"\nlimit_stack = \"8M\"\n";
        let service = parse("m", text).unwrap();
        assert_eq!(
            service.resources.rlimits,
            [
                Rlimit {
                    resource: RlimitResource::Nofile,
                    value: Some(65536)
                },
                Rlimit {
                    resource: RlimitResource::Core,
                    value: None
                },
                Rlimit {
                    resource: RlimitResource::Stack,
                    value: Some(8 << 20)
                },
            ]
        );
    }

    #[test]
    fn the_sandbox_names_users_groups_and_capabilities() {
        use crate::service::{Principal, Sandbox};
        let text = "[service]\nname = \"m\"\nexec = \"x\"\n[sandbox]\nuser = \"www-data\"\ngroup = 33\nsupplementary_groups = [\"audio\", 500, \"audio\"]\nno_new_privileges = false\ncapabilities = [\"CAP_NET_BIND_SERVICE\", \"net_admin\"]\n";
        let service = parse("m", text).unwrap();
        assert_eq!(
            service.sandbox,
            Sandbox {
                user: Some(Principal::Name("www-data".into())),
                group: Some(Principal::Id(33)),
                supplementary_groups: vec![Principal::Name("audio".into()), Principal::Id(500)],
                no_new_privileges: Some(false),
                capabilities: Some(vec![10, 12]),
                ..Sandbox::default()
            }
        );
        let walls = parse(
            "m",
            "[service]\nname = \"m\"\nexec = \"x\"\n[sandbox]\nprivate_tmp = true\nprotect_system = \"strict\"\nread_only_paths = [\"/etc\"]\ninaccessible_paths = [\"/root\", \"/root\"]\n",
        )
        .unwrap();
        assert!(walls.sandbox.private_tmp && walls.sandbox.needs_mounts());
        assert_eq!(
            walls.sandbox.protect_system,
            crate::service::ProtectSystem::Strict
        );
        assert_eq!(
            walls.sandbox.read_only_paths,
            [std::path::PathBuf::from("/etc")]
        );
        assert_eq!(
            walls.sandbox.inaccessible_paths,
            [std::path::PathBuf::from("/root")]
        );
        let none = parse("m", "[service]\nname = \"m\"\nexec = \"x\"\n").unwrap();
        assert!(none.sandbox.is_empty());
        let head = "[service]\nname = \"m\"\nexec = \"x\"\n[sandbox]\n";
        for (line, expected) in [
            ("user = \"\"", "user"),
            ("user = \"a b\"", "user"),
            ("user = -1", "user"),
            ("group = true", "group"),
            ("supplementary_groups = \"audio\"", "supplementary_groups"),
            ("capabilities = [\"CAP_FLY\"]", "CAP_FLY"),
            ("capabilities = \"CAP_NET_ADMIN\"", "capabilities"),
            ("no_new_privileges = \"yes\"", "no_new_privileges"),
            ("usr = \"www\"", "usr"),
            ("protect_system = \"yes\"", "protect_system"),
            ("read_only_paths = [\"etc\"]", "read_only_paths"),
            ("inaccessible_paths = [\"/a/../b\"]", "inaccessible_paths"),
            ("private_tmp = 1", "private_tmp"),
        ] {
            let text = format!("{head}{line}\n");
            let errors = parse("m", &text).unwrap_err();
            let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert_eq!(errors.len(), 1, "{line}: {shown:?}");
            assert!(shown[0].contains(":5:"), "{line}: {shown:?}");
            assert!(shown[0].contains(expected), "{line}: {shown:?}");
        }
    }

    #[test]
    fn bad_artifacts_are_reported_with_their_line() {
        let head = "[service]\nname = \"m\"\nexec = \"x\"\n[[artifacts]]\n";
        for (body, line) in [
            ("name = \"a\"\nsha256 = \"abc\"\n", 6),
            ("name = \"../a\"\nsha256 = \"\"\n", 5),
            (
                &*format!(
                    "name = \"a\"\nsha256 = \"{}\"\nurl = \"ftp://x/a\"\n",
                    "a".repeat(64)
                ),
                7,
            ),
            (
                &*format!(
                    "name = \"a\"\nsha256 = \"{}\"\nurl = [\"beacon\", \"Beacon\"]\n",
                    "a".repeat(64)
                ),
                7,
            ),
            (
                &*format!(
                    "name = \"a\"\nsha256 = \"{}\"\nmode = \"rwx\"\n",
                    "a".repeat(64)
                ),
                7,
            ),
        ] {
            let text = format!("{head}{body}");
            let (at, kind) = only_error("m", &text);
            assert_eq!(at, line, "{body}: {kind}");
            assert!(
                matches!(kind, ErrorKind::OutOfRange { .. }),
                "{body}: {kind}"
            );
        }
        let (_, kind) = only_error(
            "m",
            "[service]\nname = \"m\"\nexec = \"$ARTIFACTS_DIRECTORY/x\"\n",
        );
        assert!(
            kind.to_string()
                .contains("only a service with [[artifacts]]"),
            "{kind}"
        );
        let missing = parse("m", &format!("{head}name = \"a\"\n")).unwrap_err();
        assert!(
            missing.iter().any(|e| e.to_string().contains("sha256")),
            "{missing:?}"
        );
    }

    #[test]
    fn action_with_other_trigger_is_rejected() {
        let text = "[service]\nname = \"c\"\nexec = \"x\"\n[[actions]]\nname = \"x\"\nscript = \"true\"\ntrigger = \"cron\"\n";
        let (line, kind) = only_error("c", text);
        assert_eq!(line, 7);
        assert!(matches!(kind, ErrorKind::UnknownValue { .. }), "{kind}");
    }

    #[test]
    fn syntax_error_is_located() {
        let (line, kind) = only_error("c", "[service]\nname = \"c\nexec = \"x\"\n");
        assert_eq!(line, 2);
        assert!(matches!(kind, ErrorKind::Syntax(_)), "{kind}");
    }

    #[test]
    fn every_error_in_a_file_is_reported() {
        let text = "[service]\nname = \"c\"\nexec = \"x\"\nstatus = \"nope\"\nbogus = 1\n[lifecycle]\nstop_timeout_ms = 0\n";
        let errors = parse("c", text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 5, 7]);
        assert!(errors[0]
            .to_string()
            .starts_with("/etc/spore/services/c.toml:4:10: unknown status `nope`"));
    }

    #[test]
    fn signal_names_and_numbers_parse() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("term"), Some(15));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGNOPE"), None);
        assert_eq!(signal_number("0"), None);
    }
}
