//! Starting a service's run: its secrets, credentials and artifacts made
//! ready off the loop, then the spawn with its environment, and what a
//! start leaves behind (the credential directory of a run) taken away
//! again.

use super::*;
use crate::sys::Launch;

impl Runtime {
    /// Starts `name` for `run`. A service that reads secrets (`[secrets]`
    /// or `[credentials]`) has them read off the loop first (a slow disk
    /// must not hold reaping); it starts when [`Input::Prepared`] comes
    /// back. A run that went stale meanwhile is killed by the supervisor
    /// when it reports the spawn.
    pub(super) fn spawn_service(&mut self, name: String, run: u64) {
        let Some(service) = self.supervisor.get(&name).map(|v| v.service.clone()) else {
            return;
        };
        if service.secrets.is_empty()
            && service.credentials.is_empty()
            && service.artifacts.is_empty()
            && service.sandbox.is_empty()
        {
            self.launch(name, run, Ok(Prepared::default()));
            return;
        }
        let files = self.files.clone();
        self.sys.off_loop(Box::new(move || {
            let prepared = prepare_identity(&service)
                .and_then(|identity| prepare_secrets(&service, files.as_ref(), identity))
                .and_then(|prepared| prepare_mounts(&service, prepared))
                .and_then(|prepared| prepare_artifacts(&service, files.as_ref(), prepared));
            Input::Prepared {
                service: name,
                run,
                prepared: Box::new(prepared),
            }
        }));
    }

    /// Starts `name` for `run` with what was read for it.
    pub(super) fn launch(
        &mut self,
        name: String,
        run: u64,
        prepared: Result<Prepared, SpawnError>,
    ) {
        let Some(service) = self.supervisor.get(&name).map(|v| v.service.clone()) else {
            // Removed while its secrets were read: their copy goes.
            if let Ok(Prepared {
                credentials: Some(dir),
                ..
            }) = &prepared
            {
                self.drop_credentials(dir);
            }
            return;
        };
        let credential_dir = prepared.as_ref().ok().and_then(|p| p.credentials.clone());
        let result = match (&service.command, prepared) {
            (_, Err(error)) => Err(error),
            (Some(command), Ok(mut prepared)) => {
                let passed = self.passed_sockets(&name);
                let argv = match (&prepared.artifacts, command) {
                    // A line without a shell has nobody else to expand it.
                    (Some(dir), svc::exec::Command::Argv { argv }) => {
                        crate::artifact_links::expand(argv.clone(), dir)
                    }
                    _ => command.argv(),
                };
                let mut env: Vec<(String, String)> = service
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                env.append(&mut prepared.env);
                if let Some(dir) = &prepared.credentials {
                    env.push((
                        crate::credentials::VARIABLE.to_owned(),
                        dir.display().to_string(),
                    ));
                }
                if let Some(dir) = &prepared.artifacts {
                    env.push((
                        crate::artifact_links::VARIABLE.to_owned(),
                        dir.display().to_string(),
                    ));
                }
                let launch = Launch {
                    argv: &argv,
                    env: &env,
                    dir: service.dir.as_deref(),
                    state_dirs: &service.state_dirs,
                    resources: Some(&service.resources),
                    identity: prepared.identity.as_ref(),
                    mounts: prepared.mounts.as_ref(),
                    passed: &passed,
                };
                let spawned = self.sys.spawn(launch, Some(&name));
                // Our copies of the secrets' values go now. (std's Command
                // keeps its own while it builds envp and frees them
                // unwiped: secrets handed over as files avoid that.)
                for (_, value) in &mut env {
                    zeroize::Zeroize::zeroize(value);
                }
                spawned
            }
            (None, Ok(_)) => Err(SpawnError {
                code: 127,
                program: name.clone(),
                message: "a target has no command".into(),
            }),
        };
        match result {
            Ok(pid) => {
                self.service_pids.insert(pid);
                if let Some(dir) = credential_dir {
                    self.credential_dirs.insert(pid, dir);
                }
                self.queue.push_back(Event::Spawned {
                    service: name,
                    run,
                    pid,
                });
            }
            Err(error) => {
                if let Some(dir) = credential_dir {
                    self.drop_credentials(&dir);
                }
                if service.artifacts.iter().any(|a| !a.urls.is_empty()) {
                    self.notices.push(Notice::ArtifactsWanted {
                        service: name.clone(),
                    });
                }
                self.sys.note(&format!("{name}: {error}"));
                self.queue.push_back(Event::SpawnFailed {
                    service: name,
                    run,
                    code: error.code,
                    error: error.to_string(),
                });
            }
        }
    }

