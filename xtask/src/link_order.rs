//! `cargo xtask link-order [--check]`: the release binary's link order, regenerated from
//! the build at hand (`crates/pai-cli/link-order.txt`, applied by `crates/pai-cli/build.rs`).
//!
//! A remote prompt runs about 2,000 functions scattered over 20 MiB of code, and the kernel
//! maps 64 KiB around every page a process faults in, so the scatter, not the code, makes
//! most of a prompt's peak RSS. The list names those functions, in the order a run first
//! executes them, and lld places them first. Symbols carry a hash of their crate's build
//! settings and dependencies, so a new dependency or feature (or another `strip` setting)
//! renames most of them and the list goes stale: this command writes it anew.
//!
//! How: builds the release binary exactly as users get it, with `PAI_LINK_MAP` set so that
//! the linker also writes its map (each input section, its address and its symbols); runs
//! `--version`, `status` and prompt round trips (streamed, not, one tool round) against
//! `cargo xtask bench`'s mock under `valgrind --tool=lackey --trace-superblocks=yes`, which
//! prints the address of every block of code as it first runs; maps those addresses to the
//! sections of the map (valgrind loads the binary at another base, read from the loader's
//! `AT_ENTRY`), and writes their symbols in first-run order. Then it builds again with the
//! new list and reports how much of it the build has and how compact it is.
//!
//! `--check` only builds with the map and reports how many of the listed symbols the build
//! still has, to see whether the list needs regenerating; `cargo xtask bench` does the same
//! with its build and warns when under 90 % are left. Regenerating needs valgrind on `PATH`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::bench;

/// The runs traced, in this order: what a user most often runs.
const CASES: &[&[&str]] = &[
    &["--version"],
    &["status"],
    &["prompt", "--stream", "hi"],
    &["prompt", "--no-stream", "hi"],
    &["prompt", "--no-stream", "use-a-tool"],
];

/// The kernel's fault-around window, for the report.
const WINDOW: u64 = 64 * 1024;

/// One input section of the binary's code, as the linker map gives it.
struct Section {
    start: u64,
    size: u64,
    symbols: Vec<String>,
}

pub fn run(check_only: bool) -> Result<()> {
    let root = bench::workspace_root()?;
    let list_path = root.join("crates/pai-cli/link-order.txt");
    let map_path = map_path(&root);
    if !laid_out() {
        bail!(
            "crates/pai-cli/build.rs lays out release builds only on x86_64 Linux with glibc, and not with PAI_LINK_ORDER=0"
        );
    }
    let bin = build_release(&root)?;
    if !map_path.exists() {
        bail!(
            "the build wrote no linker map at {} (a configured linker, or rustflags naming one, turn the layout off)",
            map_path.display()
        );
    }
    if check_only {
        return Ok(());
    }
    let sections = read_map(&map_path)?;
    let Some(valgrind) = bench::on_path("valgrind") else {
        bail!("valgrind is not on PATH: install it (Debian: apt-get install valgrind)");
    };

    let run = bench::MockRun::start("link-order", &bin)?;
    let entry = elf_entry(&bin)?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for args in CASES {
        let log = std::env::temp_dir().join(format!("pai-link-order-{}.log", std::process::id()));
        let mut cmd = run.command(&valgrind, &[]);
        cmd.arg("--tool=lackey")
            .arg("--trace-superblocks=yes")
            .arg(format!("--log-file={}", log.display()))
            .arg(&bin)
            .args(*args)
            // The loader prints the auxiliary vector first: AT_ENTRY says where valgrind
            // put the binary.
            .env("LD_SHOW_AUXV", "1");
        let out = cmd.output()?;
        if !out.status.success() {
            bail!(
                "valgrind pai {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let loaded = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("AT_ENTRY:"))
            .filter_map(|v| u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
            .next_back()
            .context("the loader did not print AT_ENTRY (LD_SHOW_AUXV)")?;
        let base = loaded.wrapping_sub(entry);
        let before = order.len();
        let file = std::fs::File::open(&log).with_context(|| format!("open {}", log.display()))?;
        for line in BufReader::new(file).lines() {
            let line = line?;
            let Some(addr) = line.strip_prefix("SB ") else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr.trim().trim_start_matches("0x"), 16) else {
                continue;
            };
            if let Some(i) = section_at(&sections, addr.wrapping_sub(base))
                && seen.insert(i)
            {
                order.push(i);
            }
        }
        let _ = std::fs::remove_file(&log);
        eprintln!(
            "pai {}: {} more functions",
            args.join(" "),
            order.len() - before
        );
    }

    let mut list = Vec::new();
    let mut listed = HashSet::new();
    for &i in &order {
        for symbol in &sections[i].symbols {
            if listed.insert(symbol.clone()) {
                list.push(symbol.clone());
            }
        }
    }
    let mut text = list.join("\n");
    text.push('\n');
    std::fs::write(&list_path, text).with_context(|| format!("write {}", list_path.display()))?;
    eprintln!(
        "wrote {} symbols ({} sections) to {}",
        list.len(),
        order.len(),
        list_path.display()
    );

    build_release(&root)?;
    Ok(())
}

/// Builds the release binary as users get it (plus, where build.rs lays it out, the
/// linker's map beside it), says how much of the link order the build has, and returns the
/// binary's path.
pub(crate) fn build_release(root: &Path) -> Result<PathBuf> {
    let map = map_path(root);
    let map_str = map
        .to_str()
        .context("the target directory's path is not UTF-8")?;
    // Set even where build.rs ignores it, so that alternating with `cargo xtask bench` (or
    // `link-order`) never relinks just for it.
    crate::cargo(
        &["build", "--release", "-p", "pai-cli"],
        &[("PAI_LINK_MAP", map_str)],
    )?;
    if laid_out() && map.exists() {
        let list = read_list(&root.join("crates/pai-cli/link-order.txt"))?;
        let present = report("the link order", &list, &read_map(&map)?);
        if present * 10 < list.len() * 9 {
            eprintln!(
                "warning: the link order is stale (a dependency, feature or profile change renamed its symbols); run `cargo xtask link-order` (valgrind) to regenerate it"
            );
        }
    }
    Ok(map.with_file_name("pai"))
}

/// Whether `crates/pai-cli/build.rs` lays out this machine's release build (its other
/// conditions, a configured linker, leave no map behind).
fn laid_out() -> bool {
    cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    )) && std::env::var("PAI_LINK_ORDER").as_deref() != Ok("0")
}

