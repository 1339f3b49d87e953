//! A Hugging Face `tokenizers` tokenizer built from GGUF metadata (`tokenizer.ggml.*`), the same
//! code natively and in wasm, plus the byte table that turns token ids back into bytes.

use std::collections::HashMap;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// GGUF token types (`tokenizer.ggml.token_type`), as llama.cpp defines them.
pub mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const UNUSED: i64 = 5;
    pub const BYTE: i64 = 6;
}

/// The Llama 3 pre-tokenizer split pattern.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Pre-tokenizer families by their `tokenizer.ggml.pre` names.
const DIGITS_THEN_GPT2: &[&str] = &[
    "smollm",
    "starcoder",
    "refact",
    "codeshell",
    "command-r",
    "exaone",
    "minerva",
];
const GPT2: &[&str] = &["gpt2", "default", "gpt-2"];
const LLAMA3: &[&str] = &["llama3", "llama-bpe", "llama-v3", "dbrx", "smaug-bpe"];

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer without added tokens, so control-token strings are plain text.
    plain: tokenizers::Tokenizer,
    /// The bytes each token id stands for (control tokens: their literal text).
    pieces: Vec<Vec<u8>>,
    token_types: Vec<i64>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Ids that end an assistant turn: EOS, end-of-turn, and the chat markers that mean it.
    stop_token_ids: Vec<u32>,
    pub add_bos: bool,
}

impl Tokenizer {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let model = gguf
            .get_string("tokenizer.ggml.model")?
            .ok_or_else(|| Error::MissingKey {
                key: "tokenizer.ggml.model".into(),
                hint: "the file has no tokenizer; prunechat needs the vocabulary in the GGUF"
                    .into(),
            })?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.model is \"{model}\"; only \"gpt2\" (byte-level BPE) is supported"
            )));
        }
        let tokens = gguf
            .get_string_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| Error::MissingKey {
                key: "tokenizer.ggml.tokens".into(),
                hint: "the vocabulary is required".into(),
            })?;
        if tokens.is_empty() {
            return Err(Error::Tokenizer("tokenizer.ggml.tokens is empty".into()));
        }
        let merges = gguf
            .get_string_array("tokenizer.ggml.merges")?
            .ok_or_else(|| Error::MissingKey {
                key: "tokenizer.ggml.merges".into(),
                hint: "a BPE tokenizer needs its merges".into(),
            })?;
        let token_types = match gguf.get_int_array("tokenizer.ggml.token_type")? {
            Some(types) if types.len() == tokens.len() => types,
            Some(types) => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.ggml.token_type has {} entries but there are {} tokens",
                    types.len(),
                    tokens.len()
                )))
            }
            None => vec![token_type::NORMAL; tokens.len()],
        };
        let n_tokens = tokens.len();
        let special_id = |key: &str| -> Result<Option<u32>> {
            match gguf.get_u64(key)? {
                None => Ok(None),
                Some(id) if (id as usize) < n_tokens => Ok(Some(id as u32)),
                Some(id) => Err(Error::InvalidKey {
                    key: key.to_string(),
                    message: format!(
                        "token id {id} is outside the vocabulary of {n_tokens} tokens"
                    ),
                }),
            }
        };
        let bos_token_id = special_id("tokenizer.ggml.bos_token_id")?;
        let eos_token_id = special_id("tokenizer.ggml.eos_token_id")?;
        let eot_token_id = special_id("tokenizer.ggml.eot_token_id")?;
        let add_bos = gguf
            .get_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(false);
        let pre = gguf
            .get_string("tokenizer.ggml.pre")?
            .unwrap_or_else(|| "default".into());

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| {
                    Error::Tokenizer(format!("tokenizer.ggml.merges entry {i} ({m:?}) is not two tokens separated by a space"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("building the BPE model failed: {e}")))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(&pre)?));
        inner.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
        let plain = inner.clone();
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, &ty)| ty == token_type::CONTROL || ty == token_type::USER_DEFINED)
            .map(|(t, &ty)| {
                AddedToken::from(t.clone(), ty == token_type::CONTROL).normalized(false)
            })
            .collect();
        inner.add_special_tokens(&added);

        let byte_of_char = byte_level_decoder();
        let pieces = tokens
            .iter()
            .zip(&token_types)
            .map(|(t, &ty)| token_bytes(t, ty, &byte_of_char))
            .collect();

        let mut stop_token_ids: Vec<u32> = eos_token_id.into_iter().chain(eot_token_id).collect();
        for marker in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end|>",
            "<|endoftext|>",
            "<end_of_turn>",
        ] {
            if let Some(id) = tokens.iter().position(|t| t == marker) {
                if token_types[id] == token_type::CONTROL && !stop_token_ids.contains(&(id as u32))
                {
                    stop_token_ids.push(id as u32);
                }
            }
        }

        Ok(Self {
            inner,
            plain,
            pieces,
            token_types,
            bos_token_id,
            eos_token_id,
            stop_token_ids,
            add_bos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Encodes `text`; control-token strings such as `<|im_start|>` become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes `text` like `encode` and also returns each token's byte range in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>)> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// Encodes `text` treating control-token strings as ordinary text, as llama.cpp does with
    /// `parse_special = false`.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .plain
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Returns the bytes of token `id` (empty for an id outside the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces
            .get(id as usize)
            .map(|p| p.as_slice())
            .unwrap_or(&[])
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.token_types.get(id as usize) == Some(&token_type::CONTROL)
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_token_ids.contains(&id)
    }

    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_token_ids
    }

    /// Returns the text of a token string such as `<|endoftext|>`, for the chat template.
    pub fn token_text(&self, id: Option<u32>) -> String {
        id.map(|id| String::from_utf8_lossy(self.token_bytes(id)).into_owned())
            .unwrap_or_default()
    }

    /// Decodes ids to text, leaving out control tokens; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&id| !self.is_control(id))
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |use_regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    if DIGITS_THEN_GPT2.contains(&pre) {
        return Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])));
    }
    if GPT2.contains(&pre) {
        return Ok(byte_level(true));
    }
    if LLAMA3.contains(&pre) {
        let split = Split::new(
            SplitPattern::Regex(LLAMA3_PATTERN.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Tokenizer(format!("invalid pre-tokenizer pattern: {e}")))?;
        return Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            byte_level(false),
        ])));
    }
    let known: Vec<&str> = DIGITS_THEN_GPT2
        .iter()
        .chain(GPT2)
        .chain(LLAMA3)
        .copied()
        .collect();
    Err(Error::Tokenizer(format!(
        "tokenizer.ggml.pre \"{pre}\" is not supported; supported pre-tokenizers: {}",
        known.join(", ")
    )))
}

