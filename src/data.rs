//! Text and chat corpora for calibration, evaluation and training.
//!
//! Public functions:
//! - `load_corpus(path)` (native only): a file, or a directory of corpus files, in any of the
//!   formats of `CorpusFormat`, chosen by `detect_format`.
//! - `parse_corpus(text, format, origin)`: the same for text already in memory.
//! - `detect_format(path, text)`: the format from the file extension, else from the content.
//! - `split_corpus(corpus, eval_fraction, seed)`: a deterministic calibration / held-out split;
//!   `select_split` returns one part.
//! - `tokenize_corpus(corpus, tokenizer, template)`: one token stream with a per-token flag that
//!   marks assistant replies.
//! - `calibration_windows(stream, n_samples, seq_len, seed)`: sampled, non-overlapping windows.
//! - `evaluation_windows(stream, window)`: consecutive non-overlapping windows.
//!
//! A corpus is a list of documents. A plain text file gives one document per paragraph
//! (paragraphs are separated by blank lines), a JSONL chat file one per line, and a
//! chatterbot-corpus YAML file one per conversation.

use std::ops::Range;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::chat_template::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Fraction of documents held out for evaluation when the caller does not choose one.
pub const DEFAULT_EVAL_FRACTION: f64 = 0.1;

/// Seed of the calibration / held-out split when the caller does not choose one.
pub const DEFAULT_SPLIT_SEED: u64 = 0;

/// File extensions of each format, lower case.
const TEXT_EXTENSIONS: &[&str] = &["txt", "text", "md", "rst"];
const JSONL_EXTENSIONS: &[&str] = &["jsonl", "ndjson"];
const YAML_EXTENSIONS: &[&str] = &["yml", "yaml"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CorpusFormat {
    /// Plain text; each paragraph (blank-line separated) is a document.
    Text,
    /// One JSON object per line: `{"messages": [{"role": ..., "content": ...}, ...]}`.
    ChatJsonl,
    /// chatterbot-corpus YAML: `conversations: [[utterance, reply, ...], ...]`, rendered as
    /// alternating user and assistant messages starting with the user. A conversation given
    /// as one string instead of a list is a single user message.
    Chatterbot,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DocumentContent {
    Text(String),
    Chat(Vec<Message>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Location of the document, for error messages: `file.jsonl line 7`,
    /// `ai.yml conversation 3`, `notes.txt paragraph 2`.
    pub origin: String,
    pub content: DocumentContent,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Corpus {
    /// Path or name of the loaded corpus, for error messages.
    pub source: String,
    pub documents: Vec<Document>,
}

/// Picks the format from the extension of `path`, or from the content for other extensions.
/// A first line that is a JSON object with `messages` means JSONL chat. A top-level
/// `conversations:` key means chatterbot-corpus YAML. Anything else is plain text.
pub fn detect_format(path: &str, text: &str) -> CorpusFormat {
    let extension = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if TEXT_EXTENSIONS.contains(&extension.as_str()) {
        return CorpusFormat::Text;
    }
    if JSONL_EXTENSIONS.contains(&extension.as_str()) {
        return CorpusFormat::ChatJsonl;
    }
    if YAML_EXTENSIONS.contains(&extension.as_str()) {
        return CorpusFormat::Chatterbot;
    }
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if first_line.starts_with('{') {
        if let Ok(serde_json::Value::Object(object)) =
            serde_json::from_str::<serde_json::Value>(first_line)
        {
            if object.contains_key("messages") {
                return CorpusFormat::ChatJsonl;
            }
        }
    }
    if text.lines().any(|l| l.starts_with("conversations:")) {
        return CorpusFormat::Chatterbot;
    }
    CorpusFormat::Text
}

/// Loads a corpus file, or every corpus file of a directory (names ending in one of the
/// known extensions, in sorted order, not recursing).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_corpus(path: impl AsRef<Path>) -> Result<Corpus> {
    let path = path.as_ref();
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !metadata.is_dir() {
        return load_corpus_file(path);
    }

    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let file = entry.path();
        let extension = file
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let known = TEXT_EXTENSIONS
            .iter()
            .chain(JSONL_EXTENSIONS)
            .chain(YAML_EXTENSIONS)
            .any(|e| *e == extension);
        if known && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid_argument(
            "corpus",
            format!(
                "{} contains no corpus files (*.yml, *.yaml, *.jsonl, *.ndjson, *.txt, *.text, *.md, *.rst)",
                path.display()
            ),
        ));
    }
    let mut corpus = Corpus {
        source: path.display().to_string(),
        documents: Vec::new(),
    };
    for file in files {
        corpus.documents.extend(load_corpus_file(&file)?.documents);
    }
    Ok(corpus)
}

#[cfg(not(target_arch = "wasm32"))]
fn load_corpus_file(path: &Path) -> Result<Corpus> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::invalid_argument(
            "corpus",
            format!(
                "{}: not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let origin = path.display().to_string();
    parse_corpus(&text, detect_format(&origin, &text), &origin)
}

/// One corpus file held in memory, as the browser passes it: a name (whose extension picks
/// the format, as in `detect_format`) and its text.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CorpusFile {
    pub name: String,
    pub text: String,
}

/// Parses several corpus files held in memory into one corpus, documents in file order.
/// `source` names the whole corpus in messages.
pub fn parse_corpus_files(files: &[CorpusFile], source: &str) -> Result<Corpus> {
    if files.is_empty() {
        return Err(Error::invalid_argument(
            "corpus",
            format!("{source} contains no files"),
        ));
    }
    let mut corpus = Corpus {
        source: source.to_string(),
        documents: Vec::new(),
    };
    for file in files {
        let parsed = parse_corpus(
            &file.text,
            detect_format(&file.name, &file.text),
            &file.name,
        )?;
        corpus.documents.extend(parsed.documents);
    }
    Ok(corpus)
}

/// Parses a corpus held in memory. `origin` names it in documents and error messages.
pub fn parse_corpus(text: &str, format: CorpusFormat, origin: &str) -> Result<Corpus> {
    if text.trim().is_empty() {
        return Err(Error::invalid_argument(
            "corpus",
            format!("{origin} is empty"),
        ));
    }
    let documents = match format {
        CorpusFormat::Text => parse_text(text, origin),
        CorpusFormat::ChatJsonl => parse_jsonl(text, origin)?,
        CorpusFormat::Chatterbot => parse_chatterbot(text, origin)?,
    };
    if documents.is_empty() {
        return Err(Error::invalid_argument(
            "corpus",
            format!("{origin} contains no documents"),
        ));
    }
    Ok(Corpus {
        source: origin.to_string(),
        documents,
    })
}

fn parse_text(text: &str, origin: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, documents: &mut Vec<Document>| {
        if !paragraph.is_empty() {
            let n = documents.len() + 1;
            documents.push(Document {
                origin: format!("{origin} paragraph {n}"),
                content: DocumentContent::Text(paragraph.join("\n")),
            });
            paragraph.clear();
        }
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut paragraph, &mut documents);
        } else {
            paragraph.push(line.trim_end());
        }
    }
    flush(&mut paragraph, &mut documents);
    documents
}

