//! The wasm-bindgen facade the browser worker uses. Every error becomes a JavaScript `Error`
//! here, once; results are JSON strings so the JavaScript side stays free of generated types.

use wasm_bindgen::prelude::*;

use crate::gguf::Gguf;
use crate::sampler::SamplingParams;
use crate::session::ChatSession;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, JsError> {
    serde_json::to_string(value).map_err(js_error)
}

/// One model and its chat history.
#[wasm_bindgen]
pub struct ChatEngine {
    session: ChatSession,
}

#[wasm_bindgen]
impl ChatEngine {
    /// Loads a GGUF model from its bytes. `max_context` caps the KV cache, in tokens.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], max_context: u32) -> Result<ChatEngine, JsError> {
        let gguf = Gguf::read(bytes).map_err(js_error)?;
        let session = ChatSession::from_gguf(gguf, max_context as usize).map_err(js_error)?;
        Ok(ChatEngine { session })
    }

    /// Model facts as JSON (see `SessionInfo`).
    pub fn info(&self) -> Result<String, JsError> {
        to_json(self.session.info())
    }

    /// Appends a user message and prefills it. `system` may be empty for the model's default;
    /// `sampling_json` contains `SamplingParams` fields, missing ones take their defaults.
    #[wasm_bindgen(js_name = startTurn)]
    pub fn start_turn(
        &mut self,
        user: &str,
        system: &str,
        sampling_json: &str,
    ) -> Result<String, JsError> {
        let params: SamplingParams = serde_json::from_str(sampling_json).map_err(|e| {
            JsError::new(&format!("invalid sampling settings {sampling_json}: {e}"))
        })?;
        let start = self
            .session
            .start_turn(user, Some(system), params)
            .map_err(js_error)?;
        to_json(&start)
    }

    /// Generates one token; returns `TokenStep` as JSON.
    #[wasm_bindgen(js_name = nextToken)]
    pub fn next_token(&mut self) -> Result<String, JsError> {
        let step = self.session.next_token().map_err(js_error)?;
        to_json(&step)
    }

    /// Ends the turn early and returns held-back text (usually empty).
    pub fn stop(&mut self) -> String {
        self.session.stop()
    }

    pub fn reset(&mut self) {
        self.session.reset()
    }

    /// Runtime figures as JSON: KV cache bytes and length, history length.
    pub fn stats(&self) -> Result<String, JsError> {
        to_json(&serde_json::json!({
            "kv_cache_bytes": self.session.cache_bytes(),
            "kv_cache_tokens": self.session.cache_len(),
            "history_messages": self.session.history().len(),
        }))
    }
}
