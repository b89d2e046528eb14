//! `config.toml` and how a session's provider, endpoint, locality and key are resolved.
//!
//! Which key wins depends on environment variables, and the workspace forbids the
//! `unsafe` that `std::env::set_var` needs. So the env-dependent checks run in a child
//! process (this test binary, filtered to one test) with a cleared, scripted environment;
//! the checks that need no environment run here.

use std::process::Command;

use pai_core::{
    Config, ContextSettings, CoreError, KeySource, NetworkSettings, Paths, SessionMeta, Vault,
    key_source, resolve_provider, session_endpoint,
};
use pai_providers::ProviderKind;
use pai_types::{Locality, Secret};
use pretty_assertions::assert_eq;

use super::{name, temp_store};

/// Paths for sessions that never look in the home (only `local` ones do).
fn no_home() -> Paths {
    Paths::new("/nonexistent/pai-home", "/nonexistent/pai-config")
}

/// The provider `meta` names, as the default configuration knows it.
fn entry(meta: &SessionMeta) -> pai_providers::ProviderEntry {
    Config::default().provider_entry(&meta.provider).unwrap()
}

#[test]
fn config_load_reads_every_setting_and_defaults_the_rest() {
    let (home, _store) = temp_store();
    let path = home.config().join("config.toml");
    assert_eq!(Config::load(&path).unwrap(), Config::default());

    std::fs::write(
        &path,
        "[network]\nconnect_timeout_secs = 3\nmax_retries = 0\n\n\
         [context]\nsystem_prompt = \"be brief\"\nsummary_threshold_tokens = 500\ncontext_window = 4096\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config,
        Config {
            network: NetworkSettings {
                connect_timeout_secs: 3,
                max_retries: 0,
                ..NetworkSettings::default()
            },
            context: ContextSettings {
                system_prompt: "be brief".into(),
                summary_threshold_tokens: 500,
                context_window: 4096,
                ..ContextSettings::default()
            },
            ..Config::default()
        }
    );
    // The network settings reach the provider.
    let meta = SessionMeta::new(name("s"), "lmstudio", "m");
    assert_eq!(
        resolve_provider(&meta, &config, &no_home())
            .unwrap()
            .config
            .net,
        config.network.to_net()
    );

    std::fs::write(&path, "[context]\nwindow = 1\n").unwrap();
    match Config::load(&path).unwrap_err() {
        CoreError::Config { path: p, detail } => {
            assert_eq!(p, path);
            assert!(detail.contains("unknown field `window`"), "{detail}");
            assert!(detail.contains("line 2"), "{detail}");
        }
        other => panic!("expected Config, got {other:?}"),
    }
}

#[test]
fn a_local_provider_resolves_to_its_builtin_endpoint_without_a_key() {
    let meta = SessionMeta::new(name("s"), "lmstudio", "qwen");
    let resolved = resolve_provider(&meta, &Config::default(), &no_home()).unwrap();
    assert_eq!(resolved.key_source, KeySource::None);
    assert_eq!(key_source(&meta, &entry(&meta)), KeySource::None);
    let c = resolved.config;
    assert_eq!(
        (
            c.name.as_str(),
            c.kind,
            c.base_url.as_str(),
            c.locality,
            c.api_key
        ),
        (
            "lmstudio",
            ProviderKind::OpenAiCompatible,
            "http://127.0.0.1:1234/v1",
            Locality::Local,
            None
        )
    );
    // No env var to suggest: the hint only says how to store a key.
    assert!(!c.key_hint.starts_with("set "), "{}", c.key_hint);
    assert!(c.key_hint.contains("--api-key"), "{}", c.key_hint);
}

#[test]
fn a_base_url_override_is_used_and_decides_locality() {
    for (url, locality) in [
        ("https://api.openai.com/v1", Locality::Remote),
        ("http://127.0.0.1:9999/v1", Locality::Local),
        ("http://localhost:9999/v1", Locality::Local),
    ] {
        let mut meta = SessionMeta::new(name("s"), "llamacpp", "m");
        meta.base_url = Some(url.into());
        let c = resolve_provider(&meta, &Config::default(), &no_home())
            .unwrap()
            .config;
        assert_eq!((c.base_url.as_str(), c.locality), (url, locality));
    }
}