fn parse_jsonl(text: &str, origin: &str) -> Result<Vec<Document>> {
    #[derive(serde::Deserialize)]
    struct Line {
        messages: Vec<Message>,
    }

    let mut documents = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| {
            Error::invalid_argument(
                "corpus",
                format!(
                    "{origin} line {line_number}: {e}; expected {{\"messages\": [{{\"role\": \"user\", \"content\": \"...\"}}, ...]}}"
                ),
            )
        })?;
        if parsed.messages.is_empty() {
            return Err(Error::invalid_argument(
                "corpus",
                format!("{origin} line {line_number}: `messages` is empty"),
            ));
        }
        documents.push(Document {
            origin: format!("{origin} line {line_number}"),
            content: DocumentContent::Chat(parsed.messages),
        });
    }
    Ok(documents)
}

fn parse_chatterbot(text: &str, origin: &str) -> Result<Vec<Document>> {
    use serde_yaml_ng::Value;

    let invalid =
        |message: String| Error::invalid_argument("corpus", format!("{origin}: {message}"));
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| invalid(format!("invalid YAML: {e}")))?;
    let conversations = match root.get("conversations") {
        Some(Value::Sequence(items)) => items,
        Some(_) => return Err(invalid("`conversations` is not a list".into())),
        None => {
            return Err(invalid(
                "no top-level `conversations` key; expected chatterbot-corpus YAML".into(),
            ))
        }
    };

    let mut documents = Vec::with_capacity(conversations.len());
    for (c, conversation) in conversations.iter().enumerate() {
        let n = c + 1;
        // A conversation written as a single string (english/trivia.yml of chatterbot-corpus
        // 1.3.3 has one) is one user utterance.
        let single;
        let utterances = match conversation {
            Value::Sequence(items) => items,
            Value::String(_) => {
                single = vec![conversation.clone()];
                &single
            }
            other => {
                return Err(invalid(format!(
                    "conversation {n} is {}, expected a list of utterances",
                    yaml_kind(other)
                )))
            }
        };
        if utterances.is_empty() {
            return Err(invalid(format!("conversation {n} is empty")));
        }
        let mut messages = Vec::with_capacity(utterances.len());
        for (u, utterance) in utterances.iter().enumerate() {
            // YAML reads unquoted numbers and booleans as such; they are utterances too.
            let content = match utterance {
                Value::String(s) => s.clone(),
                Value::Number(x) => x.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(invalid(format!(
                        "conversation {n}, utterance {}: expected text, found {}",
                        u + 1,
                        yaml_kind(other)
                    )))
                }
            };
            let role = if u % 2 == 0 { "user" } else { "assistant" };
            messages.push(Message::new(role, &content));
        }
        documents.push(Document {
            origin: format!("{origin} conversation {n}"),
            content: DocumentContent::Chat(messages),
        });
    }
    Ok(documents)
}

