//! From the parsed command line to what sporectl does: [`into_options`]
//! turns each [`Command`] into the task, the verb and the settings the
//! commands read, and refuses combinations clap cannot express.

use super::*;

pub(super) fn into_options(cli: Cli) -> Parsed {
    let mut options = Options {
        node: cli.node,
        identity: cli.identity,
        node_key: cli.node_key,
        known_nodes: cli.known_nodes.unwrap_or_else(rpc::pins::default_path),
        accept_new: cli.accept_new,
        json: cli.json,
        task: crate::Task::Call,
        names: Vec::new(),
        verb: None,
        shape: rpc::verbs::Shape {
            lines: 100,
            ..Default::default()
        },
        file: None,
        artifact_files: Vec::new(),
        beacon: cli.beacon,
        all: cli.all,
        only: cli.only,
        labels: cli.labels,
        addresses: cli.address,
        concurrency: usize::from(cli.concurrency),
        beacon_ca: cli.beacon_ca,
        insecure_beacon: cli.insecure_beacon,
        yes: cli.yes,
        connect_timeout: cli.connect_timeout,
        call_timeout: cli.call_timeout,
        summary: false,
        failed_only: false,
    };
    let wait = |w: Wait| (!w.no_wait).then_some(w.timeout);
    let word = match cli.command {
        Command::Info => "info",
        Command::List => "list",
        Command::Metrics {
            serve,
            min_interval,
        } => {
            if let Some(listen) = serve {
                if !options.all && options.only.is_none() {
                    usage_error(
                        "metrics --serve serves a fleet: say which nodes with --all or --nodes",
                    );
                }
                options.task = crate::Task::ServeMetrics(crate::fleet::ServeMetrics {
                    listen,
                    min_interval,
                });
            }
            "metrics"
        }
        Command::Status { names, failed } if names.is_empty() => {
            options.failed_only = failed;
            if options.all || options.only.is_some() {
                options.summary = true;
                "info"
            } else {
                "list"
            }
        }
        Command::Status { names, failed } => {
            if failed {
                usage_error("--failed applies to status with no name");
            }
            options.names = names;
            "status"
        }
        Command::IsActive { names } => {
            options.names = names;
            "is-active"
        }
        Command::IsFailed { names } => {
            options.names = names;
            "is-failed"
        }
        Command::Start { names, wait: w } => {
            options.names = names;
            options.shape.wait = wait(w);
            "start"
        }
        Command::Stop { names } => {
            options.names = names;
            "stop"
        }
        Command::Restart { names, wait: w } => {
            options.names = names;
            options.shape.wait = wait(w);
            "restart"
        }
        Command::Logs {
            name,
            lines,
            follow,
            since,
            until,
            boot,
            priority,
        } => {
            options.names = name.into_iter().collect();
            options.shape.lines = lines;
            options.shape.follow = follow;
            options.shape.since = since;
            options.shape.until = until;
            options.shape.boot = boot;
            options.shape.priority = priority;
            "logs"
        }
        Command::Deploy {
            files,
            start,
            artifacts,
            wait: w,
        } => {
            options.artifact_files = artifacts;
            options.names = files.iter().map(|f| f.display().to_string()).collect();
            options.shape.start = start;
            options.shape.wait = wait(w);
            "deploy"
        }
        Command::Remove { names } => {
            options.names = names;
            "remove"
        }
        Command::Tree { name } => {
            options.names = name.into_iter().collect();
            "tree"
        }
        Command::Dashboard { listen } => {
            // With a beacon, its whole list unless --nodes narrows it.
            if options.beacon.is_some() && options.only.is_none() {
                options.all = true;
            }
            options.task = crate::Task::Dashboard(crate::fleet::Dashboard { listen });
            "dashboard"
        }
        Command::Rollout(command) => {
            if !options.all && options.only.is_none() {
                usage_error("rollout changes a fleet: say which nodes with --all or --nodes");
            }
            options.task = crate::Task::Rollout(Box::new(match command {
                RolloutCommand::Deploy(settings) => crate::rollout::Rollout::Deploy(settings),
                RolloutCommand::Update(settings) => crate::rollout::Rollout::Spore(settings),
                RolloutCommand::Remove(settings) => crate::rollout::Rollout::Remove(settings),
            }));
            "rollout"
        }
        Command::Cat { names } => {
            options.names = names;
            "cat"
        }
        Command::Why { name } => {
            options.names = vec![name];
            "why"
        }
        Command::Reload => "reload",
        Command::Secret(secret) => {
            let (action, name, file) = match secret {
                SecretCommand::Set { name, file } => ("set", Some(name), file),
                SecretCommand::Rm { name } => ("rm", Some(name), None),
                SecretCommand::List => ("list", None, None),
            };
            options.verb = rpc::verbs::Verb::parse("secret", Some(action));
            options.names = name.into_iter().collect();
            options.file = file;
            "secret"
        }
        Command::Artifact(artifact) => {
            let (action, names) = match artifact {
                ArtifactCommand::Put { files } => (
                    "put",
                    files.iter().map(|f| f.display().to_string()).collect(),
                ),
                ArtifactCommand::List => ("list", Vec::new()),
                ArtifactCommand::Rm { sha256 } => ("rm", sha256),
                ArtifactCommand::Publish { files } => {
                    options.task = crate::Task::Publish(files);
                    ("publish", Vec::new())
                }
                ArtifactCommand::Unpublish { sha256 } => {
                    options.task = crate::Task::Unpublish(sha256);
                    ("unpublish", Vec::new())
                }
            };
            options.verb = rpc::verbs::Verb::parse("artifact", Some(action));
            options.names = names;
            "artifact"
        }
        Command::Reboot => "reboot",
        Command::Poweroff => "poweroff",
        Command::Update {
            image: None,
            spore: Some(binary),
            signature,
        } => {
            let default = PathBuf::from(format!("{}.sig", binary.display()));
            options.file = signature.or_else(|| default.exists().then_some(default));
            options.verb = Some(rpc::verbs::Verb::Reexec);
            options.names = vec![binary.display().to_string()];
            "update"
        }
        Command::Update {
            image, signature, ..
        } => {
            let image = image.unwrap_or_default();
            let default = PathBuf::from(format!("{}.sig", image.display()));
            options.file = signature.or_else(|| default.exists().then_some(default));
            options.names = vec![image.display().to_string()];
            "update"
        }
        Command::Discover => "discover",
        Command::Nodes { action } => {
            options.task = crate::Task::Nodes(match action {
                None => crate::NodesAction::List,
                Some(NodesCommand::Pending) => crate::NodesAction::Pending,
                Some(NodesCommand::Approve { name, fingerprint }) => {
                    crate::NodesAction::Approve { name, fingerprint }
                }
                Some(NodesCommand::Hold { name, fingerprint }) => {
                    crate::NodesAction::Hold { name, fingerprint }
                }
                Some(NodesCommand::Remove { name }) => crate::NodesAction::Remove { name },
            });
            "nodes"
        }
        Command::Beacon(BeaconCommand::Serve(serve)) => {
            let serve = *serve;
            options.task = crate::Task::Serve(Box::new(crate::beacon_commands::ServeOptions {
                listen: serve.listen,
                data: serve.data,
                store: serve.store,
                store_password_file: serve.store_password_file,
                store_ca: serve.store_ca,
                enrollment_ca: serve.enrollment_ca,
                revoke: serve.revoke,
                approve: serve.approve,
                open: serve.open,
                authorized_keys: serve.authorized_keys,
                allow_rekey: serve.allow_rekey,
                rate: serve.rate,
                burst: serve.burst,
                max_per_source: serve.max_per_source,
                max_connections: serve.max_connections,
                tls_cert: serve.tls_cert,
                tls_key: serve.tls_key,
                artifacts: serve.artifacts.map(|dir| beacon::cache::CacheSettings {
                    dir,
                    max_bytes: serve.artifacts_max_bytes,
                    peers: serve.artifacts_peer,
                    peer_ca: serve.artifacts_peer_ca,
                }),
            }));
            "beacon"
        }
        Command::KnownNodes(action) => {
            options.task = crate::Task::KnownNodes(match action {
                KnownNodesCommand::List => crate::KnownNodesAction::List,
                KnownNodesCommand::Forget { pinned } => {
                    crate::KnownNodesAction::Forget { address: pinned }
                }
            });
            "known-nodes"
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sporectl", &mut out);
            return Parsed::Print(out);
        }
        Command::Man { dir: Some(dir) } => {
            let written = std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir));
            return match written {
                Ok(()) => Parsed::Print(
                    format!(
                        "wrote sporectl.1 and a page per command to {}\n",
                        dir.display()
                    )
                    .into_bytes(),
                ),
                Err(error) => usage_error(&format!("man --dir {}: {error}", dir.display())),
            };
        }
        Command::Man { dir: None } => {
            let mut out = Vec::new();
            if clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .is_err()
            {
                out.clear();
            }
            return Parsed::Print(out);
        }
    };
    if options.verb.is_none() {
        options.verb = rpc::verbs::Verb::parse(word, None);
    }
    let fleet = options.all || options.only.is_some();
    if !options.labels.is_empty() && !fleet {
        usage_error("--label narrows a fleet command: give --all or --nodes too");
    }
    let usage = |message: &str| -> ! { usage_error(message) };
    if fleet && options.beacon.is_none() {
        usage("--all and --nodes need --beacon URL");
    }
    if !options.addresses.is_empty() && !fleet {
        usage("--address applies to fleet commands (--all or --nodes)");
    }
    if matches!(options.task, crate::Task::Nodes(_)) && options.beacon.is_none() {
        usage("nodes needs --beacon URL (or SPORECTL_BEACON)");
    }
    if matches!(options.task, crate::Task::Publish(_)) && options.beacon.is_none() {
        usage("artifact publish sends to a beacon: give --beacon URL (or SPORECTL_BEACON)");
    }
    if matches!(options.task, crate::Task::Unpublish(_)) && options.beacon.is_none() {
        usage("artifact unpublish asks a beacon: give --beacon URL (or SPORECTL_BEACON)");
    }
    if fleet
        && matches!(
            options.verb,
            Some(rpc::verbs::Verb::Update | rpc::verbs::Verb::Reexec)
        )
    {
        usage("update sends an image to one node at a time: give it --node HOST:PORT");
    }
    if fleet && options.verb == Some(rpc::verbs::Verb::ArtifactPut) {
        usage("artifact put streams to one node at a time: give it --node HOST:PORT");
    }
    if fleet && options.names.len() > 1 {
        usage("a fleet command takes one service or file at a time");
    }
    Parsed::Run(Box::new(options))
}
