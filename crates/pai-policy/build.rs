//! Turns `src/detect/rules.toml` (the secret rules, kept as readable data) into JSON in
//! `OUT_DIR`: the binary parses JSON several times faster than TOML, and every `pai`
//! process that scans text pays that parse once. The TOML stays the source of truth.

use std::path::PathBuf;

fn main() {
    let source = "src/detect/rules.toml";
    println!("cargo::rerun-if-changed={source}");
    let text = std::fs::read_to_string(source).unwrap_or_else(|e| panic!("read {source}: {e}"));
    let value: serde_json::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{source} is not valid TOML: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("rules.json");
    std::fs::write(&out, value.to_string())
        .unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}