fn yaml_kind(value: &serde_yaml_ng::Value) -> &'static str {
    use serde_yaml_ng::Value;
    match value {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Splits a corpus into calibration and held-out documents, both in their original order.
///
/// Rule: document `i` gets the key `k_i`, the `(i + 1)`-th output of SplitMix64 started
/// from state `seed`. The `n_held_out = round(n * eval_fraction)` documents with the
/// smallest keys (ties by index) are held out; when `eval_fraction > 0`, `n_held_out` is at
/// least 1 and at most `n - 1`. The rule depends only on the document count, the seed and
/// the fraction, so the same file always splits the same way.
pub fn split_corpus(corpus: &Corpus, eval_fraction: f64, seed: u64) -> Result<(Corpus, Corpus)> {
    if !(0.0..1.0).contains(&eval_fraction) {
        return Err(Error::invalid_argument(
            "eval fraction",
            format!("must be in [0, 1), got {eval_fraction}"),
        ));
    }
    let n = corpus.documents.len();
    let mut n_held_out = (n as f64 * eval_fraction).round() as usize;
    if eval_fraction > 0.0 {
        if n < 2 {
            return Err(Error::invalid_argument(
                "corpus",
                format!(
                    "{} has {n} document(s); a calibration / held-out split needs at least 2",
                    corpus.source
                ),
            ));
        }
        n_held_out = n_held_out.clamp(1, n - 1);
    }

    let mut order: Vec<(u64, usize)> = (0..n)
        .map(|i| (splitmix64_output(seed, i as u64), i))
        .collect();
    order.sort_unstable();
    let mut held_out = vec![false; n];
    for &(_, i) in &order[..n_held_out] {
        held_out[i] = true;
    }

    let mut calibration = Corpus {
        source: format!("{} (calibration split)", corpus.source),
        documents: Vec::new(),
    };
    let mut evaluation = Corpus {
        source: format!("{} (held-out split)", corpus.source),
        documents: Vec::new(),
    };
    for (document, &is_held_out) in corpus.documents.iter().zip(&held_out) {
        let target = if is_held_out {
            &mut evaluation
        } else {
            &mut calibration
        };
        target.documents.push(document.clone());
    }
    Ok((calibration, evaluation))
}

/// A part of a corpus under `split_corpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Calibration,
    HeldOut,
    All,
}

impl Split {
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "calibration" => Ok(Split::Calibration),
            "held-out" => Ok(Split::HeldOut),
            "all" => Ok(Split::All),
            _ => Err(Error::invalid_argument(
                "split",
                format!("\"{name}\" is not one of: calibration, held-out, all"),
            )),
        }
    }
}