    /// The credential directory of `service`'s current run, with its pid.
    pub fn credential_dir(&self, service: &str) -> Option<(i32, std::path::PathBuf)> {
        let pid = self.get(service).and_then(|v| v.pid)?;
        Some((pid, self.credential_dirs.get(&pid)?.clone()))
    }

    /// Sends `signal` to the process group of `service`'s run `pid`; false
    /// when that run is no longer the current one.
    pub fn signal_run(&mut self, service: &str, pid: i32, signal: i32) -> bool {
        if self.get(service).and_then(|v| v.pid) != Some(pid) {
            return false;
        }
        self.sys.signal_group(pid, signal);
        true
    }

    pub(super) fn drop_credentials(&mut self, dir: &std::path::Path) {
        if let Err(error) = self.sys.remove_credentials(dir) {
            self.sys.note(&format!("{}: {error}", dir.display()));
        }
    }
}

/// Links what `service` pinned in `[[artifacts]]` into its
/// `$ARTIFACTS_DIRECTORY` (blocking: run off the loop). One not on the node
/// fails the start, naming it; the supervisor retries with backoff.
fn prepare_artifacts(
    service: &Service,
    files: Option<&Files>,
    mut prepared: Prepared,
) -> Result<Prepared, SpawnError> {
    if service.artifacts.is_empty() {
        return Ok(prepared);
    }
    let fail = |error: crate::artifact_links::LinkError| SpawnError {
        code: 1,
        program: service.name.clone(),
        message: error.to_string(),
    };
    let files = files.ok_or_else(|| fail(crate::artifact_links::LinkError::NoStore))?;
    let store = files
        .artifacts
        .as_ref()
        .ok_or_else(|| fail(crate::artifact_links::LinkError::NoStore))?;
    let owner = prepared
        .identity
        .as_ref()
        .filter(|i| i.uid != 0)
        .map(|i| (i.uid, i.gid));
    let dir = crate::artifact_links::prepare(
        &files.artifact_links,
        &service.name,
        store,
        &service.artifacts,
        owner,
    )
    .map_err(fail)?;
    prepared.artifacts = Some(dir);
    Ok(prepared)
}

/// Plans `service`'s mount namespace (blocking: the paths it names are
/// looked at). A path that is not there fails the start, naming it.
fn prepare_mounts(service: &Service, mut prepared: Prepared) -> Result<Prepared, SpawnError> {
    prepared.mounts = crate::mounts::plan(
        &service.sandbox,
        &service.state_dirs,
        service.dir.as_deref(),
    )
    .map_err(|message| SpawnError {
        code: 1,
        program: service.name.clone(),
        message,
    })?;
    Ok(prepared)
}

/// Who `service` runs as: its `[sandbox]` looked up in the node's
/// `/etc/passwd` and `/etc/group` (blocking: run off the loop). A name
/// that is not there fails the start, saying so.
fn prepare_identity(service: &Service) -> Result<Option<crate::accounts::Identity>, SpawnError> {
    crate::accounts::resolve(&service.sandbox, std::path::Path::new("/")).map_err(|error| {
        SpawnError {
            code: 1,
            program: service.name.clone(),
            message: error.to_string(),
        }
    })
}

/// Reads what `service` needs of the secrets in `files` (blocking: run off
/// the loop): its `[secrets]` values and its credential directory, made now
/// so a changed secret takes effect at this start. Values never reach a log.
fn prepare_secrets(
    service: &Service,
    files: Option<&Files>,
    identity: Option<crate::accounts::Identity>,
) -> Result<Prepared, SpawnError> {
    let fail = |message: String| SpawnError {
        code: 1,
        program: service.name.clone(),
        message,
    };
    let owner = identity.as_ref().map(|i| (i.uid, i.gid));
    let mut prepared = Prepared::default();
    prepared.identity = identity;
    for (variable, secret) in &service.secrets {
        let dir = files
            .map(|f| f.secrets.clone())
            .ok_or_else(|| fail(format!("secret `{secret}` has no store")))?;
        let value = crate::secret::read_regular(&dir.join(secret))
            .map_err(|e| fail(format!("secret `{secret}` is not set ({e})")))?;
        let value = String::from_utf8(value.as_slice().to_vec())
            .map_err(|_| fail(format!("secret `{secret}` is not UTF-8")))?;
        prepared.env.push((variable.clone(), value));
    }
    if !service.credentials.is_empty() {
        let files = files.ok_or_else(|| fail("credentials: this node keeps no secrets".into()))?;
        let dir = crate::credentials::prepare(
            &files.credentials,
            &service.name,
            &files.secrets,
            &service.credentials,
            owner,
        )
        .map_err(|e| fail(format!("credentials: {e}")))?;
        prepared.credentials = Some(dir);
    }
    Ok(prepared)
}
