//! The demo: placeholder replaced below.
fn main() {}
