//! Top-1 agreement with a generated reply (`eval::reply_agreement`) and perplexity one window
//! at a time (`WindowPredictions::push_window`), the two measures of the page's compare view.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use candle_core::quantized::GgmlDType;
use candle_core::D;
use prunechat::eval::{predict, reply_agreement, WindowPredictions};
use prunechat::model::{KvCache, Model};
use prunechat::sampler::SamplingParams;
use prunechat::session::ChatSession;
use prunechat::synthetic::{tiny_llama, TinySpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn tiny_spec(seed: u64, dtype: GgmlDType) -> TinySpec {
    TinySpec {
        seed,
        dtype,
        ..TinySpec::default()
    }
}

fn tiny_model(seed: u64) -> Model {
    Model::from_gguf(tiny_llama(&tiny_spec(seed, GgmlDType::F32)).unwrap()).unwrap()
}

fn random_tokens(rng: &mut StdRng, len: usize, vocab_size: usize) -> Vec<u32> {
    (0..len)
        .map(|_| rng.random_range(3..vocab_size as u32))
        .collect()
}

/// Highest-logit token before each reply token, each from its own run of the whole prefix
/// from an empty cache.
fn naive_top1(model: &Model, prompt: &[u32], reply: &[u32]) -> Vec<u32> {
    (0..reply.len())
        .map(|i| {
            let prefix: Vec<u32> = prompt.iter().chain(&reply[..i]).copied().collect();
            let mut cache = KvCache::new(model.config(), prefix.len());
            let logits = model.forward_last(&prefix, &mut cache).unwrap();
            logits
                .argmax(D::Minus1)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap()
        })
        .collect()
}

/// Runs one greedy turn and returns the prompt's token ids and every sampled token id.
fn greedy_turn(
    session: &mut ChatSession,
    user: &str,
    max_new_tokens: usize,
) -> (Vec<u32>, Vec<u32>) {
    let params = SamplingParams {
        temperature: 0.0,
        repeat_penalty: 1.0,
        max_new_tokens,
        ..SamplingParams::default()
    };
    session.start_turn(user, None, params).unwrap();
    let mut reply = Vec::new();
    loop {
        let step = session.next_token().unwrap();
        reply.extend(step.token_id);
        if step.done {
            return (session.prompt_tokens().to_vec(), reply);
        }
    }
}

#[test]
fn agreement_matches_naive_prefix_runs() {
    let model = tiny_model(3);
    let vocab_size = model.config().vocab_size;
    let mut rng = StdRng::seed_from_u64(11);
    for (prompt_len, reply_len) in [(1, 1), (5, 12), (40, 30)] {
        let prompt = random_tokens(&mut rng, prompt_len, vocab_size);
        let mut reply = random_tokens(&mut rng, reply_len, vocab_size);
        // Put the model's own choice at every other position, so that both agreeing and
        // disagreeing positions are counted.
        for i in (0..reply.len()).step_by(2) {
            reply[i] = naive_top1(&model, &prompt, &reply[..=i])[i];
        }
        let expected_top1 = naive_top1(&model, &prompt, &reply);
        let expected_agree = expected_top1
            .iter()
            .zip(&reply)
            .filter(|(a, b)| a == b)
            .count();

        let scores = reply_agreement(&model, &prompt, &reply).unwrap();
        assert_eq!(
            scores.top1, expected_top1,
            "prompt {prompt_len}, reply {reply_len}"
        );
        assert_eq!(
            scores.n_agree, expected_agree,
            "prompt {prompt_len}, reply {reply_len}"
        );
        assert_eq!(scores.n_scored, reply_len);
        assert!(
            scores.n_agree >= reply_len.div_ceil(2),
            "prompt {prompt_len}, reply {reply_len}"
        );
        assert_eq!(scores.agreement, expected_agree as f64 / reply_len as f64);
    }
}

#[test]
fn greedy_reply_agrees_with_itself() {
    let mut session =
        ChatSession::from_gguf(tiny_llama(&tiny_spec(5, GgmlDType::Q8_0)).unwrap(), 256).unwrap();
    let (prompt, reply) = greedy_turn(&mut session, "hello there", 40);
    assert_eq!(reply.len(), 40);

    let scores = reply_agreement(session.model(), &prompt, &reply).unwrap();
    assert_eq!(scores.n_agree, reply.len());
    assert_eq!(scores.agreement, 1.0);
    assert_eq!(scores.top1, reply);
}

#[test]
fn other_model_matches_naive_count() {
    let mut session =
        ChatSession::from_gguf(tiny_llama(&tiny_spec(5, GgmlDType::F32)).unwrap(), 256).unwrap();
    let (prompt, reply) = greedy_turn(&mut session, "hello there", 24);
    let other = tiny_model(6);

    let scores = reply_agreement(&other, &prompt, &reply).unwrap();
    let expected = naive_top1(&other, &prompt, &reply);
    assert_eq!(scores.top1, expected);
    assert!(
        scores.n_agree < reply.len(),
        "two random models agreed on every token"
    );
}

#[test]
fn agreement_rejects_bad_tokens() {
    let model = tiny_model(3);
    let vocab_size = model.config().vocab_size as u32;

    let empty_reply = reply_agreement(&model, &[5, 6], &[])
        .unwrap_err()
        .to_string();
    assert!(empty_reply.contains("nothing to score"), "{empty_reply}");

    let empty_prompt = reply_agreement(&model, &[], &[5]).unwrap_err().to_string();
    assert!(empty_prompt.contains("prompt tokens"), "{empty_prompt}");

    let outside = reply_agreement(&model, &[5, 6], &[7, vocab_size])
        .unwrap_err()
        .to_string();
    assert!(outside.contains(&vocab_size.to_string()), "{outside}");
    assert!(outside.contains("same tokenizer"), "{outside}");

    let limit = model.max_positions();
    let long_prompt = vec![5; limit];
    let too_long = reply_agreement(&model, &long_prompt, &[5, 6])
        .unwrap_err()
        .to_string();
    assert!(too_long.contains(&format!("{}", limit + 1)), "{too_long}");
}

#[test]
fn windows_one_at_a_time_match_predict() {
    let model = tiny_model(4);
    let vocab_size = model.config().vocab_size;
    let mut rng = StdRng::seed_from_u64(2);
    let windows: Vec<Vec<u32>> = [32, 32, 9]
        .iter()
        .map(|&len| random_tokens(&mut rng, len, vocab_size))
        .collect();

    let whole = predict(&model, &windows, &mut |_, _| {}).unwrap();
    let mut stepwise = WindowPredictions::default();
    for (i, window) in windows.iter().enumerate() {
        stepwise.push_window(&model, window, i).unwrap();
    }
    assert_eq!(stepwise.top1, whole.top1);
    assert_eq!(stepwise.nll_sums, whole.nll_sums);
    assert_eq!(stepwise.n_predicted(), 31 + 31 + 8);
    assert_eq!(stepwise.perplexity(), whole.perplexity());

    let short = stepwise
        .push_window(&model, &[5], 3)
        .unwrap_err()
        .to_string();
    assert!(short.contains("window 4 has 1 token"), "{short}");
}

#[test]
fn smollm2_greedy_reply_agrees_with_itself() {
    let mut session = ChatSession::from_gguf(common::load_smollm2(), 512).unwrap();
    let (prompt, reply) = greedy_turn(&mut session, "What is the capital of France?", 32);

    let scores = reply_agreement(session.model(), &prompt, &reply).unwrap();
    assert_eq!(scores.top1, reply);
    assert_eq!(scores.agreement, 1.0);
}
