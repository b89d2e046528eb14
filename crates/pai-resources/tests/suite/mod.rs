// clippy.toml allows unwrap in `#[test]` functions only; the suite's helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod import;
mod store;
mod vectors;
