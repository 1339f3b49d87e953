//! The wasm-bindgen facade the browser worker uses. Every error becomes a JavaScript `Error`
//! here, once; results are JSON strings so the JavaScript side stays free of generated types.

use wasm_bindgen::prelude::*;

use crate::eval::{reply_agreement, WindowPredictions};
use crate::gguf::Gguf;
use crate::sampler::SamplingParams;
use crate::session::ChatSession;

/// `initThreadPool(n)` starts `n` Web Workers that share this module's memory and returns a
/// Promise that resolves once rayon's global pool runs on them. Only the threaded build
/// (pkg-threads/) exports it; call it once, right after the module's init function.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// `setThreadLimit(n)` caps the threads that this module's kernels use at `n` (at least 1), for
/// example while other engines on the same page compute too. A value at or above the pool's
/// size uses every thread. Outputs are the same for every value.
#[wasm_bindgen(js_name = setThreadLimit)]
pub fn set_thread_limit(limit: u32) {
    crate::parallel::set_thread_limit(limit as usize);
}

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
    /// Predictions of the perplexity run in progress (see `evalWindow`).
    evaluation: WindowPredictions,
}

#[wasm_bindgen]
impl ChatEngine {
    /// Loads a GGUF model from its bytes. `max_context` caps the KV cache, in tokens.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], max_context: u32) -> Result<ChatEngine, JsError> {
        let gguf = Gguf::read(bytes).map_err(js_error)?;
        let session = ChatSession::from_gguf(gguf, max_context as usize).map_err(js_error)?;
        Ok(ChatEngine {
            session,
            evaluation: WindowPredictions::default(),
        })
    }

    /// Model facts as JSON (see `SessionInfo`), plus `threads`: the number of threads that
    /// parallel kernels use (`parallel::threads`), 1 outside the threaded build.
    pub fn info(&self) -> Result<String, JsError> {
        let mut info = serde_json::to_value(self.session.info()).map_err(js_error)?;
        info["threads"] = crate::parallel::threads().into();
        to_json(&info)
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

    /// Token ids of the last turn's prompt (the whole conversation before the reply).
    #[wasm_bindgen(js_name = promptTokens)]
    pub fn prompt_tokens(&self) -> Vec<u32> {
        self.session.prompt_tokens().to_vec()
    }

    /// Teacher-forces `prompt` and `reply` (token ids, usually from another model's
    /// `promptTokens` and sampled tokens) and returns `eval::ReplyAgreement` as JSON without
    /// its `top1` list. The chat history and KV cache are not touched.
    #[wasm_bindgen(js_name = scoreReply)]
    pub fn score_reply(&self, prompt: &[u32], reply: &[u32]) -> Result<String, JsError> {
        let scores = reply_agreement(self.session.model(), prompt, reply).map_err(js_error)?;
        to_json(&serde_json::json!({
            "n_scored": scores.n_scored,
            "n_agree": scores.n_agree,
            "agreement": scores.agreement,
        }))
    }

    /// Clears the predictions of an earlier perplexity run.
    #[wasm_bindgen(js_name = evalReset)]
    pub fn eval_reset(&mut self) {
        self.evaluation = WindowPredictions::default();
    }

    /// Scores one evaluation window (token ids, run from an empty KV cache as `eval::predict`
    /// does) and returns the totals since `evalReset` as JSON: `n_windows`, `n_predicted`,
    /// `mean_nll` (nats) and `perplexity`.
    #[wasm_bindgen(js_name = evalWindow)]
    pub fn eval_window(&mut self, tokens: &[u32]) -> Result<String, JsError> {
        let index = self.evaluation.nll_sums.len();
        self.evaluation
            .push_window(self.session.model(), tokens, index)
            .map_err(js_error)?;
        let n_predicted = self.evaluation.n_predicted();
        let mean_nll = self.evaluation.nll_sums.iter().sum::<f64>() / n_predicted as f64;
        to_json(&serde_json::json!({
            "n_windows": index + 1,
            "n_predicted": n_predicted,
            "mean_nll": mean_nll,
            "perplexity": self.evaluation.perplexity(),
        }))
    }
}
