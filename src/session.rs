//! Multi-turn chat on one model: the history, the KV cache shared across turns, and the
//! token-by-token loop that the CLI and the browser worker drive.

use serde::Serialize;

use crate::chat_template::{ChatTemplate, Message, TemplateSource};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::model::{Config, KvCache, Model};
use crate::sampler::{Sampler, SamplingParams};
use crate::tokenizer::{Tokenizer, Utf8Stream};

/// Context used when the caller does not choose one: enough for a long chat while keeping the
/// KV cache of a 135M model under 100 MB.
pub const DEFAULT_MAX_CONTEXT: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-sequence or end-of-turn token.
    Eos,
    MaxTokens,
    /// The KV cache reached the maximum context.
    ContextFull,
    /// The caller stopped the turn.
    Stopped,
}

/// Summary of the prefill that `start_turn` ran before the first token.
#[derive(Debug, Clone, Serialize)]
pub struct TurnStart {
    /// Length of the whole rendered conversation, in tokens.
    pub prompt_tokens: usize,
    /// Tokens run through the model for this turn.
    pub prefill_tokens: usize,
    /// Tokens whose keys and values were kept from earlier turns.
    pub reused_tokens: usize,
    /// Oldest user/assistant exchanges removed so the prompt fits the context.
    pub dropped_turns: usize,
}

/// One step of generation.
#[derive(Debug, Clone, Serialize)]
pub struct TokenStep {
    /// New text; empty while a multi-byte character is incomplete.
    pub text: String,
    pub done: bool,
    pub reason: Option<StopReason>,
    pub token_id: Option<u32>,
    pub n_generated: usize,
}

struct Turn {
    user: String,
    /// The whole rendered conversation that was prefilled for this turn.
    prompt_tokens: Vec<u32>,
    sampler: Sampler,
    /// Logits for the next position, `vocab_size` values.
    logits: Vec<f32>,
    reply_tokens: Vec<u32>,
    stream: Utf8Stream,
    reason: Option<StopReason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub name: String,
    pub architecture: String,
    pub n_layers: usize,
    pub hidden_size: usize,
    pub head_dim: usize,
    pub n_heads: Vec<usize>,
    pub n_kv_heads: Vec<usize>,
    pub ffn_dim: Vec<usize>,
    pub vocab_size: usize,
    pub n_params: usize,
    pub file_bytes: u64,
    pub tensor_types: std::collections::BTreeMap<String, usize>,
    /// Fraction of exactly zero weights in the decoder layers' weight matrices, or `None` when
    /// their type is not F32, F16 or Q8_0 (see `eval::stored_decoder_sparsity`).
    pub decoder_sparsity: Option<f64>,
    pub context_length: usize,
    pub max_context: usize,
    pub chat_template: TemplateSource,
}

pub struct ChatSession {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    info: SessionInfo,
    cache: KvCache,
    /// The tokens whose keys and values are in `cache`, in order.
    cache_tokens: Vec<u32>,
    /// Finished exchanges, user and assistant messages alternating.
    history: Vec<Message>,
    system_prompt: Option<String>,
    turn: Option<Turn>,
}

