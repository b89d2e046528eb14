//! Embedding pai-core in another program, the same way the `pai` CLI does.
//!
//! ```sh
//! cargo run -p pai-core --example embed -- http://127.0.0.1:8080/v1 my-model "Hello!"
//! ```
//!
//! It keeps its data in a temporary PAI home, so it touches none of your sessions.

use std::sync::Arc;

use pai_audit::SqliteAudit;
use pai_core::{
    Config, ContextManager, Engine, Event, Limits, Paths, SessionMeta, SessionStore, Turn,
    resolve_provider,
};
use pai_types::{Mode, SessionName};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(base_url), Some(model)) = (args.next(), args.next()) else {
        eprintln!("usage: embed <base-url> <model> [prompt]");
        std::process::exit(2);
    };
    let prompt = args
        .next()
        .unwrap_or_else(|| "Say hello in five words.".into());

    let home = tempfile::tempdir()?;
    let paths = Paths::new(home.path().join("data"), home.path().join("config"));
    let config = Config::default();
    let store = SessionStore::new(paths.clone());

    let name = SessionName::new("embedded")?;
    let mut meta = SessionMeta::new(name.clone(), "openai", &model);
    meta.base_url = Some(base_url);
    store.create(&meta, false)?;

    let resolved = resolve_provider(&meta, &config, &paths)?;
    let engine = Engine::new(
        Arc::from(pai_providers::connect(resolved.config)?),
        Arc::new(SqliteAudit::open(&paths.audit_db())?),
        store,
        ContextManager::new(config.context),
    );
    let turn = Turn {
        session: name,
        mode: Mode::Prompt,
        input: prompt,
        stream: true,
        model: None,
        limits: Limits::default(),
    };
    let outcome = engine
        .run(&turn, &mut |event| {
            if let Event::Delta(text) = event {
                print!("{text}");
            }
        })
        .await?;
    println!("\n[{} tokens]", outcome.usage.total());
    Ok(())
}
