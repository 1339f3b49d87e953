//! The `finetune` and `train` commands end to end on tiny models: export, resume, and the
//! errors for bad data and a diverging run.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use prunechat::gguf::Gguf;
use prunechat::sampler::SamplingParams;
use prunechat::session::ChatSession;
use prunechat::synthetic::{tiny_llama, TinySpec};

fn prunechat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prunechat"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prunechat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes a tiny model file and a JSONL chat file of eight conversations to `dir`.
fn tiny_model_and_chats(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("tiny.gguf");
    let spec = TinySpec {
        context_length: 128,
        ..TinySpec::default()
    };
    tiny_llama(&spec).unwrap().write(&model).unwrap();
    let chats = dir.join("chats.jsonl");
    let lines: Vec<String> = (0..8)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("What is {i} plus {i}?")},
                {"role": "assistant", "content": format!("It is {}.", 2 * i)},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&chats, lines.join("\n")).unwrap();
    (model, chats)
}

/// Returns the step losses of a `--log` file (lines with a step report; evaluation lines are skipped).
fn logged_losses(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["report"]["loss"].as_f64()
        })
        .collect()
}

const COMMON: [&str; 8] = [
    "--batch-size",
    "2",
    "--seq-len",
    "64",
    "--eval-fraction",
    "0.25",
    "--to",
    "f32",
];

