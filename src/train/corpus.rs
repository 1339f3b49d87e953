//! Training samples from a corpus (see `crate::data`): one sample per chat document, and
//! consecutive windows of plain-text documents.

use crate::chat_template::ChatTemplate;
use crate::data::{split_corpus, tokenize_corpus, Corpus, DocumentContent};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use crate::train::batch::{Sample, TrainData};

/// Tokenizes `corpus` into samples. A chat document becomes one sample whose loss mask marks
/// the assistant replies and their end-of-turn marker. `TrainData::new` later truncates samples
/// longer than `seq_len + 1` tokens and counts them. A text document is cut into windows of
/// `seq_len + 1` tokens that overlap by one token, so every token after the first is a target
/// exactly once.
pub fn samples_from_corpus(
    corpus: &Corpus,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    seq_len: usize,
) -> Result<Vec<Sample>> {
    let stream = tokenize_corpus(corpus, tokenizer, template)?;
    let mut samples = Vec::with_capacity(corpus.documents.len());
    for (d, document) in corpus.documents.iter().enumerate() {
        let start = stream.document_starts[d];
        let end = stream
            .document_starts
            .get(d + 1)
            .copied()
            .unwrap_or(stream.tokens.len());
        let tokens = &stream.tokens[start..end];
        match document.content {
            DocumentContent::Chat(_) => {
                samples.push(Sample {
                    tokens: tokens.to_vec(),
                    loss_mask: stream.assistant[start..end].to_vec(),
                });
            }
            DocumentContent::Text(_) => {
                let mut at = 0;
                while at + 1 < tokens.len() {
                    let window_end = (at + seq_len + 1).min(tokens.len());
                    samples.push(Sample::text(tokens[at..window_end].to_vec()));
                    at = window_end - 1;
                }
            }
        }
    }
    Ok(samples)
}

/// Splits `corpus` with `split_corpus(eval_fraction, split_seed)` and turns both parts into
/// training data. The held-out part is `None` when `eval_fraction` is 0.
pub fn prepare(
    corpus: &Corpus,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    seq_len: usize,
    vocab_size: usize,
    eval_fraction: f64,
    split_seed: u64,
) -> Result<(TrainData, Option<TrainData>)> {
    if corpus.documents.is_empty() {
        return Err(Error::Data(format!(
            "{} contains no documents",
            corpus.source
        )));
    }
    let (train, held_out) = split_corpus(corpus, eval_fraction, split_seed)?;
    let train = TrainData::new(
        samples_from_corpus(&train, tokenizer, template, seq_len)?,
        seq_len,
        vocab_size,
    )?;
    let eval = if held_out.documents.is_empty() {
        None
    } else {
        let samples = samples_from_corpus(&held_out, tokenizer, template, seq_len)?;
        Some(
            TrainData::new(samples, seq_len, vocab_size)
                .map_err(|e| Error::Data(format!("held-out split: {e}")))?,
        )
    };
    Ok((train, eval))
}
