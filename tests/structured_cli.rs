//! `prunechat prune --structure` on a tiny model: outputs, the report, and rejected options.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use prunechat::gguf::Gguf;
use prunechat::model::dense::DenseModel;
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

/// Creates a scratch directory with a tiny model (3 layers, 6 query heads in 3 groups, FFN 128)
/// and a calibration text.
fn setup(name: &str) -> (PathBuf, String, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    let spec = TinySpec {
        layers: vec![(6, 3, 128); 3],
        ..TinySpec::default()
    };
    tiny_llama(&spec).unwrap().write(&model).unwrap();
    let text: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Paragraph {i} talks about removing neurons number {}, and then it ends here.",
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

#[test]
fn structured_prune_writes_model_and_report() {
    let (dir, model, calib) = setup("cli_structured_prune");
    let original_params = DenseModel::from_gguf(&Gguf::open(&model).unwrap())
        .unwrap()
        .config
        .n_params();
    let cases: Vec<(&str, &str, &str, f64)> = vec![
        ("ffn", "wanda", "global", 0.8),
        ("heads", "taylor", "uniform", 0.9),
        ("layers", "block-influence", "global", 0.8),
    ];
    for (structure, score, ratio, fraction) in cases {
        let fraction_text = fraction.to_string();
        let out = path(&dir, &format!("{structure}.gguf"));
        let report_path = path(&dir, &format!("{structure}.json"));
        let (code, stdout, stderr) = prunechat(&[
            "prune",
            &model,
            "--structure",
            structure,
            "--score",
            score,
            "--ratio",
            ratio,
            "--target-params",
            &fraction_text,
            "--calib",
            &calib,
            "--n-samples",
            "4",
            "--seq-len",
            "32",
            "--greedy-steps",
            "2",
            "--ffn-multiple",
            "1",
            "--out",
            &out,
            "--report",
            &report_path,
            "--to",
            "f32",
        ]);
        assert_eq!(code, 0, "{structure}: {stderr}");
        assert!(stderr.contains("step 1: removed"), "{structure}: {stderr}");
        assert!(stdout.contains(" → "), "{structure}: {stdout}");
        assert!(
            stdout.contains(&format!("wrote {out}")),
            "{structure}: {stdout}"
        );

        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        let params = report["report"]["params"].as_u64().unwrap() as usize;
        assert_eq!(
            report["report"]["original_params"].as_u64().unwrap() as usize,
            original_params,
            "{structure}"
        );
        assert!(
            params as f64 <= fraction * original_params as f64,
            "{structure}: {params} of {original_params}"
        );
        assert_eq!(
            report["gguf"]["bytes"],
            std::fs::metadata(&out).unwrap().len(),
            "{structure}"
        );
        assert_eq!(
            report["report"]["file_bytes"], report["gguf"]["bytes"],
            "{structure}"
        );
        assert!(
            !report["report"]["steps"].as_array().unwrap().is_empty(),
            "{structure}"
        );

        let written = DenseModel::from_gguf(&Gguf::open(&out).unwrap()).unwrap();
        assert_eq!(written.config.n_params(), params, "{structure}");
        let kept_layers = report["report"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| !l["after"].is_null())
            .count();
        assert_eq!(written.config.n_layers(), kept_layers, "{structure}");
    }
}

#[test]
fn structured_prune_rejects_bad_input_without_files() {
    let (dir, model, calib) = setup("cli_structured_bad_input");
    let out = path(&dir, "out.gguf");
    let base = [
        "--calib",
        calib.as_str(),
        "--n-samples",
        "2",
        "--seq-len",
        "16",
        "--out",
        out.as_str(),
        "--to",
        "f32",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--structure",
                "ffn",
                "--method",
                "wanda",
                "--score",
                "wanda",
                "--target-params",
                "0.8",
            ],
            "--method wanda prunes single weights",
        ),
        (
            vec!["--structure", "ffn", "--target-params", "0.8"],
            "--structure needs --score",
        ),
        (
            vec!["--structure", "ffn", "--score", "wanda"],
            "--structure needs a target",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--target-params",
                "0.8",
                "--target-bytes",
                "1000",
            ],
            "--target-params and --target-bytes are both given",
        ),
        (
            vec![
                "--structure",
                "rows",
                "--score",
                "wanda",
                "--target-params",
                "0.8",
            ],
            "\"rows\" is not one of: ffn, heads, kv-groups, layers",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "random",
                "--target-params",
                "0.8",
            ],
            "\"random\" is not one of: magnitude, wanda, taylor, block-influence",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "block-influence",
                "--target-params",
                "0.8",
            ],
            "block-influence scores whole layers, not ffn",
        ),
        (
            vec![
                "--structure",
                "layers",
                "--score",
                "magnitude",
                "--target-params",
                "0.8",
            ],
            "magnitude does not score whole layers",
        ),
        (
            vec![
                "--structure",
                "layers",
                "--score",
                "taylor",
                "--ratio",
                "uniform",
                "--target-params",
                "0.8",
            ],
            "use --ratio global with --structure layers",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--ratio",
                "sideways",
                "--target-params",
                "0.8",
            ],
            "\"sideways\" is not one of: uniform, global",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--target-params",
                "1.5",
            ],
            "1.5 is not a fraction of the parameters to keep in (0, 1)",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--target-params",
                "0.01",
            ],
            "the smallest reachable --target-params is",
        ),
        (
            vec![
                "--structure",
                "kv-groups",
                "--score",
                "wanda",
                "--target-params",
                "0.5",
            ],
            "keeping one key/value group per layer",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--target-bytes",
                "100000000",
            ],
            "there is nothing to remove",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--target-ms-per-token",
                "0",
            ],
            "must be a positive number of milliseconds, got 0",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--target-params",
                "0.8",
                "--sparsity",
                "0.5",
            ],
            "--sparsity applies to connection pruning",
        ),
        (
            vec![
                "--structure",
                "ffn",
                "--score",
                "wanda",
                "--target-params",
                "0.8",
                "--greedy-steps",
                "0",
            ],
            "greedy steps: must be at least 1, got 0",
        ),
        (
            vec!["--method", "wanda", "--sparsity", "0.5", "--score", "wanda"],
            "--score applies to structured pruning",
        ),
        (
            vec!["--sparsity", "0.5"],
            "--method or --structure is required",
        ),
    ];
    for (options, expected) in cases {
        let mut args = vec!["prune", model.as_str()];
        args.extend(base.iter().copied());
        args.extend(options.iter().copied());
        let (code, _, stderr) = prunechat(&args);
        assert_eq!(code, 1, "{options:?}: {stderr}");
        assert!(stderr.contains(expected), "{options:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{options:?}: {stderr}");
        assert!(!Path::new(&out).exists(), "{options:?} left {out}");
    }
}
