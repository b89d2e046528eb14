//! Chunk vectors and hybrid search, with a deterministic stand-in for the embedding model
//! (a bag of concepts: synonyms share one), so that what is found by meaning alone is
//! known in advance.

use std::sync::{Arc, Mutex};

use pai_resources::{
    Embed, Filter, NewDocument, ResourceError, ResourceStore, SearchMode, SearchOptions,
    SqliteStore,
};
use pai_types::DataClass;
use pretty_assertions::assert_eq;

const DIMS: usize = 8;

/// Each word adds one to its concept's component; synonyms share a concept.
#[derive(Debug, Default)]
struct Concepts {
    calls: Mutex<usize>,
}

fn concept(word: &str) -> usize {
    match word {
        "car" | "automobile" | "vehicle" => 0,
        "engine" | "motor" => 1,
        "banana" => 2,
        "bread" | "loaf" => 3,
        "recipe" | "instructions" => 4,
        w => 5 + w.len() % 3,
    }
}

impl Embed for Concepts {
    fn model(&self) -> &str {
        "concepts@test"
    }
    fn dims(&self) -> usize {
        DIMS
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        *self.calls.lock().unwrap() += 1;
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = [0f32; DIMS];
                for w in t
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    v[concept(&w.to_lowercase())] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|x| x / n).collect()
            })
            .collect())
    }
}

fn doc(source: &str, title: &str, text: &str) -> NewDocument {
    NewDocument {
        title: title.into(),
        source: source.into(),
        media_type: "text/plain".into(),
        tags: vec![],
        class: DataClass::Internal,
        size: text.len() as u64,
        sha256: format!("{}-{}", source, text.len()),
        text: text.into(),
        etag: None,
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("resources.db")).unwrap();
    (dir, store)
}

fn vectors_in(store: &SqliteStore) -> u64 {
    store.vector_stats().unwrap().with_vectors
}

#[test]
fn without_a_model_nothing_changes() {
    let (_dir, store) = open();
    store
        .add(doc("note:a", "Cars", "car engine repair"))
        .unwrap();
    let found = store.search("car", &SearchOptions::default()).unwrap();
    assert_eq!(found.mode, SearchMode::Bm25);
    assert_eq!(found.hits.len(), 1);
    let stats = store.vector_stats().unwrap();
    assert_eq!((stats.model, stats.with_vectors), (None, 0));
}

#[test]
fn vectors_are_stored_at_import_used_by_search_and_removed_with_the_document() {
    let (_dir, store) = open();
    let model = Arc::new(Concepts::default());
    store.set_embedder(model.clone());
    store
        .add(doc("note:car", "Workshop", "car engine repair and oil"))
        .unwrap();
    store
        .add(doc(
            "note:bake",
            "Kitchen",
            "banana bread recipe with walnuts",
        ))
        .unwrap();
    assert_eq!(vectors_in(&store), 2);

    // No word in common with either document: BM25 finds nothing, the vectors do.
    let q = "automobile motor";
    let bm25 = store
        .search(
            q,
            &SearchOptions {
                bm25_only: true,
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_eq!((bm25.mode, bm25.hits.len()), (SearchMode::Bm25, 0));
    let hybrid = store.search(q, &SearchOptions::default()).unwrap();
    assert_eq!(hybrid.mode, SearchMode::Hybrid);
    assert_eq!(hybrid.hits[0].title, "Workshop");
    // Its snippet is the chunk's opening (no word to highlight).
    assert_eq!(hybrid.hits[0].snippet, "car engine repair and oil");

    // A word match and a meaning match agree: first, highlighted.
    let both = store
        .search("bread loaf", &SearchOptions::default())
        .unwrap();
    assert_eq!(both.hits[0].title, "Kitchen");
    assert!(
        both.hits[0].snippet.contains("**bread**"),
        "{:?}",
        both.hits[0]
    );

    // Filters apply to the vector side too.
    let only_kitchen = store
        .search(
            q,
            &SearchOptions {
                filter: Filter {
                    ids: Some(vec![2]),
                    ..Filter::default()
                },
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert!(
        only_kitchen.hits.iter().all(|h| h.id == 2),
        "{only_kitchen:?}"
    );

    // Replaced text: new vectors for the new chunks, the old ones gone.
    store
        .add(doc(
            "note:car",
            "Workshop",
            "vehicle motor tuning, and a long note about tyres",
        ))
        .unwrap();
    assert_eq!(vectors_in(&store), 2);
    // Removed: its vectors go with its chunks.
    store.remove(&[1]).unwrap();
    assert_eq!(vectors_in(&store), 1);
    store.remove(&[2]).unwrap();
    assert_eq!(vectors_in(&store), 0);
}

#[test]
fn unchanged_documents_are_not_embedded_again() {
    let (_dir, store) = open();
    let model = Arc::new(Concepts::default());
    store.set_embedder(model.clone());
    store.add(doc("note:a", "A", "car engine")).unwrap();
    let calls = *model.calls.lock().unwrap();
    store.add(doc("note:a", "A", "car engine")).unwrap();
    assert_eq!(*model.calls.lock().unwrap(), calls);
}

#[test]
fn vectors_are_filled_in_for_chunks_stored_before_the_model() {
    let (_dir, store) = open();
    store
        .add(doc("note:car", "Workshop", "car engine repair"))
        .unwrap();
    store
        .add(doc("note:bake", "Kitchen", "banana bread"))
        .unwrap();
    // A model set later: nothing stored of it yet, so searches stay BM25 and the model
    // is not even loaded.
    let loaded = Arc::new(Mutex::new(false));
    let flag = loaded.clone();
    store.set_embedder_loader("concepts@test", move || {
        *flag.lock().unwrap() = true;
        Ok(Arc::new(Concepts::default()) as Arc<dyn Embed>)
    });
    let found = store
        .search("automobile", &SearchOptions::default())
        .unwrap();
    assert_eq!(found.mode, SearchMode::Bm25);
    assert!(!*loaded.lock().unwrap());

    let mut seen = Vec::new();
    let n = store
        .fill_vectors(&mut |done, todo| seen.push((done, todo)))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(seen.last(), Some(&(2, 2)));
    assert_eq!(store.fill_vectors(&mut |_, _| {}).unwrap(), 0);
    let found = store
        .search("automobile", &SearchOptions::default())
        .unwrap();
    assert_eq!(found.mode, SearchMode::Hybrid);
    assert_eq!(found.hits[0].title, "Workshop");
}

#[test]
fn a_model_that_cannot_load_says_how_to_search_without_it() {
    let (_dir, store) = open();
    store.set_embedder_loader("broken@0", || Err("model.safetensors is truncated".into()));
    let err = store.add(doc("note:a", "A", "text")).unwrap_err();
    assert!(matches!(err, ResourceError::Embedding(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("model.safetensors is truncated"), "{msg}");
    assert!(
        msg.contains("--bm25") && msg.contains("embeddings = false"),
        "{msg}"
    );
}
