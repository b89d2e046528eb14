//! Hybrid search through the real binary, with a tiny BERT embedding model the test
//! writes itself (no download): `pai models add` installs it, `pai resources add` stores
//! chunk vectors, a query with no word in common with a document finds it by meaning
//! only in a hybrid search, `--bm25` and `[resources] embeddings = false` go back to
//! BM25, `reindex --embeddings` fills in vectors, and `rm` takes them away. A model that
//! breaks later fails the search command with advice, while a turn's search falls back to
//! BM25 and says so.

use std::fs;

use pretty_assertions::assert_eq;
use serde_json::json;

use super::Pai;
use super::tools::{Script, answer, tool_call};

/// "automobile" shares its embedding with "car", "motor" with "engine".
const SYNONYMS: &[&[&str]] = &[
    &["car", "automobile"],
    &["engine", "motor"],
    &["banana"],
    &["bread"],
    &["recipe"],
    &["tyre"],
];

fn corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("workshop.txt"), "car engine\n").unwrap();
    fs::write(dir.path().join("kitchen.txt"), "banana bread recipe\n").unwrap();
    dir
}

fn search(pai: &Pai, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["resources", "search"];
    all.extend_from_slice(args);
    all.push("--json");
    pai.run(&all).success().json()
}

/// The line `reindex --embeddings` ends with: "N chunks embedded; A of B chunks have …".
fn vector_line(pai: &Pai) -> String {
    let out = pai
        .run(&["resources", "reindex", "--embeddings"])
        .success()
        .stdout;
    out.lines().last().unwrap_or_default().to_string()
}

#[test]
fn an_embedding_model_makes_search_hybrid_and_its_vectors_go_with_their_documents() {
    let pai = Pai::new();
    let docs = corpus();
    let dir = docs.path().display().to_string();

    // Documents imported before any model: BM25, and no word of the query matches.
    pai.run(&["resources", "add", &dir]).success();
    let before = search(&pai, &["automobile motor"]);
    assert_eq!(before["mode"], "bm25");
    assert_eq!(before["hits"].as_array().unwrap().len(), 0);

    // The model is installed from its directory and checked by running it.
    let model = tempfile::tempdir().unwrap();
    pai_test_support::write_tiny_bert(model.path(), SYNONYMS);
    let added = pai
        .run(&[
            "models",
            "add",
            &model.path().display().to_string(),
            "--json",
        ])
        .success()
        .json();
    assert_eq!(added["kind"], "embedding");
    assert_eq!(added["dims"], 32);
    let local = pai.run(&["models", "local", "--json"]).success().json();
    assert_eq!(local[0]["kind"], "embedding");

    // Documents stored before it have no vectors yet: still BM25, until reindex fills
    // them in.
    assert_eq!(search(&pai, &["automobile motor"])["mode"], "bm25");
    let line = vector_line(&pai);
    assert!(
        line.starts_with("2 chunks embedded; 2 of 2 chunks have vectors of "),
        "{line}"
    );

    // Hybrid: the workshop note is found by meaning alone, first.
    let hybrid = search(&pai, &["automobile motor"]);
    assert_eq!(hybrid["mode"], "hybrid");
    assert_eq!(hybrid["hits"][0]["title"], "workshop.txt");
    assert_eq!(hybrid["hits"][0]["snippet"], "car engine");
    // --bm25 forces the old path.
    let bm25 = search(&pai, &["automobile motor", "--bm25"]);
    assert_eq!(
        (
            bm25["mode"].as_str(),
            bm25["hits"].as_array().unwrap().len()
        ),
        (Some("bm25"), 0)
    );
    // The text output works the same way.
    let text = pai
        .run(&["resources", "search", "automobile motor"])
        .success();
    assert!(
        text.stdout.starts_with("1. [2] workshop.txt"),
        "{}",
        text.stdout
    );

    // A new document gets its vectors at import.
    fs::write(docs.path().join("garage.txt"), "tyre automobile\n").unwrap();
    pai.run(&["resources", "add", &dir]).success();
    let line = vector_line(&pai);
    assert!(
        line.starts_with("0 chunks embedded; 3 of 3 chunks"),
        "{line}"
    );

    // Turned off in config.toml: BM25, and reindex has no model to embed with.
    pai.home.write_config("[resources]\nembeddings = false\n");
    assert_eq!(search(&pai, &["automobile motor"])["mode"], "bm25");
    let refused = pai.run(&["resources", "reindex", "--embeddings"]).failure();
    assert!(
        refused.stderr.contains("no embedding model"),
        "{}",
        refused.stderr
    );
    pai.home.write_config("");

    // Removed documents take their vectors with them.
    pai.run(&["resources", "rm", "1", "3"]).success();
    let line = vector_line(&pai);
    assert!(
        line.starts_with("0 chunks embedded; 1 of 1 chunks"),
        "{line}"
    );
    pai.run(&["resources", "rm", "2"]).success();
    let line = vector_line(&pai);
    assert!(
        line.starts_with("0 chunks embedded; 0 of 0 chunks"),
        "{line}"
    );
    let db = fs::read(pai.home.home().join("resources.db")).unwrap();
    assert!(super::find(&db, b"banana bread recipe").is_none());
}

/// The first file called `name` under `dir`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_turn_searches_by_keyword_when_the_embedding_model_breaks() {
    let (mock, script) = Script::mount(vec![
        tool_call("search_resources", json!({ "query": "car" }), 10),
        answer("It is in the workshop note.", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let model = tempfile::tempdir().unwrap();
    pai_test_support::write_tiny_bert(model.path(), SYNONYMS);
    pai.run(&["models", "add", &model.path().display().to_string()])
        .success();
    let docs = corpus();
    pai.run(&["resources", "add", &docs.path().display().to_string()])
        .success();
    // The installed model's weights are damaged after the import.
    let weights = find_file(&pai.home.home().join("models"), "model.safetensors")
        .expect("the installed model's weights");
    fs::write(&weights, b"truncated").unwrap();

    // The command says so, since its user can act on it...
    let refused = pai.run(&["resources", "search", "car"]).failure();
    assert!(
        refused.stderr.contains("embedding model cannot be used"),
        "{}",
        refused.stderr
    );
    // ...while a turn's search still finds the document by its words, and says how.
    let run = pai
        .run(&["prompt", "--no-stream", "where is the car?"])
        .success();
    assert_eq!(run.stdout, "It is in the workshop note.\n");
    let requests = script.requests();
    assert_eq!(requests.len(), 2);
    let result = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap()
        .to_string();
    assert!(result.contains("keyword matches only"), "{result}");
    assert!(result.contains("workshop.txt"), "{result}");
    assert!(result.contains("**car** engine"), "{result}");
    // The reason stays on this machine: it names files under PAI's home.
    assert!(!result.contains("safetensors"), "{result}");
}
