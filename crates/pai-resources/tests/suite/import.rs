use std::fs;

use pai_resources::{
    Filter, ImportOptions, Importer, Outcome, ResourceStore, SearchOptions, SqliteStore,
};
use pretty_assertions::assert_eq;

#[test]
fn a_folder_is_imported_incrementally_with_bad_files_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    fs::create_dir_all(docs.join("sub")).unwrap();
    fs::write(docs.join("a.md"), "# Alpha guide\n\nhow to brew coffee").unwrap();
    fs::write(docs.join("sub/b.txt"), "tea notes").unwrap();
    fs::write(docs.join("bin.dat"), b"\x00\x01\x02binary").unwrap();
    fs::write(docs.join("latin1.txt"), b"caf\xe9").unwrap();
    fs::write(docs.join("big.txt"), "x".repeat(3000)).unwrap();
    fs::write(docs.join("ignored.md"), "should not be here").unwrap();
    fs::write(docs.join(".gitignore"), "ignored.md\n").unwrap();
    fs::write(
        docs.join("page.html"),
        "<html><body><p>html body text</p></body></html>",
    )
    .unwrap();

    let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
    let opts = ImportOptions {
        tags: vec!["kb".into()],
        max_file_bytes: 2048,
        ..ImportOptions::default()
    };
    let html = |b: &[u8]| {
        Ok(String::from_utf8_lossy(b)
            .replace("<p>", "")
            .replace("</p>", ""))
    };
    let importer = Importer::new(&store, opts.clone()).with_html(&html);
    let mut lines = Vec::new();
    let arg = docs.to_str().unwrap().to_string();
    let report = importer.add(std::slice::from_ref(&arg), &mut |item| {
        let name = item
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let what = match &item.outcome {
            Outcome::Added(_) => "added".to_string(),
            Outcome::Skipped(r) => format!("skipped: {r}"),
            other => format!("{other:?}"),
        };
        lines.push(format!("{name}: {what}"));
    });
    assert_eq!(
        lines,
        vec![
            "a.md: added",
            "big.txt: skipped: larger than 2 KiB",
            "bin.dat: skipped: binary file",
            "latin1.txt: skipped: not valid UTF-8 text",
            "page.html: added",
            "b.txt: added",
        ]
    );
    assert_eq!((report.added, report.skipped, report.failed), (3, 3, 0));
    let docs_stored = store.list(&Filter::default()).unwrap();
    assert_eq!(docs_stored[0].title, "Alpha guide");
    assert_eq!(docs_stored[0].tags, vec!["kb"]);
    assert!(docs_stored[0].source.starts_with("file:///"));
    assert_eq!(
        store
            .search("coffee", &SearchOptions::default())
            .unwrap()
            .hits[0]
            .title,
        "Alpha guide"
    );
    assert_eq!(
        store
            .search("html body", &SearchOptions::default())
            .unwrap()
            .hits
            .len(),
        1
    );

    // Again: unchanged files are skipped, a changed one replaced.
    fs::write(docs.join("sub/b.txt"), "green tea notes").unwrap();
    let again = Importer::new(&store, opts)
        .with_html(&html)
        .add(&[arg], &mut |_| {});
    assert_eq!((again.added, again.updated, again.unchanged), (0, 1, 2));
    assert_eq!(
        store
            .search("green", &SearchOptions::default())
            .unwrap()
            .hits
            .len(),
        1
    );
}

#[test]
fn globs_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("x.md"), "x marks").unwrap();
    fs::write(dir.path().join("y.txt"), "y marks").unwrap();
    let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
    let importer = Importer::new(&store, ImportOptions::default());
    let pattern = format!("{}/*.md", dir.path().display());
    let missing = format!("{}/nope.md", dir.path().display());
    let mut failed = Vec::new();
    let report = importer.add(&[pattern, missing], &mut |item| {
        if let Outcome::Failed(r) = &item.outcome {
            failed.push(r.clone());
        }
    });
    assert_eq!((report.added, report.failed), (1, 1));
    assert_eq!(failed, vec!["does not exist"]);
}