impl ChatSession {
    /// Loads a model, its tokenizer and its chat template from a parsed GGUF file.
    /// `max_context` caps the KV cache; it is lowered to the model's `context_length`.
    pub fn from_gguf(gguf: Gguf, max_context: usize) -> Result<Self> {
        if max_context < 16 {
            return Err(Error::invalid_argument(
                "max_context",
                format!("must be at least 16 tokens, got {max_context}"),
            ));
        }
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer)?;
        let tensor_types = gguf.tensor_type_counts().into_iter().collect();
        let file_bytes = gguf.file_bytes;
        let n_layers = Config::from_gguf(&gguf)?.n_layers();
        let decoder_sparsity = crate::eval::stored_decoder_sparsity(&gguf, n_layers)?;
        let model = Model::from_gguf(gguf)?;
        let config = model.config().clone();
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::Tokenizer(format!(
                "the vocabulary has {} tokens but token_embd.weight has only {} rows",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let max_context = max_context.min(model.max_positions());
        let info = session_info(
            &config,
            file_bytes,
            tensor_types,
            decoder_sparsity,
            max_context,
            template.source,
        );
        Ok(Self {
            cache: KvCache::new(&config, max_context),
            model,
            tokenizer,
            template,
            info,
            cache_tokens: Vec::new(),
            history: Vec::new(),
            system_prompt: None,
            turn: None,
        })
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Bytes held by the KV cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Renders the conversation with `user` appended and `system` as the system prompt, as
    /// `start_turn` would show it to the model.
    pub fn render_prompt(&self, user: &str, system: Option<&str>) -> Result<String> {
        let system = system.filter(|s| !s.trim().is_empty());
        self.template
            .render(&messages_with(system, &self.history, user), true)
    }

    /// Appends a finished exchange to the history without running the model, for example to
    /// restore a saved conversation. Its tokens are prefilled with the next turn.
    pub fn push_exchange(&mut self, user: &str, assistant: &str) {
        self.turn = None;
        self.history.push(Message::new("user", user));
        self.history.push(Message::new("assistant", assistant));
    }

    /// Renders `messages` with the generation prompt and encodes them so that only the
    /// template's own markers become control tokens: a `<|im_end|>` typed in a message stays
    /// plain text, so a user cannot close their turn and write a system message.
    ///
    /// Each content is swapped for a sentinel before rendering; the text between sentinels is
    /// encoded with control tokens and each content without. A template that alters contents
    /// (so a sentinel goes missing) is encoded whole, as llama.cpp does.
    pub fn encode_conversation(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let sentinel = |i: usize| format!("\u{FDD0}{i}\u{FDD1}");
        let masked: Vec<Message> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| Message::new(&m.role, &sentinel(i)))
            .collect();
        let rendered = self.template.render(&masked, true)?;

        let mut ids = Vec::new();
        let mut rest = rendered.as_str();
        for (i, message) in messages.iter().enumerate() {
            let Some(at) = rest.find(&sentinel(i)) else {
                return self.encode_prompt(&self.template.render(messages, true)?);
            };
            ids.extend(self.tokenizer.encode(&rest[..at])?);
            ids.extend(self.tokenizer.encode_plain(&message.content)?);
            rest = &rest[at + sentinel(i).len()..];
        }
        ids.extend(self.tokenizer.encode(rest)?);
        if let (true, Some(bos)) = (self.tokenizer.add_bos, self.tokenizer.bos_token_id) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Encodes a rendered prompt, adding BOS when the file sets `add_bos_token` and the text lacks it.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(prompt)?;
        if let (true, Some(bos)) = (self.tokenizer.add_bos, self.tokenizer.bos_token_id) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Starts an assistant turn: appends the user message, drops the oldest exchanges if the
    /// prompt would not leave room for the reply, and prefills only the tokens that differ
    /// from what the KV cache already holds.
    ///
    /// `system`: `Some("")` or `None` keeps the template's default system prompt.
    pub fn start_turn(
        &mut self,
        user: &str,
        system: Option<&str>,
        params: SamplingParams,
    ) -> Result<TurnStart> {
        if user.trim().is_empty() {
            return Err(Error::invalid_argument(
                "prompt",
                "the message is empty; type a message first",
            ));
        }
        let sampler = Sampler::new(params)?;
        if self.turn.as_ref().is_some_and(|t| t.reason.is_none()) {
            self.stop();
        }
        self.turn = None;
        self.system_prompt = system.filter(|s| !s.trim().is_empty()).map(str::to_string);

        // Keep room for the reply, but never more than half of the context.
        let max_context = self.cache.max_len();
        let reserve = sampler.params().max_new_tokens.min(max_context / 2);
        let mut dropped_turns = 0;
        // Once turns must be dropped, drop down to three quarters of the context: every drop
        // invalidates the whole cache after the system prompt, so dropping one exchange per
        // turn would prefill nearly the full context on every following turn.
        let mut limit = max_context;
        let tokens = loop {
            let messages = messages_with(self.system_prompt.as_deref(), &self.history, user);
            let tokens = self.encode_conversation(&messages)?;
            if tokens.len() + reserve <= limit {
                break tokens;
            }
            if self.history.len() >= 2 {
                self.history.drain(..2);
                dropped_turns += 1;
                limit = max_context * 3 / 4;
                continue;
            }
            if tokens.len() + reserve <= max_context {
                break tokens;
            }
            return Err(Error::invalid_argument(
                "prompt",
                format!(
                    "the message is {} tokens long with the system prompt; with {reserve} tokens kept for the reply it \
                     does not fit the context of {max_context} tokens; shorten it or lower max_new_tokens",
                    tokens.len()
                ),
            ));
        };

        // Reuse the longest cached prefix, but run at least one token to get fresh logits.
        let mut common = self
            .cache_tokens
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count();
        if common == tokens.len() {
            common -= 1;
        }
        self.cache.truncate(common);
        self.cache_tokens.truncate(common);
        let logits = match self.model.forward_last(&tokens[common..], &mut self.cache) {
            Ok(logits) => logits.to_vec1::<f32>()?,
            Err(e) => {
                self.cache.truncate(common);
                return Err(e);
            }
        };
        self.cache_tokens.extend_from_slice(&tokens[common..]);

        let prompt_tokens = tokens.len();
        self.turn = Some(Turn {
            user: user.to_string(),
            prompt_tokens: tokens,
            sampler,
            logits,
            reply_tokens: Vec::new(),
            stream: Utf8Stream::default(),
            reason: None,
        });
        Ok(TurnStart {
            prompt_tokens,
            prefill_tokens: prompt_tokens - common,
            reused_tokens: common,
            dropped_turns,
        })
    }

    /// Samples one token, runs it through the model, and returns its text.
    pub fn next_token(&mut self) -> Result<TokenStep> {
        let turn = self.turn.as_mut().ok_or_else(|| {
            Error::invalid_argument(
                "turn",
                "no turn in progress; start one with a message first",
            )
        })?;
        if turn.reason.is_some() {
            return Ok(TokenStep {
                text: String::new(),
                done: true,
                reason: turn.reason,
                token_id: None,
                n_generated: turn.reply_tokens.len(),
            });
        }

        let id = turn.sampler.sample(&turn.logits, &self.cache_tokens);
        if self.tokenizer.is_stop(id) {
            let text = turn.stream.finish();
            self.finish(StopReason::Eos);
            return Ok(self.step(text, Some(id)));
        }
        turn.reply_tokens.push(id);
        let mut text = if self.tokenizer.is_control(id) {
            String::new()
        } else {
            turn.stream.push(self.tokenizer.token_bytes(id))
        };

        if turn.reply_tokens.len() >= turn.sampler.params().max_new_tokens {
            text.push_str(&turn.stream.finish());
            self.finish(StopReason::MaxTokens);
        } else if self.cache.len() + 1 > self.cache.max_len() {
            text.push_str(&turn.stream.finish());
            self.finish(StopReason::ContextFull);
        } else {
            let logits = self.model.forward_last(&[id], &mut self.cache)?;
            self.cache_tokens.push(id);
            let turn = self
                .turn
                .as_mut()
                .expect("the turn checked above is still set");
            turn.logits = logits.to_vec1::<f32>()?;
        }
        Ok(self.step(text, Some(id)))
    }

    /// Ends the current turn early; the partial reply stays in the history. Returns the text
    /// of an incomplete character that was held back, if any.
    pub fn stop(&mut self) -> String {
        match self.turn.as_mut() {
            Some(turn) if turn.reason.is_none() => {
                let text = turn.stream.finish();
                self.finish(StopReason::Stopped);
                text
            }
            _ => String::new(),
        }
    }

    /// Clears the history and the KV cache.
    pub fn reset(&mut self) {
        self.turn = None;
        self.history.clear();
        self.cache.reset();
        self.cache_tokens.clear();
    }

    /// Runs a whole turn, passing each piece of text to `on_text`, and returns the reply.
    pub fn reply(
        &mut self,
        user: &str,
        system: Option<&str>,
        params: SamplingParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<(String, StopReason)> {
        self.start_turn(user, system, params)?;
        loop {
            let step = self.next_token()?;
            on_text(&step.text);
            if step.done {
                let reply = self
                    .history
                    .last()
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                return Ok((reply, step.reason.unwrap_or(StopReason::Stopped)));
            }
        }
    }

    /// Token ids generated so far in the current (or last) turn.
    pub fn reply_tokens(&self) -> &[u32] {
        self.turn
            .as_ref()
            .map(|t| t.reply_tokens.as_slice())
            .unwrap_or(&[])
    }

    /// Token ids of the prompt of the current (or last) turn: the whole conversation up to the
    /// assistant's reply, as the model saw it.
    pub fn prompt_tokens(&self) -> &[u32] {
        self.turn
            .as_ref()
            .map(|t| t.prompt_tokens.as_slice())
            .unwrap_or(&[])
    }

    fn finish(&mut self, reason: StopReason) {
        if let Some(turn) = self.turn.as_mut() {
            turn.reason = Some(reason);
            let reply = self.tokenizer.decode(&turn.reply_tokens);
            self.history.push(Message::new("user", &turn.user));
            self.history.push(Message::new("assistant", &reply));
        }
    }

    fn step(&self, text: String, token_id: Option<u32>) -> TokenStep {
        let turn = self.turn.as_ref();
        TokenStep {
            text,
            done: turn.is_some_and(|t| t.reason.is_some()),
            reason: turn.and_then(|t| t.reason),
            token_id,
            n_generated: turn.map(|t| t.reply_tokens.len()).unwrap_or(0),
        }
    }
}

fn messages_with(system: Option<&str>, history: &[Message], user: &str) -> Vec<Message> {
    let mut messages = Vec::with_capacity(history.len() + 2);
    if let Some(system) = system {
        messages.push(Message::new("system", system));
    }
    messages.extend_from_slice(history);
    messages.push(Message::new("user", user));
    messages
}

fn session_info(
    config: &Config,
    file_bytes: u64,
    tensor_types: std::collections::BTreeMap<String, usize>,
    decoder_sparsity: Option<f64>,
    max_context: usize,
    chat_template: TemplateSource,
) -> SessionInfo {
    SessionInfo {
        name: config.name.clone(),
        architecture: config.architecture.clone(),
        n_layers: config.n_layers(),
        hidden_size: config.hidden_size,
        head_dim: config.head_dim,
        n_heads: config.layers.iter().map(|l| l.n_heads).collect(),
        n_kv_heads: config.layers.iter().map(|l| l.n_kv_heads).collect(),
        ffn_dim: config.layers.iter().map(|l| l.ffn_dim).collect(),
        vocab_size: config.vocab_size,
        n_params: config.n_params(),
        file_bytes,
        tensor_types,
        decoder_sparsity,
        context_length: config.context_length,
        max_context,
        chat_template,
    }
}
