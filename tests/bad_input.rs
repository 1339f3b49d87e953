//! Files and arguments that must be rejected with a clear error, never a panic.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::process::Command;

use candle_core::quantized::GgmlDType;
use prunechat::gguf::{Gguf, MetadataValue};
use prunechat::session::ChatSession;
use prunechat::synthetic::{tiny_llama, tiny_run, TinySpec};
use prunechat::train::Trainer;

fn load_error(bytes: &[u8]) -> String {
    match Gguf::read(bytes).and_then(|g| ChatSession::from_gguf(g, 64)) {
        Ok(_) => panic!("{} bytes loaded, expected an error", bytes.len()),
        Err(e) => e.to_string(),
    }
}

fn tiny_bytes() -> Vec<u8> {
    tiny_llama(&TinySpec::default())
        .unwrap()
        .to_bytes()
        .unwrap()
}

fn with_metadata(key: &str, value: Option<MetadataValue>) -> Vec<u8> {
    let mut gguf = tiny_llama(&TinySpec::default()).unwrap();
    match value {
        Some(v) => gguf.metadata.insert(key.to_string(), v),
        None => gguf.metadata.remove(key),
    };
    gguf.to_bytes().unwrap()
}

#[test]
fn not_a_gguf_file() {
    for bytes in [
        &b""[..],
        b"GG",
        b"PK\x03\x04 a zip file",
        b"<html>not a model</html>",
    ] {
        let err = load_error(bytes);
        assert!(err.contains("GGUF magic"), "{err}");
    }
}

