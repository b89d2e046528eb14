//! Lays out the release binary so that a remote prompt touches little of it.
//!
//! **Link order.** A `pai prompt` executes about 2,400 functions (2.5 MiB of code) scattered
//! over 24 MiB of text; the kernel maps a binary's pages 64 KiB at a time around each page
//! it faults, so that scatter cost about 11 MiB of resident memory for 2.5 MiB of code.
//! `link-order.txt` lists those functions (their symbols, in the order runs first execute
//! them); lld places them first, together (docs/benchmarks.md). Symbols the list names
//! that a build lacks are skipped, so a stale list costs memory, never correctness.
//!
//! The list goes stale as the code changes: symbols carry a hash of their crate's build
//! settings and dependencies (a new dependency, a changed feature, even the profile's
//! `strip` setting renames most of them). `cargo xtask link-order` regenerates it from the
//! release build at hand: it sets `PAI_LINK_MAP=FILE`, for which this script has the
//! linker write its map (every section and symbol with its address, the symbols mangled)
//! to FILE, and traces runs under valgrind against that map.
//!
//! **Packed relocations.** The binary is position-independent, and its 76,000 relative
//! relocations took 1.8 MB (`.rela.dyn`) that the loader reads at every start and that then
//! stay resident; `-z pack-relative-relocs` stores them in about 20 KB (`DT_RELR`). Such a
//! binary needs glibc 2.36 or later to start, so this is done only when the glibc this
//! builds against (the build machine's: the target is the host) is that recent; release
//! archives for Linux are static musl binaries, which this never touches.
//!
//! Both only for release builds for x86_64 Linux (glibc) linked by rustc's own lld (the
//! default there since Rust 1.90): other linkers may not know the options. A configured
//! linker, or `PAI_LINK_ORDER=0`, leaves the layout to the linker.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    println!("cargo::rerun-if-env-changed=PAI_LINK_ORDER");
    println!("cargo::rerun-if-env-changed=PAI_LINK_MAP");
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
    if env("HOST") == env("TARGET") && glibc_minor().is_some_and(|m| m >= 36) {
        println!("cargo::rustc-link-arg-bin=pai=-Wl,-z,pack-relative-relocs");
    }
    if let Some(map) = std::env::var_os("PAI_LINK_MAP") {
        println!(
            "cargo::rustc-link-arg-bin=pai=-Wl,-Map={}",
            std::path::Path::new(&map).display()
        );
        // The map names symbols as the ordering file must: mangled.
        println!("cargo::rustc-link-arg-bin=pai=-Wl,--no-demangle");
    }
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

/// The minor version of this machine's glibc (`glibc 2.36` gives 36), from `getconf`.
// As above: a build-time query of the machine, not a path out of a user's session.
#[allow(clippy::disallowed_methods)]
fn glibc_minor() -> Option<u32> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.trim().strip_prefix("glibc ")?;
    let mut parts = version.split('.');
    (parts.next()? == "2").then_some(())?;
    parts.next()?.parse().ok()
}
