//! `prunechat prune` and `prunechat eval` on a tiny model: outputs, and errors that leave no
//! files behind. Ctrl-C during `prune` and `finetune` on SmolLM2-135M.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use prunechat::synthetic::{tiny_llama, TinySpec};

fn prunechat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a scratch directory with a tiny model and a calibration text.
fn setup(name: &str) -> (PathBuf, String, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    tiny_llama(&TinySpec::default())
        .unwrap()
        .write(&model)
        .unwrap();
    let text: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Paragraph {i} talks about pruning weights number {}, and then it ends here.",
                i * 7
            )
        })
        .collect();
    let calib = dir.join("calib.txt");
    std::fs::write(&calib, text.join("\n\n")).unwrap();
    (
        dir,
        model.to_str().unwrap().to_string(),
        calib.to_str().unwrap().to_string(),
    )
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

fn leftover_temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn prune_then_eval_tiny_model() {
    let (dir, model, calib) = setup("cli_prune_then_eval");
    let (out, sparse_out, report) = (
        path(&dir, "out.gguf"),
        path(&dir, "out.psparse"),
        path(&dir, "report.json"),
    );
    let (code, stdout, stderr) = prunechat(&[
        "prune",
        &model,
        "--method",
        "wanda",
        "--sparsity",
        "0.5",
        "--calib",
        &calib,
        "--n-samples",
        "4",
        "--seq-len",
        "32",
        "--out",
        &out,
        "--sparse-out",
        &sparse_out,
        "--report",
        &report,
        "--to",
        "f32",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("attn_q"), "{stdout}");
    assert!(stdout.contains("ffn_down"), "{stdout}");
    assert!(stdout.contains("50.00% of"), "{stdout}");
    assert!(stdout.contains(&format!("wrote {out}")), "{stdout}");
    assert!(stdout.contains(&format!("wrote {sparse_out}")), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["sparsity"], 0.5);
    assert_eq!(report["report"]["layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        report["gguf"]["bytes"],
        std::fs::metadata(&out).unwrap().len()
    );

    // Both files load, with the same sparsity and (F32 vs F16 values) nearly the same perplexity.
    let (code, stdout, stderr) = prunechat(&[
        "eval",
        &out,
        &sparse_out,
        "--data",
        &calib,
        "--split",
        "all",
        "--window",
        "64",
        "--reference",
        &model,
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in &rows {
        assert_eq!(row["sparsity"]["decoder_sparsity"], 0.5, "{row}");
        assert!(
            row["perplexity"]["top1_agreement"].as_f64().unwrap() < 1.0,
            "{row}"
        );
    }
    let gguf_ppl = rows[0]["perplexity"]["perplexity"].as_f64().unwrap();
    let sparse_ppl = rows[1]["perplexity"]["perplexity"].as_f64().unwrap();
    assert!(
        (gguf_ppl - sparse_ppl).abs() < 1e-3 * gguf_ppl,
        "{gguf_ppl} vs {sparse_ppl}"
    );

    let (code, stdout, stderr) = prunechat(&["info", &sparse_out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("F16 x15"), "{stdout}");
    assert!(leftover_temporary_files(&dir).is_empty());
}

#[test]
fn prune_uses_default_calibration_corpus() {
    let (dir, model, _) = setup("cli_default_calibration");
    let out = path(&dir, "out.gguf");
    let (code, stdout, stderr) = prunechat(&[
        "prune",
        &model,
        "--method",
        "sparsegpt",
        "--pattern",
        "2:4",
        "--n-samples",
        "2",
        "--seq-len",
        "64",
        "--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("data/chatterbot-corpus/english (calibration split)"),
        "{stderr}"
    );
    assert!(stdout.contains("sparsegpt 2:4: 50.00% of"), "{stdout}");
}

#[test]
fn prune_rejects_bad_input_without_files() {
    let (dir, model, calib) = setup("cli_prune_bad_input");
    let empty = path(&dir, "empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let short = path(&dir, "short.txt");
    std::fs::write(&short, "One short paragraph.\n\nAnother short paragraph.\n").unwrap();
    let out = path(&dir, "out.gguf");
    let model_bytes = std::fs::read(&model).unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--method", "wanda", "--sparsity", "1.2"],
            "must be in [0, 1), got 1.2",
        ),
        (vec!["--method", "wanda", "--sparsity=-0.5"], "got -0.5"),
        (
            vec!["--method", "wanda", "--pattern", "4:4"],
            "N:M needs 1 <= N < M, got 4:4",
        ),
        (
            vec!["--method", "magnitude", "--pattern", "2:5"],
            "M = 5 does not divide the input width 64",
        ),
        (
            vec!["--method", "wanda", "--pattern", "two:four"],
            "neither \"unstructured\" nor N:M",
        ),
        (
            vec!["--method", "wanda", "--sparsity", "0.6", "--pattern", "2:4"],
            "--sparsity 0.6 contradicts --pattern 2:4",
        ),
        (vec!["--method", "wanda"], "--sparsity is required"),
        (
            vec!["--method", "obs", "--sparsity", "0.5"],
            "\"obs\" is not one of: magnitude, wanda, sparsegpt",
        ),
        (
            vec![
                "--method",
                "wanda",
                "--sparsity",
                "0.5",
                "--scope",
                "global",
            ],
            "Global is not available for wanda",
        ),
        (
            vec![
                "--method",
                "wanda",
                "--sparsity",
                "0.5",
                "--calib",
                "/nonexistent/calib.txt",
            ],
            "/nonexistent/calib.txt",
        ),
        (
            vec!["--method", "wanda", "--sparsity", "0.5", "--calib", &empty],
            "empty.txt is empty",
        ),
        (
            vec!["--method", "wanda", "--sparsity", "0.5", "--calib", &short],
            "fewer than the 128 requested",
        ),
        (
            vec!["--method", "wanda", "--sparsity", "0.5", "--layers", "0..9"],
            "0..9 reaches past the model's 2 layers",
        ),
    ];
    for (options, expected) in cases {
        let mut args = vec![
            "prune",
            &model,
            "--n-samples",
            "4",
            "--seq-len",
            "32",
            "--out",
            &out,
        ];
        if !options.contains(&"--calib") {
            args.extend(["--calib", calib.as_str()]);
        }
        args.extend(options.iter().copied());
        let (code, _, stderr) = prunechat(&args);
        assert_eq!(code, 1, "{options:?}: {stderr}");
        assert!(stderr.contains(expected), "{options:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{options:?}: {stderr}");
        assert!(!Path::new(&out).exists(), "{options:?} left {out}");
        assert!(
            leftover_temporary_files(&dir).is_empty(),
            "{options:?} left temporary files"
        );
    }

    let missing_dir_out = path(&dir, "missing/out.gguf");
    let output_cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--out", &model], "is the input file"),
        (vec!["--out", &missing_dir_out], "does not exist"),
        (
            vec!["--out", &out, "--sparse-out", &out],
            "is given for two outputs",
        ),
    ];
    for (options, expected) in output_cases {
        let mut args = vec![
            "prune",
            &model,
            "--method",
            "magnitude",
            "--sparsity",
            "0.5",
            "--calib",
            &calib,
        ];
        args.extend(options.iter().copied());
        let (code, _, stderr) = prunechat(&args);
        assert_eq!(code, 1, "{options:?}: {stderr}");
        assert!(stderr.contains(expected), "{options:?}: {stderr}");
        assert!(!Path::new(&out).exists(), "{options:?} left {out}");
    }
    assert_eq!(
        std::fs::read(&model).unwrap(),
        model_bytes,
        "the input model is untouched"
    );

    let (code, _, stderr) = prunechat(&[
        "prune",
        &path(&dir, "missing.gguf"),
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--out",
        &out,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("missing.gguf: model file not found"),
        "{stderr}"
    );

    // --force allows writing over the input.
    let (code, _, stderr) = prunechat(&[
        "prune",
        &model,
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--calib",
        &calib,
        "--n-samples",
        "4",
        "--seq-len",
        "32",
        "--out",
        &model,
        "--force",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(std::fs::read(&model).unwrap(), model_bytes);
}

#[test]
fn eval_rejects_bad_input() {
    let (dir, model, calib) = setup("cli_eval_bad_input");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["eval", &model, "--data", "/nonexistent/data.txt"],
            "/nonexistent/data.txt",
        ),
        (
            vec!["eval", &model, "--data", &calib, "--window", "1"],
            "must be at least 2 tokens, got 1",
        ),
        (
            vec!["eval", &model, "--data", &calib, "--max-windows", "0"],
            "--max-windows must be at least 1",
        ),
        (
            vec!["eval", &model, "--data", &calib, "--split", "test"],
            "\"test\" is not one of: calibration, held-out, all",
        ),
        (
            vec!["eval", "/nonexistent/model.gguf", "--data", &calib],
            "model file not found",
        ),
        (
            vec![
                "eval",
                &model,
                "--data",
                &calib,
                "--reference",
                "/nonexistent/ref.gguf",
            ],
            "ref.gguf: model file not found",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = prunechat(&args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends SIGINT to `child` once `ready` holds, polling every 50 ms for at most 300 s.
fn interrupt_when(child: &mut std::process::Child, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the command ended before it could be interrupted"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the command did not get far enough within 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: sending a signal to a child process that this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
}

/// Ctrl-C in the middle of `prune` (SparseGPT on SmolLM2-135M) leaves no output and no temporary
/// file, and the input keeps its size and modification time.
#[test]
fn interrupted_prune_leaves_no_output() {
    let model = common::smollm2_q8_0();
    let before = std::fs::metadata(&model).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interrupted-prune");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("pruned.gguf");
    let progress = dir.join("progress.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args([
            "prune",
            model.to_str().unwrap(),
            "--method",
            "sparsegpt",
            "--sparsity",
            "0.5",
        ])
        .args([
            "--n-samples",
            "4",
            "--seq-len",
            "64",
            "--out",
            out.to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&progress).unwrap())
        .spawn()
        .unwrap();

    // The "loaded ... calibration tokens" line comes after the model is read, when pruning starts.
    interrupt_when(&mut child, || {
        std::fs::read_to_string(&progress).is_ok_and(|text| text.contains("calibration tokens"))
    });
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "prune finished although it was interrupted"
    );
    std::fs::remove_file(&progress).unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the interrupted prune left {left:?}");

    let after = std::fs::metadata(&model).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
}

/// Ctrl-C during `finetune` after its first checkpoint leaves no output; running the same command
/// with --resume continues from the last checkpoint and writes the model.
#[test]
fn interrupted_finetune_resumes_from_its_checkpoint() {
    let model = common::smollm2_q8_0();
    let data =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/chatterbot-corpus/english/ai.yml");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interrupted-finetune");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tuned.gguf");
    let checkpoints = dir.join("checkpoints");
    let args = |resume: bool| {
        let mut args: Vec<String> = [
            "finetune",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "6",
            "--lora-rank",
            "4",
            "--batch-size",
            "1",
            "--seq-len",
            "32",
            "--eval-fraction",
            "0",
            "--checkpoint-dir",
            checkpoints.to_str().unwrap(),
            "--checkpoint-every",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if resume {
            args.push("--resume".into());
        }
        args
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args(args(false))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_checkpoint = checkpoints.join("step-00000002.safetensors");
    interrupt_when(&mut child, || first_checkpoint.exists());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "finetune finished although it was interrupted"
    );
    assert!(!out.exists(), "the interrupted run wrote its output");

    let resumed = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args(args(true))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "resume failed: {stderr}");
    // The interrupted run checkpoints the step it was in, so the resume starts at 2 or later.
    let step: usize = stderr
        .split("resuming from ")
        .nth(1)
        .and_then(|rest| rest.split(" at step ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume message: {stderr}"));
    assert!((2..6).contains(&step), "resumed at step {step}: {stderr}");
    assert!(out.exists());
    assert!(leftover_temporary_files(&dir).is_empty());
}
