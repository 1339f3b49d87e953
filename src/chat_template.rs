//! Chat prompts: the GGUF's `tokenizer.chat_template` rendered with minijinja, or ChatML when
//! the file has none.

use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// ChatML, the format SmolLM2, Qwen and many other chat models use.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateSource {
    /// `tokenizer.chat_template` from the GGUF file.
    Gguf,
    /// The file has no template, so ChatML is used.
    ChatmlFallback,
}

pub struct ChatTemplate {
    env: Environment<'static>,
    pub source: TemplateSource,
    bos_token: String,
    eos_token: String,
}

/// Template instructions one render may run. A chat template from a model file is untrusted
/// code, and this bounds the time of a render that loops. A 2000-message chat with the
/// SmolLM2 template renders within it (tests/bad_input.rs).
pub const TEMPLATE_FUEL: u64 = 5_000_000;

impl ChatTemplate {
    /// Compiles `template` (or ChatML when it is `None`) and checks that it renders a
    /// one-message conversation.
    pub fn new(template: Option<String>, bos_token: String, eos_token: String) -> Result<Self> {
        let source = if template.is_some() {
            TemplateSource::Gguf
        } else {
            TemplateSource::ChatmlFallback
        };
        let text = template.unwrap_or_else(|| CHATML.to_string());

        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks on.
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", text).map_err(|e| {
            Error::Template(format!("tokenizer.chat_template does not compile: {e}"))
        })?;

        let template = Self {
            env,
            source,
            bos_token,
            eos_token,
        };
        template
            .render(&[Message::new("user", "Hello")], true)
            .map_err(|e| {
                Error::Template(format!(
                    "tokenizer.chat_template fails on a one-message chat: {e}"
                ))
            })?;
        Ok(template)
    }

    /// Builds the template of a GGUF file (`tokenizer.chat_template`, or ChatML when the file
    /// has none) with the tokenizer's BOS and EOS strings.
    pub fn from_gguf(
        gguf: &crate::gguf::Gguf,
        tokenizer: &crate::tokenizer::Tokenizer,
    ) -> Result<Self> {
        Self::new(
            gguf.get_string("tokenizer.chat_template")?,
            tokenizer.token_text(tokenizer.bos_token_id),
            tokenizer.token_text(tokenizer.eos_token_id),
        )
    }

    /// Renders the conversation; with `add_generation_prompt` the text ends where the
    /// assistant's reply begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| {
                if e.kind() == ErrorKind::OutOfFuel {
                    Error::Template(format!(
                        "rendering failed: the chat template ran more than {TEMPLATE_FUEL} \
                         instructions (it loops or is too large); fix tokenizer.chat_template \
                         in the model file"
                    ))
                } else {
                    Error::Template(format!("rendering failed: {e}"))
                }
            })
    }
}
