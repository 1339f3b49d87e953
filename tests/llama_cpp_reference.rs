//! The real SmolLM2-135M-Instruct model against llama.cpp: token ids and greedy replies
//! recorded by `scripts/make_llama_cpp_fixtures.py` with llama-cpp-python.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use prunechat::chat_template::{ChatTemplate, Message};
use prunechat::gguf::Gguf;
use prunechat::sampler::SamplingParams;
use prunechat::session::ChatSession;
use prunechat::tokenizer::Tokenizer;

/// Greedy tokens compared with llama.cpp's for every recorded prompt.
const GREEDY_TOKENS_COMPARED: usize = 16;

/// A step where llama.cpp's two best logits are closer than this is a near tie. On this model
/// llama.cpp's own logits move by up to 0.8 between its F16 and F32 KV cache. So a different
/// but correct implementation may pick the other token there, and the comparison of that
/// prompt ends at such a step.
const NEAR_TIE_MARGIN: f64 = 0.5;

/// Prompts that must match all compared tokens, near ties or not.
const MIN_FULL_MATCHES: usize = 4;

#[test]
fn tokenizer_ids_match_llama_cpp() {
    let reference = common::llama_cpp_reference();
    let gguf = Gguf::open(common::smollm2_q4_1()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let cases = reference["tokenizer"]["cases"].as_array().unwrap();
    assert!(
        cases.len() >= 20,
        "expected at least 20 recorded cases, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let expected = common::ids(&case["ids"]);
        let got = if case["special"].as_bool().unwrap() {
            tokenizer.encode(text).unwrap()
        } else {
            tokenizer.encode_plain(text).unwrap()
        };
        if got != expected {
            failures.push(format!(
                "{name} ({text:?}): llama.cpp {expected:?}, prunechat {got:?}"
            ));
        }
        let bytes: Vec<u8> = expected
            .iter()
            .flat_map(|&id| tokenizer.token_bytes(id).to_vec())
            .collect();
        if case["decodes_to_text"].as_bool() == Some(true) && bytes != text.as_bytes() {
            failures.push(format!(
                "{name}: token bytes {:?} do not spell {text:?}",
                String::from_utf8_lossy(&bytes)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn chat_template_renders_llama_cpp_prompts() {
    let reference = common::llama_cpp_reference();
    let generation = &reference["generation"];
    let template = ChatTemplate::new(
        Some(generation["chat_template"].as_str().unwrap().to_string()),
        String::new(),
        "<|im_end|>".into(),
    )
    .unwrap();
    for prompt in generation["prompts"].as_array().unwrap() {
        let messages: Vec<Message> = serde_json::from_value(prompt["messages"].clone()).unwrap();
        let rendered = template.render(&messages, true).unwrap();
        assert_eq!(
            rendered,
            prompt["prompt"].as_str().unwrap(),
            "prompt {}",
            prompt["name"]
        );
    }
}

#[test]
fn greedy_replies_match_llama_cpp() {
    let reference = common::llama_cpp_reference();
    let generation = &reference["generation"];
    let mut session = ChatSession::from_gguf(common::load_smollm2(), 1024).unwrap();
    let mut full_matches = Vec::new();
    let mut near_ties = Vec::new();

    for prompt in generation["prompts"].as_array().unwrap() {
        let name = prompt["name"].as_str().unwrap();
        let messages: Vec<Message> = serde_json::from_value(prompt["messages"].clone()).unwrap();
        let expected_prompt = common::ids(&prompt["prompt_ids"]);
        let expected = common::ids(&prompt["generated_ids"]);

        // Replay the conversation through the session: history, system prompt, last message.
        session.reset();
        let system = messages
            .iter()
            .find(|m| m.role == "system")
            .map(|m| m.content.clone());
        let turns: Vec<&Message> = messages.iter().filter(|m| m.role != "system").collect();
        let (last, earlier) = turns.split_last().unwrap();
        for pair in earlier.chunks(2) {
            session.push_exchange(&pair[0].content, &pair[1].content);
        }
        let rendered = session
            .render_prompt(&last.content, system.as_deref())
            .unwrap();
        assert_eq!(
            session.encode_prompt(&rendered).unwrap(),
            expected_prompt,
            "{name}: prompt ids"
        );
        assert_eq!(
            session.encode_conversation(&messages).unwrap(),
            expected_prompt,
            "{name}: prompt ids, contents as plain text"
        );

        session
            .start_turn(
                &last.content,
                system.as_deref(),
                SamplingParams::greedy(GREEDY_TOKENS_COMPARED),
            )
            .unwrap();
        let mut got = Vec::new();
        loop {
            let step = session.next_token().unwrap();
            got.extend(step.token_id);
            if step.done {
                break;
            }
        }
        let margins: Vec<f64> = prompt["step_margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        let n = GREEDY_TOKENS_COMPARED.min(expected.len());
        match (0..n).find(|&i| got.get(i) != Some(&expected[i])) {
            None => full_matches.push(name.to_string()),
            Some(i) => {
                assert!(
                    margins[i] < NEAR_TIE_MARGIN,
                    "{name}: token {i} is {:?}, llama.cpp chose {} with a clear margin of {} logits\n  prunechat {:?}\n  llama.cpp {:?}",
                    got.get(i),
                    expected[i],
                    margins[i],
                    &got[..n.min(got.len())],
                    &expected[..n]
                );
                near_ties.push(format!("{name} at token {i} (margin {})", margins[i]));
            }
        }
    }
    assert!(
        full_matches.len() >= MIN_FULL_MATCHES,
        "only {} prompts matched llama.cpp for {GREEDY_TOKENS_COMPARED} tokens: {full_matches:?}; diverged at near ties: {near_ties:?}",
        full_matches.len()
    );
}
