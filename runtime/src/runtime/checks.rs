//! Running a health check the supervisor asked for: an exec check is a
//! process of the runtime's own, with a deadline; the others are probes.

use svc::service::Probe;
use svc::supervisor::Event;

use super::{ExecCheck, Runtime};
use crate::sys::{CheckRun, Launch, TimerKey};

impl Runtime {
    /// Runs `service`'s `check` for its `run`; the verdict comes back as
    /// [`Event::CheckDone`].
    pub(super) fn run_check(&mut self, service: String, run: u64, check: usize) {
        let Some((spec, env, dir)) = self.supervisor.get(&service).and_then(|v| {
            let spec = v.service.health.get(check).cloned()?;
            let env: Vec<(String, String)> = v
                .service
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Some((spec, env, v.service.dir.clone()))
        }) else {
            return;
        };
        let Probe::Exec { command } = &spec.probe else {
            let run = CheckRun {
                service,
                run,
                check,
            };
            self.sys.probe(run, &spec.probe, spec.timeout);
            return;
        };
        let argv = command.argv();
        let launch = Launch {
            argv: &argv,
            env: &env,
            dir: dir.as_deref(),
            state_dirs: &[],
            resources: None,
            identity: None,
            mounts: None,
            passed: &[],
        };
        match self.sys.spawn(launch, None) {
            Ok(pid) => {
                self.sys
                    .arm_timer(TimerKey::CheckDeadline(pid), spec.timeout);
                self.exec_checks.insert(
                    pid,
                    ExecCheck {
                        service,
                        run,
                        check,
                    },
                );
            }
            Err(error) => {
                self.sys.note(&format!("{service}: health check: {error}"));
                self.queue.push_back(Event::CheckDone {
                    service,
                    run,
                    check,
                    passed: false,
                });
            }
        }
    }
}