fn map_path(root: &Path) -> PathBuf {
    crate::local::target_dir(root).join("release/pai.map")
}

/// How many of `list`'s symbols the build has (returned), and over how much code they sit.
fn report(what: &str, list: &[String], sections: &[Section]) -> usize {
    let by_symbol: HashMap<&str, usize> = sections
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.symbols.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let found: HashSet<usize> = list
        .iter()
        .filter_map(|s| by_symbol.get(s.as_str()).copied())
        .collect();
    let bytes: u64 = found.iter().map(|&i| sections[i].size).sum();
    let windows: HashSet<u64> = found
        .iter()
        .flat_map(|&i| {
            let s = &sections[i];
            (s.start / WINDOW)..=((s.start + s.size.max(1) - 1) / WINDOW)
        })
        .collect();
    let present = list
        .iter()
        .filter(|s| by_symbol.contains_key(s.as_str()))
        .count();
    eprintln!(
        "{what}: {present} of {} symbols are in this build; their code, {:.1} MiB, spans {} windows of 64 KiB ({:.1} MiB)",
        list.len(),
        bytes as f64 / 1048576.0,
        windows.len(),
        (windows.len() as u64 * WINDOW) as f64 / 1048576.0
    );
    present
}

fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The code's input sections from lld's map, sorted by address. Its lines are `VMA LMA
/// Size Align` and then an output section (one space), an input section (`file:(name)`,
/// nine spaces) or a symbol (seventeen) after them.
fn read_map(path: &Path) -> Result<Vec<Section>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut sections: Vec<Section> = Vec::new();
    let mut in_text = false;
    let mut in_section = false;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let Some((fields, rest)) = split_fields(&line) else {
            continue;
        };
        let [vma, _lma, size, _align] = fields;
        let depth = rest.len() - rest.trim_start().len();
        let name = rest.trim();
        match depth {
            1 => {
                in_text = name == ".text" || name.starts_with(".text.");
                in_section = false;
            }
            9 if in_text => {
                in_section = size > 0;
                if in_section {
                    sections.push(Section {
                        start: vma,
                        size,
                        symbols: Vec::new(),
                    });
                }
            }
            17 if in_text && in_section => {
                if let Some(s) = sections.last_mut() {
                    s.symbols.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    sections.retain(|s| !s.symbols.is_empty());
    sections.sort_by_key(|s| s.start);
    if sections.is_empty() {
        bail!("{} lists no code sections", path.display());
    }
    Ok(sections)
}

/// The four numbers leading a map line, and what follows them.
fn split_fields(line: &str) -> Option<([u64; 4], &str)> {
    let mut fields = [0u64; 4];
    let mut rest = line;
    for (i, field) in fields.iter_mut().enumerate() {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ')?;
        let radix = if i == 3 { 10 } else { 16 };
        *field = u64::from_str_radix(&trimmed[..end], radix).ok()?;
        rest = &trimmed[end..];
    }
    Some((fields, rest))
}

/// The section holding `addr`, by its index.
fn section_at(sections: &[Section], addr: u64) -> Option<usize> {
    let i = sections
        .partition_point(|s| s.start <= addr)
        .checked_sub(1)?;
    (addr < sections[i].start + sections[i].size).then_some(i)
}

/// The entry point address in an ELF64 header.
fn elf_entry(bin: &Path) -> Result<u64> {
    let mut head = [0u8; 0x20];
    std::fs::File::open(bin)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("read {}", bin.display()))?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 {
        bail!("{} is not a 64-bit ELF file", bin.display());
    }
    let bytes: [u8; 8] = head[0x18..0x20].try_into()?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines_split_into_numbers_and_depth() {
        let (f, rest) =
            split_fields("          7ea800           7ea800      260    16         a.o:(.text.f)")
                .unwrap();
        assert_eq!(f, [0x7ea800, 0x7ea800, 0x260, 16]);
        assert_eq!(rest.len() - rest.trim_start().len(), 9);
        assert!(split_fields("             VMA              LMA     Size Align Out").is_none());
    }

    #[test]
    fn addresses_find_their_section() {
        let s = |start, size| Section {
            start,
            size,
            symbols: vec![format!("f{start}")],
        };
        let sections = [s(0x100, 0x10), s(0x120, 0x20)];
        assert_eq!(section_at(&sections, 0x100), Some(0));
        assert_eq!(section_at(&sections, 0x10f), Some(0));
        assert_eq!(section_at(&sections, 0x110), None);
        assert_eq!(section_at(&sections, 0x13f), Some(1));
        assert_eq!(section_at(&sections, 0x50), None);
    }
}
