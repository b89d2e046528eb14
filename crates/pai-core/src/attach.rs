//! Files attached to a turn (`-f/--file`): read as text, framed with their name, and sent
//! as parts of their own, with the class the policy gives their path, so the egress gate
//! screens them like any other part.

use std::io::Read;
use std::path::{Path, PathBuf};

use pai_types::{DataClass, Message, Origin};

use crate::error::{CoreError, Result, io};

/// Largest file PAI attaches: far beyond any model window, small enough to refuse a
/// mistaken disk image at once.
pub const MAX_ATTACHMENT: u64 = 8 * 1024 * 1024;

/// A text file attached to a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The path as the user gave it: what the model and the audit are told.
    pub name: String,
    /// The file's absolute path, which the policy's path rules classify.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl Attachment {
    /// Reads `path` as UTF-8 text; refuses a directory, a binary file (images are not
    /// supported yet) and one over [`MAX_ATTACHMENT`].
    pub fn read(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let invalid = |why: String| CoreError::Invalid(format!("cannot attach {name}: {why}"));
        let abs = path.canonicalize().map_err(io("attach", path))?;
        if !abs.is_file() {
            return Err(invalid("it is not a file".into()));
        }
        let file = std::fs::File::open(&abs).map_err(io("attach", path))?;
        let mut buf = Vec::new();
        file.take(MAX_ATTACHMENT + 1)
            .read_to_end(&mut buf)
            .map_err(io("read", path))?;
        if buf.len() as u64 > MAX_ATTACHMENT {
            return Err(invalid(format!(
                "it is larger than {} MiB; attach an excerpt",
                MAX_ATTACHMENT / 1024 / 1024
            )));
        }
        if buf.contains(&0) {
            return Err(invalid(
                "it looks binary (it contains NUL bytes); PAI attaches text files only (images are not supported yet)".into(),
            ));
        }
        let text = String::from_utf8(buf).map_err(|_| {
            invalid("it is not UTF-8 text; convert it first (e.g. with iconv)".into())
        })?;
        Ok(Self {
            name,
            path: abs,
            text,
        })
    }

    /// The part the model sees: the text between lines naming the file, of `class`.
    pub fn message(&self, class: DataClass) -> Message {
        let name = &self.name;
        let text = self.text.trim_end_matches('\n');
        Message::user(format!(
            "[attached file {name}]\n{text}\n[end of attached file {name}]"
        ))
        .with_provenance(
            Origin::File {
                path: self.name.clone(),
            },
            class,
        )
    }
}