/// Returns the inverse of GPT-2's byte-to-unicode table: each printable stand-in character
/// maps back to the byte it encodes.
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut printable: Vec<u8> = (b'!'..=b'~')
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.iter().map(|&b| b as u32).collect();
    let mut n = 0;
    for b in 0..=255u8 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| char::from_u32(c).map(|c| (c, b)))
        .collect()
}

fn token_bytes(token: &str, ty: i64, byte_of_char: &HashMap<char, u8>) -> Vec<u8> {
    match ty {
        token_type::CONTROL
        | token_type::USER_DEFINED
        | token_type::UNKNOWN
        | token_type::UNUSED => token.as_bytes().to_vec(),
        token_type::BYTE => parse_byte_token(token)
            .map(|b| vec![b])
            .unwrap_or_else(|| token.as_bytes().to_vec()),
        _ => {
            let mut out = Vec::with_capacity(token.len());
            for c in token.chars() {
                match byte_of_char.get(&c) {
                    Some(&b) => out.push(b),
                    None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            out
        }
    }
}

/// Parses `<0xNN>`, the spelling of byte tokens.
fn parse_byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// Turns a stream of token bytes into text without ever splitting a UTF-8 character: bytes of
/// an incomplete character are held back until the rest arrives.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes and returns the text that is complete so far. Invalid sequences become U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid])
                            .expect("prefix checked by from_utf8"),
                    );
                    match e.error_len() {
                        // An incomplete character at the end: keep it for the next push.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + len);
                        }
                    }
                }
            }
        }
    }

    /// Returns what is still held back (an incomplete character becomes U+FFFD) and clears it.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_split_characters() {
        let text = "a中😀é";
        let bytes = text.as_bytes();
        // Every way of cutting the bytes into two pushes gives back the text, and no push
        // returns a partial character.
        for cut in 0..=bytes.len() {
            let mut stream = Utf8Stream::default();
            let first = stream.push(&bytes[..cut]);
            let second = stream.push(&bytes[cut..]);
            assert_eq!(format!("{first}{second}"), text, "cut at byte {cut}");
            assert!(stream.finish().is_empty(), "cut at byte {cut}");
        }
    }

    #[test]
    fn utf8_stream_one_byte_at_a_time() {
        let text = "日本語 👩‍👩‍👧 e\u{301}";
        let mut stream = Utf8Stream::default();
        let out: String = text.as_bytes().iter().map(|b| stream.push(&[*b])).collect();
        assert_eq!(out, text);
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes() {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(stream.push(&[0xE4, 0xB8]), "");
        assert_eq!(stream.finish(), "\u{FFFD}");
    }

    #[test]
    fn byte_level_table_is_a_bijection() {
        let table = byte_level_decoder();
        assert_eq!(table.len(), 256);
        let mut bytes: Vec<u8> = table.values().copied().collect();
        bytes.sort();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
        assert_eq!(table[&'Ġ'], b' ');
        assert_eq!(table[&'Ċ'], b'\n');
        assert_eq!(table[&'a'], b'a');
    }

    #[test]
    fn byte_token_parses() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(b'\n'));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
        assert_eq!(parse_byte_token("0x0A"), None);
    }
}
