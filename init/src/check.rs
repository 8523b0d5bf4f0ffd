//! `spore check DIR`: validate service files and print the plan or the errors.

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

/// Runs the check; exit 0 when every file is valid, 1 otherwise.
pub fn run(dir: &Path, json: bool) -> ExitCode {
    let report = match load_dir(dir) {
        Ok(report) => report,
        Err(error) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "fatal": error.to_string() })
                );
            } else {
                eprintln!("error: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let plan = report.plan();
    if json {
        print_json(&report, &plan);
    } else {
        print_human(dir, &report, &plan);
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_json(report: &LoadReport, plan: &Plan) {
    let document = JsonReport {
        ok: report.errors.is_empty(),
        services: report.services.iter().map(|s| s.name.as_str()).collect(),
        start: &plan.start,
        stop: plan.stop(),
        errors: report.errors.iter().map(json_error).collect(),
        warnings: warnings(report),
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

fn print_human(dir: &Path, report: &LoadReport, plan: &Plan) {
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    for warning in warnings(report) {
        eprintln!("warning: {}: {}", warning.file, warning.message);
    }
    println!(
        "{} service(s) valid in {}, {} error(s)",
        report.services.len(),
        dir.display(),
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
