//! The wasm-bindgen facade for pruning in the browser. `pruneModel` runs one whole job on a GGUF
//! model and returns the pruned model as GGUF bytes. The job is either connection pruning
//! (magnitude, Wanda, SparseGPT; unstructured or N:M) or structured pruning (FFN neurons, query
//! heads, key/value groups, layers), calibrated on corpus files held in memory.
//! Progress goes to a JavaScript callback as JSON. The call is synchronous, so the page cancels
//! a job by terminating the worker that runs it.

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::chat_template::ChatTemplate;
use crate::convert::parse_target;
use crate::data::{
    calibration_windows, parse_corpus_files, select_split, tokenize_corpus, CorpusFile, Split,
    DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED,
};
use crate::gguf::{dtype_name, Gguf};
use crate::model::dense::DenseModel;
use crate::prune::structured::{
    prune_structured, Progress, Ratio, Score, Structure, StructuredConfig, Target,
    DEFAULT_GREEDY_STEPS,
};
use crate::prune::{prune_model, Method, Pattern, PruneConfig};
use crate::tokenizer::Tokenizer;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Settings of one job, from JSON. Give `method` for connection pruning, or `structure` with
/// `score` and `target_params` for structured pruning.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneSettings {
    /// magnitude, wanda or sparsegpt.
    method: Option<String>,
    /// "unstructured" (default) or N:M such as "2:4".
    pattern: Option<String>,
    /// Fraction of each matrix's weights set to zero, for unstructured patterns.
    sparsity: Option<f64>,
    /// ffn, heads, kv-groups or layers.
    structure: Option<String>,
    /// magnitude, wanda, taylor or block-influence.
    score: Option<String>,
    /// Fraction of all parameters to keep, in (0, 1).
    target_params: Option<f64>,
    #[serde(default = "default_greedy_steps")]
    greedy_steps: usize,
    #[serde(default = "default_n_samples")]
    n_samples: usize,
    #[serde(default = "default_seq_len")]
    seq_len: usize,
    #[serde(default)]
    seed: u64,
    /// Weight type of the written GGUF.
    #[serde(default = "default_to")]
    to: String,
}

fn default_greedy_steps() -> usize {
    // Fewer re-scoring passes than the CLI's default: each one runs the calibration data
    // through the whole model on one browser thread.
    DEFAULT_GREEDY_STEPS.min(2)
}

fn default_n_samples() -> usize {
    8
}

fn default_seq_len() -> usize {
    128
}

fn default_to() -> String {
    "q8_0".into()
}

/// The pruning a job runs, checked before the model is read.
enum Job {
    Connections(PruneConfig),
    Structured(StructuredConfig),
}

