//! The static release spore leaves its unwind tables out (a linker script,
//! `link/no-unwind-tables.ld`): the release profile builds it with
//! `panic = "abort"`, so nothing in it unwinds, and a panic is handled by
//! the panic hook before any unwinding could start (`src/cover.rs`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/no-unwind-tables.ld");
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let musl = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "musl");
    if release && musl {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/link/no-unwind-tables.ld");
    }
}