/// An embedder's paths decide where a `local` session's model is, not `$PAI_HOME` (which
/// this test process does not set, so a lookup there finds nothing).
#[test]
fn a_local_model_is_looked_up_in_the_paths_given() {
    let (_home, store) = temp_store();
    let paths = store.paths().clone();
    std::fs::create_dir_all(paths.models_dir()).unwrap();
    std::fs::write(
        paths.models_dir().join("index.json"),
        serde_json::json!({ "models": [{
            "name": "tiny", "file": "tiny.Q4_1.gguf", "sha256": "00", "size": 1,
            "architecture": "llama", "quantization": "Q4_1", "context_length": 8,
            "parameters": 1, "added_at": "now", "source": "test"
        }] })
        .to_string(),
    )
    .unwrap();
    let file = paths.models_dir().join("tiny.Q4_1.gguf");
    let meta = SessionMeta::new(name("s"), "local", "tiny");

    let (endpoint, locality) = session_endpoint(&meta, &entry(&meta), &paths);
    assert_eq!(
        (endpoint, locality),
        (file.display().to_string(), Locality::Local)
    );
    let resolved = resolve_provider(&meta, &Config::default(), &paths);
    #[cfg(feature = "local")]
    assert_eq!(
        resolved.unwrap().config.base_url,
        file.display().to_string()
    );
    #[cfg(not(feature = "local"))]
    assert!(
        matches!(
            resolved,
            Err(CoreError::Provider(
                pai_providers::ProviderError::LocalUnavailable
            ))
        ),
        "{resolved:?}"
    );
    // Another home has no such model.
    let (endpoint, _) = session_endpoint(&meta, &entry(&meta), &no_home());
    assert_eq!(endpoint, "tiny (not installed)");
}

#[test]
fn an_unknown_provider_is_an_error_that_lists_the_way_out() {
    let meta = SessionMeta::new(name("s"), "no-such-provider", "m");
    let err = resolve_provider(&meta, &Config::default(), &no_home()).unwrap_err();
    assert!(
        matches!(&err, CoreError::UnknownProvider(p) if p == "no-such-provider"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("'pai providers'"), "{msg}");
    assert!(msg.contains("--base-url"), "{msg}");
}

#[test]
fn a_stored_key_is_the_source_without_anything_being_decrypted() {
    let mut meta = SessionMeta::new(name("s"), "groq", "m");
    meta.api_key = Some("not even a token".into());
    assert_eq!(key_source(&meta, &entry(&meta)), KeySource::Session);
    assert_eq!(KeySource::Session.to_string(), "encrypted in session");
    assert_eq!(
        KeySource::Env("GROQ_API_KEY".into()).to_string(),
        "env var GROQ_API_KEY"
    );
    assert_eq!(KeySource::None.to_string(), "none");
}

// --- env-dependent checks, in a child process -----------------------------------------

/// Set in the child's environment to the checks it should run.
const CHILD: &str = "PAI_CORE_SUITE_KEYS_CHILD";
const DONE: &str = "keys child: all checks ran";

/// Runs [`env_child`] in a fresh process whose environment is exactly `env`.
fn run_child(mode: &str, env: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::keys::env_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env_clear()
        .env(CHILD, mode)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child '{mode}' failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(DONE),
        "child '{mode}' did not run its checks:\n{stdout}\n{stderr}"
    );
}

#[test]
fn the_session_key_wins_over_the_env_var_which_wins_over_none() {
    let key = Vault::generate_key();
    run_child(
        "with-vault-key",
        &[
            ("PAI_ENCRYPTION_KEY", key.expose()),
            ("GROQ_API_KEY", "gsk-from-env"),
        ],
    );
}

#[test]
fn a_stored_key_without_pai_encryption_key_is_a_clear_error() {
    run_child("without-vault-key", &[("GROQ_API_KEY", "gsk-from-env")]);
}