/// Returns one part of `corpus` under `split_corpus(corpus, eval_fraction, seed)`, or the
/// whole corpus for `Split::All`.
pub fn select_split(corpus: Corpus, split: Split, eval_fraction: f64, seed: u64) -> Result<Corpus> {
    let (calibration, held_out) = match split {
        Split::All => return Ok(corpus),
        _ => split_corpus(&corpus, eval_fraction, seed)?,
    };
    let part = if split == Split::Calibration {
        calibration
    } else {
        held_out
    };
    if part.documents.is_empty() {
        return Err(Error::invalid_argument(
            "corpus",
            format!(
                "{} is empty; with eval fraction {eval_fraction} nothing is held out",
                part.source
            ),
        ));
    }
    Ok(part)
}

/// Returns the `(step + 1)`-th output of SplitMix64 (Steele, Lea and Flood, 2014) from state `seed`.
fn splitmix64_output(seed: u64, step: u64) -> u64 {
    let mut z = seed.wrapping_add((step + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The tokens of a whole corpus, documents concatenated in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenStream {
    /// Name of the tokenized corpus, for error messages.
    pub source: String,
    pub tokens: Vec<u32>,
    /// `assistant[t]` is true when token `t` belongs to an assistant reply: its content and
    /// the end-of-turn text the template puts after it (for ChatML, `<|im_end|>`), trailing
    /// whitespace excluded. A loss over replies only counts the predictions of these tokens.
    pub assistant: Vec<bool>,
    /// Index of the first token of each document.
    pub document_starts: Vec<usize>,
}

impl TokenStream {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Tokenizes every document and concatenates them.
///
/// - Chat documents are rendered whole with the chat template (no generation prompt) and
///   encoded with control tokens recognised.
/// - Text documents are encoded as plain text (control-token strings stay text) followed by a
///   blank line, `"\n\n"`, the paragraph separator they were split on.
/// - When `tokenizer.ggml.add_bos_token` is true, each document starts with BOS.
pub fn tokenize_corpus(
    corpus: &Corpus,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
) -> Result<TokenStream> {
    let mut stream = TokenStream {
        source: corpus.source.clone(),
        ..TokenStream::default()
    };
    let bos = tokenizer.bos_token_id.filter(|_| tokenizer.add_bos);
    for document in &corpus.documents {
        stream.document_starts.push(stream.tokens.len());
        if let Some(bos) = bos {
            stream.tokens.push(bos);
            stream.assistant.push(false);
        }
        match &document.content {
            DocumentContent::Text(text) => {
                let ids = tokenizer.encode_plain(&format!("{text}\n\n"))?;
                stream
                    .assistant
                    .extend(std::iter::repeat_n(false, ids.len()));
                stream.tokens.extend(ids);
            }
            DocumentContent::Chat(messages) => {
                let (text, spans) =
                    render_with_assistant_spans(template, messages).map_err(|e| {
                        Error::invalid_argument("corpus", format!("{}: {e}", document.origin))
                    })?;
                let (ids, offsets) = tokenizer.encode_with_offsets(&text)?;
                for (&(start, end), id) in offsets.iter().zip(ids) {
                    let in_reply = spans
                        .iter()
                        .any(|span| start < span.end && end > span.start);
                    stream.tokens.push(id);
                    stream.assistant.push(in_reply);
                }
            }
        }
    }
    if stream.tokens.is_empty() {
        return Err(Error::invalid_argument(
            "corpus",
            format!("{} produced no tokens", corpus.source),
        ));
    }
    Ok(stream)
}

/// Renders a conversation and returns the byte ranges of its assistant replies.
///
/// A reply's range starts where `render(messages[..i], add_generation_prompt = true)` ends
/// and ends where `render(messages[..=i], false)` ends, trailing whitespace excluded, so it
/// covers the content and the end-of-turn marker. That needs a template whose render of a
/// prefix is a prefix of the full render, as ChatML and SmolLM2's are. For other templates
/// the range is the content found by text search, without the end-of-turn marker.
pub fn render_with_assistant_spans(
    template: &ChatTemplate,
    messages: &[Message],
) -> Result<(String, Vec<Range<usize>>)> {
    let full = template.render(messages, false)?;
    let mut spans = Vec::new();
    let mut search_from = 0;
    for (i, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        // Some templates reject a prefix (for example one that ends on a user turn); those
        // take the text-search path below.
        if let (Ok(prompt), Ok(through_reply)) = (
            template.render(&messages[..i], true),
            template.render(&messages[..=i], false),
        ) {
            let end = through_reply.trim_end().len();
            if full.starts_with(&through_reply)
                && through_reply.starts_with(&prompt)
                && prompt.len() <= end
            {
                spans.push(prompt.len()..end);
                search_from = end;
                continue;
            }
        }
        let content = message.content.as_str();
        match full[search_from..].find(content) {
            Some(offset) if !content.is_empty() => {
                let start = search_from + offset;
                spans.push(start..start + content.len());
                search_from = start + content.len();
            }
            _ => {
                return Err(Error::Template(format!(
                    "assistant message {} does not appear in the rendered conversation",
                    i + 1
                )))
            }
        }
    }
    Ok((full, spans))
}

/// A slice of a token stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Position of the first token in the stream.
    pub start: usize,
    pub tokens: Vec<u32>,
    /// The stream's `assistant` flags for these tokens.
    pub assistant: Vec<bool>,
}

fn window(stream: &TokenStream, range: Range<usize>) -> Window {
    Window {
        start: range.start,
        tokens: stream.tokens[range.clone()].to_vec(),
        assistant: stream.assistant[range].to_vec(),
    }
}

/// Samples `n_samples` windows of `seq_len` tokens that never overlap, returned in stream
/// order.
///
/// Rule: the stream is cut into `len / seq_len` slots of `seq_len` tokens after a random
/// shift in `[0, len - slots * seq_len]`, and `n_samples` distinct slots are drawn. All
/// draws come from `StdRng::seed_from_u64(seed)` (rand 0.9). Windows may cross document
/// boundaries.
pub fn calibration_windows(
    stream: &TokenStream,
    n_samples: usize,
    seq_len: usize,
    seed: u64,
) -> Result<Vec<Window>> {
    if n_samples == 0 {
        return Err(Error::invalid_argument(
            "n_samples",
            "must be at least 1, got 0",
        ));
    }
    if seq_len == 0 {
        return Err(Error::invalid_argument(
            "seq_len",
            "must be at least 1, got 0",
        ));
    }
    let needed = n_samples.checked_mul(seq_len).ok_or_else(|| {
        Error::invalid_argument(
            "n_samples",
            format!("{n_samples} × seq_len {seq_len} overflows"),
        )
    })?;
    let len = stream.len();
    if len < needed {
        return Err(Error::invalid_argument(
            "calibration data",
            format!(
                "{} has {len} tokens, fewer than the {needed} requested ({n_samples} samples × {seq_len} tokens); \
                 use more data, fewer samples or a shorter sequence length",
                stream.source
            ),
        ));
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let n_slots = len / seq_len;
    let shift = rng.random_range(0..=len - n_slots * seq_len);
    // Partial Fisher-Yates shuffle: the first n_samples entries are a uniform draw without
    // replacement.
    let mut slots: Vec<usize> = (0..n_slots).collect();
    for i in 0..n_samples {
        let j = rng.random_range(i..n_slots);
        slots.swap(i, j);
    }
    let mut chosen = slots[..n_samples].to_vec();
    chosen.sort_unstable();
    Ok(chosen
        .into_iter()
        .map(|slot| {
            let start = shift + slot * seq_len;
            window(stream, start..start + seq_len)
        })
        .collect())
}

/// Cuts the stream into consecutive non-overlapping windows of `window_len` tokens. The last
/// window contains the remaining tokens and is shorter when `window_len` does not divide the
/// length. A remainder of a single token is dropped, because a window needs two tokens to
/// predict one.
pub fn evaluation_windows(stream: &TokenStream, window_len: usize) -> Result<Vec<Window>> {
    if window_len < 2 {
        return Err(Error::invalid_argument(
            "window",
            format!("must be at least 2 tokens, got {window_len}"),
        ));
    }
    if stream.len() < 2 {
        return Err(Error::invalid_argument(
            "evaluation data",
            format!(
                "{} has {} token(s); at least 2 are needed to predict one",
                stream.source,
                stream.len()
            ),
        ));
    }
    let mut windows = Vec::new();
    let mut start = 0;
    while stream.len() - start >= 2 {
        let end = (start + window_len).min(stream.len());
        windows.push(window(stream, start..end));
        start = end;
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_published_outputs() {
        // First outputs of SplitMix64 from state 0, as in the reference C implementation.
        assert_eq!(splitmix64_output(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64_output(0, 1), 0x6E78_9E6A_A1B9_65F4);
    }
}