impl PruneSettings {
    fn job(&self) -> crate::Result<Job> {
        use crate::Error;
        let dtype = parse_target(&self.to)?;
        match (&self.method, &self.structure) {
            (Some(method), None) => {
                let method = Method::parse(method)?;
                for (name, set) in [
                    ("score", self.score.is_some()),
                    ("target_params", self.target_params.is_some()),
                ] {
                    if set {
                        return Err(Error::invalid_argument(
                            name,
                            "applies to structured pruning; give `structure` instead of `method`, or remove it",
                        ));
                    }
                }
                let pattern_text = self.pattern.as_deref().unwrap_or("unstructured");
                let pattern = Pattern::parse(pattern_text, self.sparsity.unwrap_or(f64::NAN))?;
                if matches!(pattern, Pattern::Unstructured { .. }) && self.sparsity.is_none() {
                    return Err(Error::invalid_argument(
                        "sparsity",
                        "is required for unstructured pruning, for example 0.5",
                    ));
                }
                let config = PruneConfig {
                    method,
                    pattern,
                    ..PruneConfig::default()
                };
                config.validate()?;
                Ok(Job::Connections(config))
            }
            (None, Some(structure)) => {
                let structure = Structure::parse(structure)?;
                for (name, set) in [
                    ("sparsity", self.sparsity.is_some()),
                    ("pattern", self.pattern.is_some()),
                ] {
                    if set {
                        return Err(Error::invalid_argument(
                            name,
                            "applies to connection pruning; give `method` instead of `structure`, or remove it",
                        ));
                    }
                }
                let score = Score::parse(self.score.as_deref().ok_or_else(|| {
                    Error::invalid_argument(
                        "score",
                        "is required with `structure`: magnitude, wanda or taylor, or block-influence for layers",
                    )
                })?)?;
                let fraction = self.target_params.ok_or_else(|| {
                    Error::invalid_argument(
                        "target_params",
                        "is required with `structure`: the fraction of parameters to keep, for example 0.75",
                    )
                })?;
                let config = StructuredConfig {
                    structure,
                    score,
                    ratio: Ratio::Global,
                    target: Target::Params(fraction),
                    greedy_steps: self.greedy_steps,
                    ffn_multiple: dtype.block_size(),
                    dtype,
                    batch_size: crate::prune::DEFAULT_BATCH_SIZE,
                };
                config.validate()?;
                Ok(Job::Structured(config))
            }
            (Some(_), Some(_)) => Err(Error::invalid_argument(
                "method",
                "and `structure` are both given; a job either prunes single weights (method) or removes whole groups (structure)",
            )),
            (None, None) => Err(Error::invalid_argument(
                "method",
                "or `structure` is required, for example {\"method\": \"wanda\", \"sparsity\": 0.5}",
            )),
        }
    }
}

/// The pruned model and the job's report.
#[wasm_bindgen]
pub struct PruneResult {
    bytes: Vec<u8>,
    report: String,
}