/// Does nothing unless started by [`run_child`].
#[test]
fn env_child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let config = Config::default();
    let with_stored_key = |provider: &str, token: &str| {
        let mut meta = SessionMeta::new(name("s"), provider, "m");
        meta.api_key = Some(token.into());
        meta
    };
    let groq_from_env = SessionMeta::new(name("s"), "groq", "m");

    match mode.as_str() {
        "with-vault-key" => {
            let vault = Vault::from_env().unwrap();

            // A stored key is used even though GROQ_API_KEY is set.
            let token = vault.encrypt(&Secret::new("gsk-stored".into()));
            let meta = with_stored_key("groq", &token);
            let resolved = resolve_provider(&meta, &config, &no_home()).unwrap();
            assert_eq!(resolved.key_source, KeySource::Session);
            assert_eq!(
                resolved.config.api_key,
                Some(Secret::new("gsk-stored".into()))
            );

            // No stored key: the provider's env var.
            let resolved = resolve_provider(&groq_from_env, &config, &no_home()).unwrap();
            assert_eq!(resolved.key_source, KeySource::Env("GROQ_API_KEY".into()));
            assert_eq!(
                key_source(&groq_from_env, &entry(&groq_from_env)),
                resolved.key_source
            );
            assert_eq!(
                resolved.config.api_key,
                Some(Secret::new("gsk-from-env".into()))
            );
            assert_eq!(
                (resolved.config.base_url.as_str(), resolved.config.locality),
                ("https://api.groq.com/openai/v1", Locality::Remote)
            );

            // Neither: no key, and the hint names the env var to set.
            let mistral = SessionMeta::new(name("s"), "mistral", "m");
            let resolved = resolve_provider(&mistral, &config, &no_home()).unwrap();
            assert_eq!(resolved.key_source, KeySource::None);
            assert_eq!(resolved.config.api_key, None);
            assert!(
                resolved
                    .config
                    .key_hint
                    .starts_with("set MISTRAL_API_KEY, "),
                "{}",
                resolved.config.key_hint
            );

            // OpenAI's own endpoint, with OPENAI_API_KEY unset.
            let openai = SessionMeta::new(name("s"), "openai", "gpt-4o");
            let resolved = resolve_provider(&openai, &config, &no_home()).unwrap();
            assert_eq!(
                (
                    resolved.config.base_url.as_str(),
                    resolved.config.locality,
                    resolved.key_source
                ),
                (
                    "https://api.openai.com/v1",
                    Locality::Remote,
                    KeySource::None
                )
            );

            // A key stored under another PAI_ENCRYPTION_KEY.
            let other = Vault::from_key(&Vault::generate_key()).unwrap();
            let meta = with_stored_key("groq", &other.encrypt(&Secret::new("gsk-x".into())));
            let err = resolve_provider(&meta, &config, &no_home()).unwrap_err();
            assert!(matches!(err, CoreError::Vault(_)), "{err:?}");
            assert!(err.to_string().contains("store the API key again"), "{err}");
        }
        "without-vault-key" => {
            let err = Vault::from_env().unwrap_err().to_string();
            assert!(err.contains("PAI_ENCRYPTION_KEY is not set"), "{err}");
            assert!(err.contains("pai keygen"), "{err}");

            // The env var is there, but a stored key takes precedence and needs the vault.
            let meta = with_stored_key("groq", "gAAAAA-some-token");
            assert_eq!(key_source(&meta, &entry(&meta)), KeySource::Session);
            let err = resolve_provider(&meta, &config, &no_home())
                .unwrap_err()
                .to_string();
            assert!(err.contains("PAI_ENCRYPTION_KEY is not set"), "{err}");

            // Without a stored key the vault is never opened.
            let resolved = resolve_provider(&groq_from_env, &config, &no_home()).unwrap();
            assert_eq!(resolved.key_source, KeySource::Env("GROQ_API_KEY".into()));
        }
        other => panic!("unknown child mode {other}"),
    }
    println!("{DONE}");
}