#[test]
fn finetune_lora_exports_a_chat_model() {
    let dir = temp_dir("finetune-lora");
    let (model, chats) = tiny_model_and_chats(&dir);
    let out = dir.join("out.gguf");
    let log = dir.join("log.jsonl");
    let mut args = vec![
        "finetune",
        s(&model),
        "--data",
        s(&chats),
        "--steps",
        "6",
        "--lora-rank",
        "2",
        "--lr",
        "1e-2",
        "--out",
        s(&out),
        "--log",
        s(&log),
    ];
    args.extend(COMMON);
    let (code, stdout, stderr) = prunechat(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote"), "{stdout}");
    assert!(stderr.contains("training data: 6 samples"), "{stderr}");
    assert!(stderr.contains("step      0: held-out loss"), "{stderr}");
    assert!(stderr.contains("step      6: held-out loss"), "{stderr}");
    let losses = logged_losses(&log);
    assert_eq!(losses.len(), 6);
    assert!(losses[5] < losses[0], "{losses:?}");

    let mut session = ChatSession::from_gguf(Gguf::open(&out).unwrap(), 128).unwrap();
    session
        .reply("What is 3 plus 3?", None, SamplingParams::greedy(4), |_| {})
        .unwrap();
    assert!(
        session.reply_tokens().len() <= 4,
        "{:?}",
        session.reply_tokens()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_resume_continues_the_same_curve() {
    let dir = temp_dir("finetune-resume");
    let (model, chats) = tiny_model_and_chats(&dir);
    let run = |name: &str, lr: &str, extra: &[&str]| -> (i32, String) {
        let out = dir.join(format!("{name}.gguf"));
        let log = dir.join(format!("{name}.jsonl"));
        let ckpt = dir.join(format!("{name}-ckpt"));
        let mut args = vec![
            "finetune",
            s(&model),
            "--data",
            s(&chats),
            "--steps",
            "6",
            "--lr",
            lr,
            "--out",
            s(&out),
            "--log",
            s(&log),
            "--checkpoint-dir",
            s(&ckpt),
            "--checkpoint-every",
            "3",
        ];
        args.extend(COMMON);
        args.extend(extra);
        let (code, _, stderr) = prunechat(&args);
        (code, stderr)
    };
    let (code, stderr) = run("straight", "1e-3", &[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = run("resumed", "1e-3", &[]);
    assert_eq!(code, 0, "{stderr}");
    // Make the second run look interrupted after step 3: drop its last checkpoint and the log
    // lines of steps 4 to 6, then resume.
    std::fs::remove_file(dir.join("resumed-ckpt/step-00000006.safetensors")).unwrap();
    let log = dir.join("resumed.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let third_step = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"report\""))
        .nth(2)
        .unwrap()
        .0;
    std::fs::write(&log, lines[..=third_step].join("\n") + "\n").unwrap();
    let (code, stderr) = run("resumed", "1e-3", &["--resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("at step 3"), "{stderr}");
    assert_eq!(
        logged_losses(&log),
        logged_losses(&dir.join("straight.jsonl"))
    );
    assert_eq!(
        std::fs::read(dir.join("resumed.gguf")).unwrap(),
        std::fs::read(dir.join("straight.gguf")).unwrap()
    );

    let (code, stderr) = run("resumed", "2e-3", &["--resume"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("different training settings"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_rejects_bad_data() {
    let dir = temp_dir("finetune-bad-data");
    let (model, _) = tiny_model_and_chats(&dir);
    let out = dir.join("out.gguf");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let broken = dir.join("broken.jsonl");
    std::fs::write(
        &broken,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{not json\n",
    )
    .unwrap();
    let no_replies = dir.join("no-replies.jsonl");
    std::fs::write(&no_replies, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}]}\n").unwrap();

    for (data, expected) in [
        (&empty, "empty.txt"),
        (&broken, "line 2"),
        (&no_replies, "no usable samples"),
        (&dir.join("missing.txt"), "missing.txt"),
    ] {
        let (code, _, stderr) = prunechat(&[
            "finetune",
            s(&model),
            "--data",
            s(data),
            "--steps",
            "2",
            "--out",
            s(&out),
            "--eval-fraction",
            "0",
        ]);
        assert_eq!(code, 1, "{}: {stderr}", data.display());
        assert!(
            stderr.contains(expected),
            "expected \"{expected}\" in: {stderr}"
        );
        assert!(!out.exists(), "no output is written on error");
    }
    let (code, _, stderr) = prunechat(&[
        "finetune",
        s(&model),
        "--data",
        s(&broken),
        "--steps",
        "2",
        "--out",
        s(&out),
        "--resume",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--resume needs --checkpoint-dir"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_stops_on_non_finite_loss() {
    let dir = temp_dir("finetune-nan");
    let (model, chats) = tiny_model_and_chats(&dir);
    let out = dir.join("out.gguf");
    let ckpt = dir.join("ckpt");
    let mut args = vec![
        "finetune",
        s(&model),
        "--data",
        s(&chats),
        "--steps",
        "20",
        "--lr",
        "1e30",
        "--max-grad-norm",
        "0",
        "--warmup-steps",
        "0",
        "--out",
        s(&out),
        "--checkpoint-dir",
        s(&ckpt),
        "--checkpoint-every",
        "1",
    ];
    args.extend(COMMON);
    let (code, _, stderr) = prunechat(&args);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the training loss is") || stderr.contains("the training gradient norm is"),
        "{stderr}"
    );
    assert!(stderr.contains("at step 2"), "{stderr}");
    assert!(stderr.contains("the last good checkpoint is"), "{stderr}");
    assert!(stderr.contains("step-00000001.safetensors"), "{stderr}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_tiny_preset_gives_a_chat_model() {
    let dir = temp_dir("train-scratch");
    let corpus = dir.join("talk.yml");
    let conversations: Vec<String> = (0..12)
        .map(|i| format!("- - Hello number {i}\n  - Hi there, friend {i}!\n"))
        .collect();
    std::fs::write(
        &corpus,
        format!(
            "categories:\n- greetings\nconversations:\n{}",
            conversations.join("")
        ),
    )
    .unwrap();
    let out = dir.join("tiny.gguf");
    let (code, stdout, stderr) = prunechat(&[
        "train",
        "--preset",
        "tiny",
        "--data",
        s(&corpus),
        "--vocab-size",
        "300",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("tokenizer: 300 tokens") || stderr.contains("tokenizer: "),
        "{stderr}"
    );
    assert!(stdout.contains("wrote"), "{stdout}");

    // The file carries its tokenizer and ChatML template, so the chat command runs it.
    let (code, _, stderr) = prunechat(&[
        "chat",
        s(&out),
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "4",
        "--temperature",
        "0",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let gguf = Gguf::open(&out).unwrap();
    assert_eq!(
        gguf.get_string("tokenizer.chat_template")
            .unwrap()
            .as_deref(),
        Some(prunechat::chat_template::CHATML)
    );
    let session = ChatSession::from_gguf(gguf, 64).unwrap();
    let ids = session
        .tokenizer()
        .encode("<|im_start|>user\nHello number 3<|im_end|>")
        .unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one control token");
    assert_eq!(*ids.last().unwrap(), 2, "<|im_end|> is one control token");
    assert_eq!(
        session.tokenizer().decode(&ids[1..ids.len() - 1]),
        "user\nHello number 3"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_after_prune_keeps_pruned_weights_zero() {
    let dir = temp_dir("prune-then-finetune");
    let (model, chats) = tiny_model_and_chats(&dir);
    let pruned = dir.join("pruned.gguf");
    let sparse = dir.join("pruned.psparse");
    let (code, _, stderr) = prunechat(&[
        "prune",
        s(&model),
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--calib",
        s(&chats),
        "--n-samples",
        "2",
        "--seq-len",
        "16",
        "--eval-fraction",
        "0",
        "--to",
        "f32",
        "--out",
        s(&pruned),
        "--sparse-out",
        s(&sparse),
        "--sparse-values",
        "f32",
    ]);
    assert_eq!(code, 0, "{stderr}");

    // Full fine-tuning of the .psparse file: its zeros become masks.
    let out = dir.join("recovered.gguf");
    let mut args = vec![
        "finetune",
        s(&sparse),
        "--data",
        s(&chats),
        "--steps",
        "4",
        "--lr",
        "1e-2",
        "--out",
        s(&out),
    ];
    args.extend(COMMON);
    let (code, _, stderr) = prunechat(&args);
    assert_eq!(code, 0, "{stderr}");

    let before =
        prunechat::model::dense::DenseModel::from_gguf(&Gguf::open(&pruned).unwrap()).unwrap();
    let after = prunechat::model::dense::DenseModel::from_gguf(&Gguf::open(&out).unwrap()).unwrap();
    let mut n_pruned = 0;
    let mut n_changed = 0;
    for ((name, b), (_, a)) in before.vars().iter().zip(after.vars().iter()) {
        if !name.contains("attn_") && !name.contains("ffn_") || name.ends_with("norm.weight") {
            continue;
        }
        let b: Vec<f32> = b.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let a: Vec<f32> = a.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for (x, y) in b.iter().zip(&a) {
            if *x == 0.0 {
                n_pruned += 1;
                assert_eq!(*y, 0.0, "{name}: a pruned weight was revived");
            } else if x != y {
                n_changed += 1;
            }
        }
    }
    assert!(n_pruned > 0, "the pruned model has zeros");
    assert!(n_changed > 0, "fine-tuning changed the kept weights");
    std::fs::remove_dir_all(&dir).unwrap();
}
