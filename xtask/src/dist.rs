//! `cargo xtask docs` and `cargo xtask dist`: what is generated from pai's clap definitions
//! (docs/cli.md, man pages, shell completions) and the release archive that carries them.
//!
//! The definitions live in the `pai` binary, not a library, so the generator is a pai-cli
//! test (`crates/pai-cli/src/generate.rs`); these tasks run it with a variable that tells
//! it where to write.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::cargo;

/// Rewrites docs/cli.md from the clap definitions.
pub fn docs() -> Result<()> {
    cargo(
        &[
            "test",
            "-p",
            "pai-cli",
            "--bin",
            "pai",
            "--",
            "generate::tests::docs_cli_md_is_current",
            "--exact",
        ],
        &[("PAI_UPDATE_DOCS", "1")],
    )?;
    eprintln!("docs/cli.md regenerated");
    Ok(())
}

/// What `cargo xtask dist` was asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DistArgs {
    /// The target triple (default: this machine's).
    pub target: Option<String>,
    /// Build with `cargo zigbuild` (static musl binaries from any Linux host).
    pub zigbuild: bool,
}

impl DistArgs {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut out = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--target" => {
                    out.target = Some(
                        it.next()
                            .context(
                                "--target needs a triple, e.g. --target x86_64-unknown-linux-musl",
                            )?
                            .clone(),
                    );
                }
                "--zigbuild" => out.zigbuild = true,
                other => bail!("unknown dist option '{other}'; use --target TRIPLE and --zigbuild"),
            }
        }
        Ok(out)
    }
}

/// Builds the release binary for a target, generates the man pages and completions, and
/// packs them with README and LICENSE into `dist/pai-<version>-<target>.tar.gz`, with its
/// SHA-256 beside it and in `dist/SHA256SUMS`.
pub fn dist(args: DistArgs) -> Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    check_tag(std::env::var("PAI_RELEASE_TAG").ok().as_deref(), version)?;
    let root = workspace_root();
    let target = match args.target {
        Some(t) => t,
        None => host_triple()?,
    };
    let build = if args.zigbuild { "zigbuild" } else { "build" };
    cargo(
        &[
            build,
            "--release",
            "--locked",
            "-p",
            "pai-cli",
            "--target",
            &target,
        ],
        &[],
    )?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let exe = if target.contains("windows") {
        "pai.exe"
    } else {
        "pai"
    };
    let binary = target_dir.join(&target).join("release").join(exe);

    let dist = root.join("dist");
    let name = archive_stem(version, &target);
    let stage = dist.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("cannot clear {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)
        .with_context(|| format!("cannot create {}", stage.display()))?;
    for (from, to) in [
        (binary, stage.join(exe)),
        (root.join("README.md"), stage.join("README.md")),
        (root.join("LICENSE"), stage.join("LICENSE")),
    ] {
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    assets(&stage)?;

    let archive = format!("{name}.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(dist.join(&archive))
        .arg("-C")
        .arg(&dist)
        .arg(&name)
        .status()
        .context("could not run tar")?;
    if !status.success() {
        bail!("tar failed ({status})");
    }
    let line = checksum_line(&std::fs::read(dist.join(&archive))?, &archive);
    std::fs::write(dist.join(format!("{archive}.sha256")), &line)?;
    write_sums(&dist)?;
    eprintln!("{}", dist.join(&archive).display());
    eprint!("{line}");
    Ok(())
}

/// The man pages and bash/zsh/fish completions, written by pai-cli's generator test.
fn assets(stage: &Path) -> Result<()> {
    let dir = stage.to_str().context("the dist path is not UTF-8")?;
    cargo(
        &[
            "test",
            "-p",
            "pai-cli",
            "--bin",
            "pai",
            "--",
            "generate::tests::man_pages_and_completions_are_generated",
            "--exact",
        ],
        &[("PAI_DIST_ASSETS", dir)],
    )
}

/// `dist/SHA256SUMS` over every archive there, the format `sha256sum -c` reads.
fn write_sums(dist: &Path) -> Result<()> {
    let mut archives: Vec<String> = std::fs::read_dir(dist)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar.gz"))
        .collect();
    archives.sort();
    let mut sums = String::new();
    for a in &archives {
        sums.push_str(&checksum_line(&std::fs::read(dist.join(a))?, a));
    }
    std::fs::write(dist.join("SHA256SUMS"), sums)?;
    Ok(())
}

/// A release tag must name the version being built, or the archives would be misnamed.
fn check_tag(tag: Option<&str>, version: &str) -> Result<()> {
    match tag {
        Some(tag) if !tag.is_empty() && tag != format!("v{version}") => bail!(
            "the tag {tag} does not match the workspace version {version}; tag v{version} or change the version in Cargo.toml"
        ),
        _ => Ok(()),
    }
}

fn archive_stem(version: &str, target: &str) -> String {
    format!("pai-{version}-{target}")
}

/// One line as `sha256sum` prints it: the digest, two spaces, the file name.
fn checksum_line(bytes: &[u8], name: &str) -> String {
    format!("{}  {name}\n", hex::encode(Sha256::digest(bytes)))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("could not run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV named no host triple; pass --target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_lines_read_like_sha256sum() {
        assert_eq!(
            checksum_line(b"abc", "pai-0.1.0-x86_64-unknown-linux-musl.tar.gz"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  pai-0.1.0-x86_64-unknown-linux-musl.tar.gz\n"
        );
    }

    #[test]
    fn a_tag_must_name_the_version() {
        assert!(check_tag(Some("v0.1.0"), "0.1.0").is_ok());
        assert!(check_tag(None, "0.1.0").is_ok());
        assert!(check_tag(Some(""), "0.1.0").is_ok());
        let err = check_tag(Some("v0.2.0"), "0.1.0").unwrap_err().to_string();
        assert!(
            err.contains("does not match the workspace version 0.1.0"),
            "{err}"
        );
    }

    #[test]
    fn options_parse() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            DistArgs::parse(&args(&[
                "--target",
                "aarch64-unknown-linux-musl",
                "--zigbuild"
            ]))
            .unwrap(),
            DistArgs {
                target: Some("aarch64-unknown-linux-musl".into()),
                zigbuild: true
            }
        );
        assert_eq!(DistArgs::parse(&[]).unwrap(), DistArgs::default());
        assert!(DistArgs::parse(&args(&["--target"])).is_err());
        assert!(DistArgs::parse(&args(&["--musl"])).is_err());
    }

    #[test]
    fn sums_cover_every_archive_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pai-0.1.0-b.tar.gz"), b"b").unwrap();
        std::fs::write(dir.path().join("pai-0.1.0-a.tar.gz"), b"a").unwrap();
        std::fs::write(dir.path().join("pai-0.1.0-a.tar.gz.sha256"), b"x").unwrap();
        write_sums(dir.path()).unwrap();
        let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
        assert_eq!(
            sums,
            format!(
                "{}{}",
                checksum_line(b"a", "pai-0.1.0-a.tar.gz"),
                checksum_line(b"b", "pai-0.1.0-b.tar.gz")
            )
        );
        assert_eq!(
            archive_stem("0.1.0", "x86_64-apple-darwin"),
            "pai-0.1.0-x86_64-apple-darwin"
        );
    }
}