#[test]
fn truncated_file_at_every_section() {
    let bytes = tiny_bytes();
    // Cut inside the header, the metadata, the tensor table and the tensor data.
    let cuts = [
        5,
        12,
        24,
        100,
        1_000,
        4_000,
        10_000,
        bytes.len() / 2,
        bytes.len() - 1,
    ];
    for cut in cuts {
        let err = load_error(&bytes[..cut]);
        assert!(
            err.contains("invalid GGUF") || err.contains("truncated"),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn unsupported_architecture() {
    let err = load_error(&with_metadata(
        "general.architecture",
        Some(MetadataValue::String("mamba".into())),
    ));
    assert!(err.contains("unsupported architecture `mamba`"), "{err}");
}

#[test]
fn missing_required_key() {
    let err = load_error(&with_metadata("llama.embedding_length", None));
    assert!(
        err.contains("missing GGUF metadata key `llama.embedding_length`"),
        "{err}"
    );
}

#[test]
fn head_counts_that_break_grouping() {
    let counts = MetadataValue::Array(vec![MetadataValue::U32(4), MetadataValue::U32(4)]);
    let kv = MetadataValue::Array(vec![MetadataValue::U32(3), MetadataValue::U32(2)]);
    let mut gguf = tiny_llama(&TinySpec::default()).unwrap();
    gguf.metadata
        .insert("llama.attention.head_count".into(), counts);
    gguf.metadata
        .insert("llama.attention.head_count_kv".into(), kv);
    let err = load_error(&gguf.to_bytes().unwrap());
    assert!(err.contains("not a multiple of 3 key/value heads"), "{err}");
}

#[test]
fn tensor_shape_disagrees_with_metadata() {
    let err = load_error(&with_metadata(
        "llama.feed_forward_length",
        Some(MetadataValue::U32(100)),
    ));
    assert!(err.contains("blk.0.ffn_gate.weight"), "{err}");
    assert!(err.contains("does not match the metadata"), "{err}");
}

/// Returns the offset of the dimension count in the tensor-table entry of `name`, the field
/// right after the name.
fn tensor_info_at(bytes: &[u8], name: &str) -> usize {
    let name = name.as_bytes();
    bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len()
}

#[test]
fn unknown_tensor_type() {
    // Patch the type field of the first tensor-table entry to 99, a code GGML does not define.
    let gguf = tiny_llama(&TinySpec::default()).unwrap();
    let mut bytes = gguf.to_bytes().unwrap();
    let at = tensor_info_at(&bytes, &gguf.tensors[0].0);
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let err = load_error(&bytes);
    assert!(err.contains("unknown dtype for tensor 99"), "{err}");
}

#[test]
fn nan_in_norm_weight() {
    let mut gguf = tiny_llama(&TinySpec::default()).unwrap();
    let index = gguf
        .tensors
        .iter()
        .position(|(n, _)| n == "output_norm.weight")
        .unwrap();
    let values = candle_core::Tensor::new(&[f32::NAN; 64], &candle_core::Device::Cpu).unwrap();
    gguf.tensors[index].1 =
        candle_core::quantized::QTensor::quantize(&values, GgmlDType::F32).unwrap();
    let err = load_error(&gguf.to_bytes().unwrap());
    assert!(err.contains("output_norm.weight"), "{err}");
    assert!(err.contains("not a finite number"), "{err}");
}

#[test]
fn special_token_out_of_range() {
    let err = load_error(&with_metadata(
        "tokenizer.ggml.eos_token_id",
        Some(MetadataValue::U32(100_000)),
    ));
    assert!(err.contains("tokenizer.ggml.eos_token_id"), "{err}");
    assert!(err.contains("outside the vocabulary"), "{err}");
}

#[test]
fn chat_template_that_does_not_compile() {
    let err = load_error(&with_metadata(
        "tokenizer.chat_template",
        Some(MetadataValue::String("{% for m in messages %}".into())),
    ));
    assert!(
        err.contains("tokenizer.chat_template does not compile"),
        "{err}"
    );
}

#[test]
fn chat_template_that_raises() {
    let template = "{{ raise_exception('roles must alternate') }}";
    let err = load_error(&with_metadata(
        "tokenizer.chat_template",
        Some(MetadataValue::String(template.into())),
    ));
    assert!(err.contains("roles must alternate"), "{err}");
}

#[test]
fn chat_template_that_loops() {
    // 10^10 loop steps without the fuel limit: the test would run for hours.
    let template =
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let started = std::time::Instant::now();
    let err = load_error(&with_metadata(
        "tokenizer.chat_template",
        Some(MetadataValue::String(template.into())),
    ));
    assert!(err.contains("tokenizer.chat_template"), "{err}");
    assert!(err.contains("instructions"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn long_chat_renders_within_the_fuel() {
    use prunechat::chat_template::{ChatTemplate, Message};

    // SmolLM2's template, as in its GGUF file.
    let gguf = common::load_smollm2();
    let text = gguf.get_string("tokenizer.chat_template").unwrap();
    let template = ChatTemplate::new(text, "<|im_start|>".into(), "<|im_end|>".into()).unwrap();
    let messages: Vec<Message> = (0..2000)
        .map(|i| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, "Hello there"))
        .collect();
    let rendered = template.render(&messages, true).unwrap();
    assert_eq!(rendered.matches("Hello there").count(), 2000);
}

fn prunechat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args(args)
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_reports_bad_files_with_nonzero_exit() {
    let dir = std::env::temp_dir().join(format!("prunechat-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.gguf");
    std::fs::write(&text, "hello").unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &tiny_bytes()[..3000]).unwrap();

    for (args, expected) in [
        (vec!["info", text.to_str().unwrap()], "GGUF magic"),
        (
            vec!["chat", truncated.to_str().unwrap(), "--prompt", "hi"],
            "truncated",
        ),
        (vec!["info", "/nonexistent/model.gguf"], "No such file"),
        (
            vec![
                "convert",
                text.to_str().unwrap(),
                "/tmp/x.gguf",
                "--to",
                "q3_x",
            ],
            "\"q3_x\" is not one of",
        ),
    ] {
        let (code, _, stderr) = prunechat(&args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_rejects_empty_prompt_and_bad_sampling() {
    let model = common::smollm2_q8_0();
    let model = model.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["chat", model, "--prompt", "  "],
            "the message is empty",
        ),
        (
            vec!["chat", model, "--prompt", "hi", "--top-p", "0"],
            "top_p",
        ),
        (
            vec!["chat", model, "--prompt", "hi", "--temperature=-1"],
            "temperature",
        ),
    ] {
        let (code, _, stderr) = prunechat(&args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn cli_convert_refuses_to_overwrite_input() {
    let dir = std::env::temp_dir().join(format!("prunechat-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("tiny.gguf");
    std::fs::write(&input, tiny_bytes()).unwrap();
    let before = std::fs::read(&input).unwrap();

    let (code, _, stderr) = prunechat(&[
        "convert",
        input.to_str().unwrap(),
        input.to_str().unwrap(),
        "--to",
        "q8_0",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is the input file"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input is untouched"
    );

    let out = dir.join("tiny-q8_0.gguf");
    let (code, stdout, stderr) = prunechat(&[
        "convert",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--to",
        "q8_0",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("converted to Q8_0"), "{stdout}");
    let converted = Gguf::open(&out).unwrap();
    assert!(converted
        .tensors
        .iter()
        .all(|(_, t)| t.dtype() == GgmlDType::Q8_0 || t.shape().rank() == 1));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn converted_q8_0_model_agrees_with_q4_1() {
    // Q4_1 to Q8_0 requantizes values that Q4_1 already rounded, so the logits move a little.
    let q4 = Gguf::open(common::smollm2_q4_1()).unwrap();
    let q8 = common::load_smollm2();
    let tokens = [1u32, 4093, 198, 19556, 2, 198, 1, 520, 9531, 198];
    let logits = |g: Gguf| {
        let model = prunechat::model::Model::from_gguf(g).unwrap();
        let mut cache = prunechat::model::KvCache::new(model.config(), 64);
        model
            .forward_last(&tokens, &mut cache)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (a, b) = (logits(q4), logits(q8));
    assert_eq!(
        prunechat::sampler::argmax(&a),
        prunechat::sampler::argmax(&b)
    );
    let diff = common::max_abs_diff(&a, &b);
    assert!(diff < 1.5, "Q8_0 logits differ from Q4_1 by {diff}");
}

#[test]
fn header_errors_name_their_cause() {
    let mut bytes = tiny_bytes();
    bytes[4..8].copy_from_slice(&99u32.to_le_bytes());
    let err = load_error(&bytes);
    assert!(err.contains("invalid header"), "{err}");
    assert!(err.contains("99"), "the message names the version: {err}");
    assert!(
        !err.contains("truncated"),
        "a bad version is not a truncated file: {err}"
    );

    // Cut before the metadata, and inside it: both errors report a file that is too short.
    for cut in [24, 100] {
        let err = load_error(&tiny_bytes()[..cut]);
        assert!(
            err.contains("ends inside its header") || err.contains("remaining"),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn cli_errors_are_one_line_without_backtrace() {
    let dir = std::env::temp_dir().join(format!("prunechat-bad-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("version99.gguf");
    let mut bytes = tiny_bytes();
    bytes[4..8].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args(["info", path.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid header"), "{stderr}");

    let (_, _, stderr) = prunechat(&["info", "/nonexistent/model.gguf"]);
    assert_eq!(
        stderr.matches("No such file").count(),
        1,
        "the I/O error repeats: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zero_context_length() {
    let err = load_error(&with_metadata(
        "llama.context_length",
        Some(MetadataValue::U32(0)),
    ));
    assert!(err.contains("llama.context_length"), "{err}");
    assert!(err.contains("0 tokens"), "{err}");
}

#[test]
fn interactive_chat_skips_invalid_utf8() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args([
            "chat",
            common::smollm2_q8_0().to_str().unwrap(),
            "--temperature",
            "0",
            "--max-new-tokens",
            "4",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\xff\xfe hello\nWhat is 2+2?\n/quit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "the next line got no reply"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_reply_not_chat() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args([
            "chat",
            common::smollm2_q8_0().to_str().unwrap(),
            "--temperature",
            "0",
            "--max-new-tokens",
            "2000",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"Count from 1 to 1000, separated by commas.\n")
        .unwrap();
    stdin.flush().unwrap();

    // Wait for the reply to stream, then interrupt it.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut streamed = Vec::new();
    while streamed.len() < 20 {
        let chunk = stdout.fill_buf().unwrap();
        assert!(
            !chunk.is_empty(),
            "the reply ended before it could be interrupted"
        );
        streamed.extend_from_slice(chunk);
        let n = chunk.len();
        stdout.consume(n);
    }
    // SAFETY: sending a signal to a child process that this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);

    stdin.write_all(b"/quit\n").unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C ended the chat: {stderr}");
    assert!(stderr.contains("(stopped)"), "{stderr}");
}

#[test]
fn tensor_byte_size_overflow() {
    // 2^31 × 2^31 F32 elements fit in u64, but their 2^64 bytes do not.
    let gguf = tiny_llama(&TinySpec::default()).unwrap();
    let mut bytes = gguf.to_bytes().unwrap();
    let at = tensor_info_at(&bytes, "token_embd.weight");
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 2);
    for dim in 0..2 {
        let dim_at = at + 4 + 8 * dim;
        bytes[dim_at..dim_at + 8].copy_from_slice(&(1u64 << 31).to_le_bytes());
    }
    let err = match Gguf::read(&bytes) {
        Ok(_) => panic!("a tensor of 2^64 bytes was read"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("token_embd.weight"), "{err}");
    assert!(err.contains("more than 2^64 bytes"), "{err}");
}

#[test]
fn block_count_beyond_tensors() {
    // With one head count for all layers, the per-layer vectors are as long as block_count.
    let mut gguf = tiny_llama(&TinySpec::default()).unwrap();
    for (key, value) in [
        ("llama.block_count", MetadataValue::U64(1 << 62)),
        ("llama.attention.head_count", MetadataValue::U32(4)),
        ("llama.attention.head_count_kv", MetadataValue::U32(2)),
        ("llama.feed_forward_length", MetadataValue::U32(128)),
    ] {
        gguf.metadata.insert(key.into(), value);
    }
    let err = load_error(&gguf.to_bytes().unwrap());
    assert!(err.contains("llama.block_count"), "{err}");
    assert!(err.contains("hold at most 2"), "{err}");
}

#[test]
fn head_dimension_overflow() {
    // Four query and four key/value heads of dimension 2^62 + 16 make 2^64 + 64 rows, which
    // wraps around to the real 64 rows of attn_q, attn_k and attn_v.
    let spec = TinySpec {
        layers: vec![(4, 4, 128)],
        ..TinySpec::default()
    };
    let mut gguf = tiny_llama(&spec).unwrap();
    gguf.metadata.insert(
        "llama.attention.key_length".into(),
        MetadataValue::U64((1 << 62) + 16),
    );
    let err = load_error(&gguf.to_bytes().unwrap());
    assert!(err.contains("layer 0 sizes"), "{err}");
    assert!(err.contains("overflows"), "{err}");
}

/// Builds a checkpoint of `tiny_run(false)` after one step and replaces `from` with `to` in
/// its JSON header.
fn edited_checkpoint(from: &str, to: &str) -> Vec<u8> {
    let run = tiny_run(false).unwrap();
    let mut trainer = Trainer::new(run.model, run.config, run.masks, run.train, None).unwrap();
    trainer.step().unwrap();
    let bytes = trainer.checkpoint_bytes().unwrap();

    // A safetensors file is a little-endian u64 header length, the JSON header, the data.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    assert!(
        header.contains(from),
        "{from} is not in the header {header}"
    );
    let header = header.replacen(from, to, 1);
    let mut edited = (header.len() as u64).to_le_bytes().to_vec();
    edited.extend_from_slice(header.as_bytes());
    edited.extend_from_slice(&bytes[8 + header_len..]);
    edited
}

/// Resumes `tiny_run(false)` from `checkpoint` and takes one step.
fn resume_error(checkpoint: &[u8]) -> String {
    let run = tiny_run(false).unwrap();
    let resumed = Trainer::resume(run.model, run.config, run.train, None, checkpoint);
    match resumed.and_then(|mut trainer| trainer.step()) {
        Ok(_) => panic!("the edited checkpoint resumed and stepped"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn checkpoint_cursor_past_data() {
    let err = resume_error(&edited_checkpoint(r#"\"cursor\":1}"#, r#"\"cursor\":9}"#));
    assert!(err.contains("\"sampler\" is invalid"), "{err}");
    assert!(
        err.contains("cursor 9 is past the 2 training samples"),
        "{err}"
    );
}

#[test]
fn checkpoint_updates_beyond_steps() {
    let err = resume_error(&edited_checkpoint(
        r#""optimizer_updates":"1""#,
        &format!(r#""optimizer_updates":"{}""#, u64::MAX),
    ));
    assert!(err.contains("\"optimizer_updates\" is invalid"), "{err}");
    assert!(err.contains("exceed the step count 1"), "{err}");
}

/// `general.alignment` as stored in the file: the writer drops that key, so the test writes a
/// key of the same length and renames it in the bytes.
fn with_alignment(value: MetadataValue) -> Vec<u8> {
    let stand_in = "general.alignmenX";
    let mut bytes = with_metadata(stand_in, Some(value));
    let at = bytes
        .windows(stand_in.len())
        .position(|w| w == stand_in.as_bytes())
        .unwrap();
    bytes[at..at + stand_in.len()].copy_from_slice(b"general.alignment");
    bytes
}

#[test]
fn alignment_zero_or_not_a_power_of_two() {
    for value in [
        MetadataValue::U32(0),
        MetadataValue::U8(0),
        MetadataValue::I16(0),
        MetadataValue::U32(24),
    ] {
        let err = load_error(&with_alignment(value.clone()));
        assert!(
            err.contains("general.alignment") && err.contains("power of two"),
            "{value:?}: {err}"
        );
    }
    // The writer pads to 32, so an explicit 32, and a negative value (which candle ignores),
    // still load.
    for value in [MetadataValue::U32(32), MetadataValue::I32(-1)] {
        let bytes = with_alignment(value.clone());
        Gguf::read(&bytes)
            .and_then(|g| ChatSession::from_gguf(g, 64))
            .unwrap_or_else(|e| panic!("{value:?}: {e}"));
    }
}
