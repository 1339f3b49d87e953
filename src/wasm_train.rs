//! The wasm-bindgen facade for fine-tuning in the browser. One `step` call runs one optimizer
//! step, so the worker can report progress and stop between steps. Settings and reports are
//! JSON; errors become JavaScript `Error`s here.

use wasm_bindgen::prelude::*;

use crate::chat_template::ChatTemplate;
use crate::convert::parse_target;
use crate::data::{detect_format, parse_corpus, parse_corpus_files, Corpus, CorpusFile};
use crate::gguf::Gguf;
use crate::model::dense::DenseModel;
use crate::tokenizer::Tokenizer;
use crate::train::masks::MaskSet;
use crate::train::{corpus, TrainConfig, Trainer};

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Splits the settings JSON into the `TrainConfig` and the `keep_zeros` flag (default true).
fn parse_settings(config_json: &str) -> Result<(TrainConfig, bool), JsError> {
    let invalid = |e: &dyn std::fmt::Display| {
        JsError::new(&format!("invalid training settings {config_json}: {e}"))
    };
    let mut value: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| invalid(&e))?;
    let keep_zeros = match value
        .as_object_mut()
        .and_then(|fields| fields.remove("keep_zeros"))
    {
        None => true,
        Some(serde_json::Value::Bool(flag)) => flag,
        Some(other) => {
            return Err(invalid(&format!(
                "keep_zeros must be true or false, got {other}"
            )))
        }
    };
    let config = serde_json::from_value(value).map_err(|e| invalid(&e))?;
    Ok((config, keep_zeros))
}

/// A fine-tuning run on one model and one data set.
#[wasm_bindgen]
pub struct FineTuner {
    /// `None` after `export`, which consumes the run.
    trainer: Option<Trainer>,
    info: serde_json::Value,
}

#[wasm_bindgen]
impl FineTuner {
    /// Prepares a run. `model` is a GGUF file's bytes. `data` is the text of a corpus file
    /// named `data_name`, whose extension (.txt, .jsonl, .yml) or content picks the format.
    /// `config_json` contains `TrainConfig` fields (missing ones take their defaults; give
    /// `"lora": {"rank": 8, "alpha": 16, "targets": [...]}` for LoRA). `eval_fraction` of the
    /// documents are held out for evaluation. Zeros in the model's projection matrices are
    /// kept at zero unless `config_json` also has `"keep_zeros": false`, as the CLI's
    /// `--no-masks` does. `checkpoint`, when not empty, is a checkpoint of the same run to resume.
    #[wasm_bindgen(constructor)]
    pub fn new(
        model: &[u8],
        data: &str,
        data_name: &str,
        config_json: &str,
        eval_fraction: f64,
        checkpoint: &[u8],
    ) -> Result<FineTuner, JsError> {
        let corpus_data =
            parse_corpus(data, detect_format(data_name, data), data_name).map_err(js_error)?;
        Self::with_corpus(model, &corpus_data, config_json, eval_fraction, checkpoint)
    }

    /// As the constructor, with the data given as several corpus files: `files_json` is a JSON
    /// array of `{"name", "text"}` (for example the bundled chatterbot YAML files).
    #[wasm_bindgen(js_name = withFiles)]
    pub fn with_files(
        model: &[u8],
        files_json: &str,
        config_json: &str,
        eval_fraction: f64,
        checkpoint: &[u8],
    ) -> Result<FineTuner, JsError> {
        let files: Vec<CorpusFile> = serde_json::from_str(files_json).map_err(|e| {
            JsError::new(&format!(
                "invalid training files: {e}; expected a JSON array of {{\"name\", \"text\"}}"
            ))
        })?;
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        let corpus_data = parse_corpus_files(&files, &names.join(", ")).map_err(js_error)?;
        Self::with_corpus(model, &corpus_data, config_json, eval_fraction, checkpoint)
    }
}

impl FineTuner {
    fn with_corpus(
        model: &[u8],
        corpus_data: &Corpus,
        config_json: &str,
        eval_fraction: f64,
        checkpoint: &[u8],
    ) -> Result<FineTuner, JsError> {
        let (config, keep_zeros) = parse_settings(config_json)?;
        let gguf = Gguf::read(model).map_err(js_error)?;
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(js_error)?;
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer).map_err(js_error)?;
        let dense = DenseModel::from_gguf(&gguf).map_err(js_error)?;
        drop(gguf);

        let (train, eval) = corpus::prepare(
            corpus_data,
            &tokenizer,
            &template,
            config.seq_len,
            dense.config.vocab_size,
            eval_fraction,
            config.seed,
        )
        .map_err(js_error)?;
        let info = serde_json::json!({
            "train_data": train.report,
            "eval_data": eval.as_ref().map(|e| e.report.clone()),
            "steps": config.steps,
        });
        let trainer = if checkpoint.is_empty() {
            let masks = if keep_zeros {
                MaskSet::from_zeros(&dense).map_err(js_error)?
            } else {
                MaskSet::new()
            };
            Trainer::new(dense, config, masks, train, eval)
        } else {
            Trainer::resume(dense, config, train, eval, checkpoint)
        }
        .map_err(js_error)?;
        let mut info = info;
        info["n_trained_params"] = trainer.n_trained_params().into();
        info["step"] = trainer.step_count().into();
        Ok(FineTuner {
            trainer: Some(trainer),
            info,
        })
    }
}

#[wasm_bindgen]
impl FineTuner {
    /// Data reports, step count and number of trained values, as JSON.
    pub fn info(&self) -> String {
        self.info.to_string()
    }

    fn trainer(&mut self) -> Result<&mut Trainer, JsError> {
        self.trainer.as_mut().ok_or_else(|| {
            JsError::new("the run was exported; start a new FineTuner to train again")
        })
    }

    /// Runs one optimizer step and returns its `StepReport` as JSON.
    pub fn step(&mut self) -> Result<String, JsError> {
        let report = self.trainer()?.step().map_err(js_error)?;
        serde_json::to_string(&report).map_err(js_error)
    }

    /// True once every configured step has run.
    #[wasm_bindgen(js_name = isDone)]
    pub fn is_done(&mut self) -> Result<bool, JsError> {
        Ok(self.trainer()?.is_done())
    }

    /// Loss on the held-out data, as an `EvalReport` JSON.
    pub fn evaluate(&mut self) -> Result<String, JsError> {
        let report = self.trainer()?.evaluate().map_err(js_error)?;
        serde_json::to_string(&report).map_err(js_error)
    }

    /// Returns the run's state as safetensors bytes, for `new(..., checkpoint)`.
    pub fn checkpoint(&mut self) -> Result<Vec<u8>, JsError> {
        self.trainer()?.checkpoint_bytes().map_err(js_error)
    }

    /// Ends the run and returns the fine-tuned model as GGUF bytes with matrices of type
    /// `dtype` ("f32", "q8_0", ...). LoRA adapters are merged, masked weights stay zero.
    pub fn export(&mut self, dtype: &str) -> Result<Vec<u8>, JsError> {
        let dtype = parse_target(dtype).map_err(js_error)?;
        let trainer = self
            .trainer
            .take()
            .ok_or_else(|| JsError::new("the run was already exported"))?;
        let model = trainer.into_model().map_err(js_error)?;
        model
            .to_gguf(dtype)
            .and_then(|g| g.to_bytes())
            .map_err(js_error)
    }
}
