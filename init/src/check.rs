//! `spore check PATH…`: validate service files, directories of them and
//! spore.toml, and print the plan or the errors.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use svc::{load_dir, ConfigError, LoadReport, Plan};

/// One error as `--json` prints it.
#[derive(Serialize)]
struct JsonError {
    file: String,
    line: usize,
    column: usize,
    message: String,
}

/// The whole `--json` document.
#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    services: Vec<&'a str>,
    start: &'a [Vec<String>],
    stop: Vec<Vec<String>>,
    errors: Vec<JsonError>,
    warnings: Vec<Warning>,
    /// spore.toml problems.
    node_errors: Vec<String>,
}

/// Something valid that an operator should still change.
#[derive(Serialize)]
struct Warning {
    file: String,
    message: String,
}

/// Services that hand secrets over in the environment: valid, but any
/// process of the same user reads /proc/PID/environ, and every child the
/// service starts inherits them.
fn warnings(report: &LoadReport) -> Vec<Warning> {
    report
        .services
        .iter()
        .filter(|s| !s.secrets.is_empty())
        .map(|s| Warning {
            file: s.file.display().to_string(),
            message: format!(
                "[secrets] puts {} in the environment, where any process of the same user reads it (/proc/PID/environ) and every child inherits it; use [credentials] load = [{}] and read $CREDENTIALS_DIRECTORY/NAME",
                s.secrets.keys().cloned().collect::<Vec<_>>().join(", "),
                s.secrets
                    .values()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect()
}

/// What `spore check` read: service files (each alone, or every
/// `*.toml` of a directory) and spore.toml files.
struct Inputs {
    services: Vec<svc::Service>,
    errors: Vec<ConfigError>,
    /// spore.toml problems, `FILE:LINE:COLUMN: …` each.
    node_errors: Vec<String>,
    /// Names of the files whose services failed, so dependents are judged
    /// against them as missing rather than as unknown.
    rejected: std::collections::HashSet<String>,
}

/// A spore.toml is a node file, not a service file.
fn is_node_config(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "spore.toml")
}

fn read(paths: &[std::path::PathBuf]) -> Result<Inputs, String> {
    let mut inputs = Inputs {
        services: Vec::new(),
        errors: Vec::new(),
        node_errors: Vec::new(),
        rejected: std::collections::HashSet::new(),
    };
    for path in paths {
        if path.is_dir() {
            let report = load_dir(path).map_err(|e| e.to_string())?;
            inputs.rejected.extend(
                report
                    .errors
                    .iter()
                    .filter_map(|e| e.file.file_stem()?.to_str().map(str::to_owned)),
            );
            inputs.services.extend(report.services);
            inputs.errors.extend(report.errors);
            continue;
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if is_node_config(path) {
            inputs
                .node_errors
                .extend(crate::config::errors(path, &text));
            continue;
        }
        match svc::parse_service(path, &text) {
            Ok(service) => inputs.services.push(service),
            Err(errors) => {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    inputs.rejected.insert(stem.to_owned());
                }
                inputs.errors.extend(errors);
            }
        }
    }
    Ok(inputs)
}

/// Runs the check; exit 0 when every file is valid, 1 otherwise.
pub fn run(paths: &[std::path::PathBuf], json: bool) -> ExitCode {
    let inputs = match read(paths) {
        Ok(inputs) => inputs,
        Err(error) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "fatal": error }));
            } else {
                eprintln!("error: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let node_errors = inputs.node_errors;
    let report = svc::load::check_together(inputs.services, inputs.errors, inputs.rejected);
    let plan = report.plan();
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if json {
        print_json(&report, &plan, &node_errors);
    } else {
        for error in &node_errors {
            eprintln!("error: {error}");
        }
        print_human(&shown.join(", "), &report, &plan);
    }
    if report.errors.is_empty() && node_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_json(report: &LoadReport, plan: &Plan, node_errors: &[String]) {
    let document = JsonReport {
        ok: report.errors.is_empty() && node_errors.is_empty(),
        services: report.services.iter().map(|s| s.name.as_str()).collect(),
        start: &plan.start,
        stop: plan.stop(),
        errors: report.errors.iter().map(json_error).collect(),
        warnings: warnings(report),
        node_errors: node_errors.to_vec(),
    };
    match serde_json::to_string_pretty(&document) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("error: cannot encode the report: {error}"),
    }
}

fn json_error(error: &ConfigError) -> JsonError {
    JsonError {
        file: error.file.display().to_string(),
        line: error.line,
        column: error.column,
        message: error.kind.to_string(),
    }
}

fn print_human(shown: &str, report: &LoadReport, plan: &Plan) {
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    for warning in warnings(report) {
        eprintln!("warning: {}: {}", warning.file, warning.message);
    }
    println!(
        "{} service(s) valid in {}, {} error(s)",
        report.services.len(),
        shown,
        report.errors.len()
    );
    if plan.start.is_empty() {
        return;
    }
    let chain: Vec<String> = plan.start.iter().map(|layer| layer.join(" + ")).collect();
    println!("start: {}", chain.join(" → "));
    println!("start plan (each layer starts once the layers above are ready):");
    for (n, layer) in plan.start.iter().enumerate() {
        println!("  {:>3}. {}", n + 1, layer.join(", "));
    }
    println!("stop plan:");
    for (n, layer) in plan.stop().iter().enumerate() {
        println!("  {:>3}. {}", n + 1, layer.join(", "));
    }
}
