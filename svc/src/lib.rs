//! Service definitions for spore.
//!
//! This crate decides; it never touches the system (it has no system
//! crate to do it with: the `runtime` crate carries out its decisions). It
//! reads the account files a `[sandbox]` names users in (`accounts`), and service files
//! (hero_proc's TOML schema and zinit 0.3's richer sections), validates each
//! one alone, builds the dependency graph between them and plans the order in
//! which they start and stop.
//!
//! ```text
//! load_dir(dir) ─▶ LoadReport { services, errors } ─▶ Graph ─▶ Plan
//! ```

pub mod accounts;
pub mod error;
pub mod exec;
pub mod graph;
pub mod load;
pub mod parse;
pub mod service;
pub mod supervisor;
/// Time spans as people write them (the `timespan` leaf crate).
pub use timespan;

pub mod position;
mod section;
pub mod suggest;

pub use error::{ConfigError, ErrorKind};
pub use exec::Command;
pub use graph::{Graph, Plan};
pub use load::{load_dir, load_layers, LoadError, LoadReport};
pub use parse::parse_service;
pub use service::Service;
