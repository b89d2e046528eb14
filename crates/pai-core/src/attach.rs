//! Files attached to a turn (`-f/--file`): read as text, framed with their name, and sent
//! as parts of their own, with the class the policy gives their path, so the egress gate
//! screens them like any other part. Images (PNG, JPEG, GIF, WebP, told by their bytes)
//! go as image parts for models that take them; the gate cannot read an image, so it
//! decides by the path's class alone: withheld whole where a text part would be redacted.

use std::io::Read;
use std::path::{Path, PathBuf};

use pai_types::{DataClass, Message, Origin};

use crate::error::{CoreError, Result, io};

/// Largest file PAI attaches: far beyond any model window, small enough to refuse a
/// mistaken disk image at once.
pub const MAX_ATTACHMENT: u64 = 8 * 1024 * 1024;

/// An image, its media type told by its first bytes (never by its name).
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Largest image PAI attaches: what the strictest API it speaks (Anthropic) takes.
pub const MAX_IMAGE: u64 = 5 * 1024 * 1024;

/// A text file (or an image) attached to a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The path as the user gave it: what the model and the audit are told.
    pub name: String,
    /// The file's absolute path, which the policy's path rules classify.
    pub path: PathBuf,
    /// Its text (empty for an image).
    pub text: String,
    /// The image, when the file is one.
    pub image: Option<pai_types::Image>,
}

impl Attachment {
    /// Reads `path` as an image (PNG, JPEG, GIF, WebP) or as UTF-8 text; refuses a
    /// directory, any other binary file and one over [`MAX_ATTACHMENT`].
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
        if let Some(media_type) = image_type(&buf) {
            if buf.len() as u64 > MAX_IMAGE {
                return Err(invalid(format!(
                    "the image is larger than {} MiB; scale it down first",
                    MAX_IMAGE / 1024 / 1024
                )));
            }
            use base64::Engine as _;
            return Ok(Self {
                name,
                path: abs,
                text: String::new(),
                image: Some(pai_types::Image {
                    media_type: media_type.into(),
                    data: base64::engine::general_purpose::STANDARD.encode(&buf),
                    tokens: pai_types::image_tokens(
                        imagesize::blob_size(&buf)
                            .ok()
                            .map(|s| (s.width as u64, s.height as u64)),
                    ),
                }),
            });
        }
        if buf.contains(&0) {
            return Err(invalid(
                "it looks binary (it contains NUL bytes); PAI attaches text files and PNG, JPEG, GIF or WebP images only".into(),
            ));
        }
        let text = String::from_utf8(buf).map_err(|_| {
            invalid("it is not UTF-8 text; convert it first (e.g. with iconv)".into())
        })?;
        Ok(Self {
            name,
            path: abs,
            text,
            image: None,
        })
    }

    /// What the part is estimated to cost a model in input tokens.
    pub fn tokens(&self) -> u64 {
        pai_types::estimate_tokens(&self.text) + self.image.as_ref().map_or(0, |i| i.tokens)
    }

    /// The part the model sees: the text between lines naming the file, of `class`.
    pub fn message(&self, class: DataClass) -> Message {
        let name = &self.name;
        let origin = Origin::File {
            path: self.name.clone(),
        };
        if let Some(image) = &self.image {
            let mut m = Message::user(format!("[attached image {name}]"));
            m.images = vec![image.clone()];
            return m.with_provenance(origin, class);
        }
        let text = self.text.trim_end_matches('\n');
        Message::user(format!(
            "[attached file {name}]\n{text}\n[end of attached file {name}]"
        ))
        .with_provenance(origin, class)
    }
}
