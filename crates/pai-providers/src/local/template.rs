//! The chat template a GGUF carries (`tokenizer.chat_template`, Jinja as Hugging Face
//! writes it), rendered with minijinja the way `transformers` renders it: blocks trimmed,
//! Python string methods available, `raise_exception` defined.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value, context};
use pai_types::Message;

/// ChatML, for a model whose file carries no template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Compiles `source` (ChatML when the model has none); `bos` and `eos` are the texts
    /// of the model's special tokens, which many templates print.
    pub(crate) fn new(
        source: Option<&str>,
        bos: Option<&str>,
        eos: Option<&str>,
    ) -> Result<Self, String> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| e.to_string())?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        let source = source.filter(|s| !s.trim().is_empty()).unwrap_or(CHATML);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("its chat template does not compile ({e})"))?;
        Ok(Self {
            env,
            bos: bos.unwrap_or_default().to_string(),
            eos: eos.unwrap_or_default().to_string(),
        })
    }

    /// The prompt text for `messages`, ending where the assistant's answer begins.
    pub(crate) fn render(&self, messages: &[Message]) -> Result<String, String> {
        let turns: Vec<Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        template
            .render(context! {
                messages => turns,
                add_generation_prompt => true,
                bos_token => self.bos.as_str(),
                eos_token => self.eos.as_str(),
            })
            .map_err(|e| format!("its chat template failed to render ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_is_the_fallback_and_ends_with_the_assistant_turn() {
        let t = ChatTemplate::new(None, None, None).unwrap();
        let text = t
            .render(&[Message::system("be brief"), Message::user("hi")])
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn hugging_face_templates_render_with_trimmed_blocks_and_python_methods() {
        // The shape of Llama 3's template: bos_token, .strip(), trim_blocks.
        let src = "{{ bos_token }}{% for m in messages %}\n<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'].strip() }}<|eot_id|>{% endfor %}\n{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
        let t = ChatTemplate::new(Some(src), Some("<|begin_of_text|>"), None).unwrap();
        let text = t.render(&[Message::user("  hi  ")]).unwrap();
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn template_errors_are_reported_not_panicked() {
        assert!(ChatTemplate::new(Some("{% for %}"), None, None).is_err());
        let t = ChatTemplate::new(
            Some("{{ raise_exception('roles must alternate') }}"),
            None,
            None,
        )
        .unwrap();
        let err = t.render(&[Message::user("x")]).unwrap_err();
        assert!(err.contains("roles must alternate"), "{err}");
    }
}
