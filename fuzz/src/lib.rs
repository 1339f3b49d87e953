//! Steps shared by the fuzz targets.

use prunechat::chat_template::{ChatTemplate, Message};
use prunechat::eval::stored_decoder_sparsity;
use prunechat::gguf::Gguf;
use prunechat::model::Config;
use prunechat::tokenizer::Tokenizer;

/// Runs the steps after `Gguf::read` that parse metadata, as `ChatSession::from_gguf` does:
/// the model configuration, the stored sparsity, the tokenizer and the chat template. The
/// first prompt is rendered, encoded and decoded again. Weights are not loaded into a model,
/// so a run stays within microseconds. Errors are expected and ignored.
pub fn parse_model_metadata(gguf: &Gguf) {
    if let Ok(config) = Config::from_gguf(gguf) {
        let _ = stored_decoder_sparsity(gguf, config.n_layers());
    }
    let Ok(tokenizer) = Tokenizer::from_gguf(gguf) else {
        return;
    };
    let Ok(template) = ChatTemplate::from_gguf(gguf, &tokenizer) else {
        return;
    };
    let messages = [Message::new("user", "Hello, world! 123")];
    if let Ok(prompt) = template.render(&messages, true) {
        if let Ok(ids) = tokenizer.encode(&prompt) {
            let _ = tokenizer.decode(&ids);
        }
    }
}
