//! Lays out the release binary's code so that what a remote prompt runs sits together.
//!
//! A `pai prompt` executes about 2,000 functions (2.3 MiB of code) scattered over 21 MiB of
//! text; the kernel maps a binary's pages 64 KiB at a time around each page it faults, so
//! that scatter cost about 11 MiB of resident memory for 2.3 MiB of code. `link-order.txt`
//! lists those functions (their symbols, in the order a prompt first calls them, taken
//! from `valgrind --tool=callgrind` of `pai prompt --stream hi` against `cargo xtask
//! bench`'s mock); lld places them first, together, and peak RSS falls from about 18.7 to
//! 10–11 MiB (docs/benchmarks.md). Symbols the list names that a build lacks (renamed
//! functions, other versions of a dependency) are skipped, so a stale list costs memory,
//! never correctness.
//!
//! Only for release builds for x86_64 Linux linked by rustc's own lld (the default there
//! since Rust 1.90): other linkers do not know the option. A configured linker, or
//! `PAI_LINK_ORDER=0`, leaves the order to the linker.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    println!("cargo::rerun-if-env-changed=PAI_LINK_ORDER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let wanted = env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && env("PAI_LINK_ORDER") != "0"
        // A linker of the user's choosing may not be lld.
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && rustc_minor().is_some_and(|m| m >= 90);
    if !wanted {
        return;
    }
    let list = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("link-order.txt");
    println!(
        "cargo::rustc-link-arg-bin=pai=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo::rustc-link-arg-bin=pai=-Wl,--no-warn-symbol-ordering");
}

/// The minor version of the compiler cargo builds with (`rustc 1.95.0 …` gives 95).
// The egress rule is about what pai runs; this runs the compiler, at build time.
#[allow(clippy::disallowed_methods)]
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("-V").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