#[wasm_bindgen]
impl PruneResult {
    /// Moves the GGUF bytes out; a second call returns an empty array.
    #[wasm_bindgen(js_name = takeBytes)]
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// Returns the report as JSON: `kind` ("connections" or "structured"), the achieved
    /// sparsity or kept parameter fraction, the calibration data, times, and the file's type and
    /// size.
    pub fn report(&self) -> String {
        self.report.clone()
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Prunes the GGUF model `model` and returns the result.
///
/// `corpus_json` is a JSON array of `{"name", "text"}` corpus files (the name's extension
/// picks the format: .yml chatterbot, .jsonl chat, else text). Their calibration split
/// (the one `prunechat prune --calib` uses) gives `n_samples` windows of `seq_len` tokens.
/// Magnitude pruning reads no calibration data, so the array may then be empty.
/// `settings_json` contains `PruneSettings`. `progress` is called with one JSON argument:
/// `{"phase": "prepare", "stage"}` (stage "model", then "calibration"), `{"phase": "layers", "done", "total"}` (connection
/// pruning), `{"phase": "scoring", "step", "done", "total"}` and `{"phase": "step", "step",
/// "params", "file_bytes", "calibration_loss"}` (structured), then `{"phase": "export"}`.
#[wasm_bindgen(js_name = pruneModel)]
pub fn prune_model_js(
    model: &[u8],
    corpus_json: &str,
    settings_json: &str,
    progress: &js_sys::Function,
) -> Result<PruneResult, JsError> {
    let started = now_ms();
    let settings: PruneSettings = serde_json::from_str(settings_json)
        .map_err(|e| JsError::new(&format!("invalid pruning settings {settings_json}: {e}")))?;
    let job = settings.job().map_err(js_error)?;
    let dtype = parse_target(&settings.to).map_err(js_error)?;
    let files: Vec<CorpusFile> = serde_json::from_str(corpus_json).map_err(|e| {
        JsError::new(&format!(
            "invalid calibration files: {e}; expected a JSON array of {{\"name\", \"text\"}}"
        ))
    })?;
    let needs_calibration = match &job {
        Job::Connections(config) => config.method.needs_calibration(),
        Job::Structured(_) => true,
    };

    let report_progress = |value: serde_json::Value| {
        // A failing progress callback must not stop the job; the result still reaches the page.
        let _ = progress.call1(&JsValue::NULL, &JsValue::from_str(&value.to_string()));
    };
    report_progress(serde_json::json!({"phase": "prepare", "stage": "model"}));
    let gguf = Gguf::read(model).map_err(js_error)?;
    let mut dense = DenseModel::from_gguf(&gguf).map_err(js_error)?;

    let mut calibration_report = serde_json::Value::Null;
    let calibration: Vec<Vec<u32>> = if needs_calibration || !files.is_empty() {
        report_progress(serde_json::json!({"phase": "prepare", "stage": "calibration"}));
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(js_error)?;
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer).map_err(js_error)?;
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        let source = names.join(", ");
        let corpus = parse_corpus_files(&files, &source).map_err(js_error)?;
        let corpus = select_split(
            corpus,
            Split::Calibration,
            DEFAULT_EVAL_FRACTION,
            DEFAULT_SPLIT_SEED,
        )
        .map_err(js_error)?;
        let stream = tokenize_corpus(&corpus, &tokenizer, &template).map_err(js_error)?;
        let windows =
            calibration_windows(&stream, settings.n_samples, settings.seq_len, settings.seed)
                .map_err(js_error)?;
        calibration_report = serde_json::json!({
            "files": names,
            "tokens": stream.len(),
            "n_samples": settings.n_samples,
            "seq_len": settings.seq_len,
            "seed": settings.seed,
        });
        windows.into_iter().map(|w| w.tokens).collect()
    } else {
        Vec::new()
    };
    drop(gguf);

    let clock = || now_ms() - started;
    let mut report = match &job {
        Job::Connections(config) => {
            let outcome = prune_model(
                &mut dense,
                &calibration,
                config,
                Some(&clock),
                &mut |done, total| {
                    report_progress(
                        serde_json::json!({"phase": "layers", "done": done, "total": total}),
                    )
                },
            )
            .map_err(js_error)?;
            let layers: Vec<serde_json::Value> = outcome
                .report
                .layers
                .iter()
                .map(|layer| {
                    serde_json::json!({
                        "label": layer.label(),
                        "sparsity": layer.sparsity(),
                        "ms": layer.ms,
                    })
                })
                .collect();
            serde_json::json!({
                "kind": "connections",
                "method": config.method.name(),
                "pattern": config.pattern.describe(),
                "target_sparsity": outcome.report.target_sparsity,
                "sparsity": outcome.report.sparsity(),
                "layers": layers,
            })
        }
        Job::Structured(config) => {
            let outcome = prune_structured(
                &mut dense,
                &calibration,
                config,
                Some(&clock),
                &mut |event| match event {
                    Progress::Scoring { step, done, total } => report_progress(serde_json::json!({
                        "phase": "scoring", "step": step, "done": done, "total": total,
                    })),
                    Progress::Step(step) => report_progress(serde_json::json!({
                        "phase": "step",
                        "step": step.step,
                        "params": step.params,
                        "file_bytes": step.file_bytes,
                        "calibration_loss": step.calibration_loss,
                    })),
                },
            )
            .map_err(js_error)?;
            let mut value = serde_json::to_value(&outcome.report).map_err(js_error)?;
            value["kind"] = "structured".into();
            value["kept_fraction"] = outcome.report.kept_fraction().into();
            value
        }
    };

    report_progress(serde_json::json!({"phase": "export"}));
    let bytes = dense
        .to_gguf(dtype)
        .and_then(|g| g.to_bytes())
        .map_err(js_error)?;
    report["calibration"] = calibration_report;
    report["n_params"] = dense.config.n_params().into();
    report["file_bytes"] = bytes.len().into();
    report["type"] = dtype_name(dtype).into();
    report["ms"] = (now_ms() - started).into();
    Ok(PruneResult {
        bytes,
        report: report.to_string(),
    })
}
