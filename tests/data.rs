//! Corpus loading, the calibration / held-out split, tokenization with assistant flags, and
//! token windows.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::{Path, PathBuf};

use prunechat::chat_template::{ChatTemplate, Message};
use prunechat::data::{
    calibration_windows, detect_format, evaluation_windows, load_corpus, parse_corpus,
    parse_corpus_files, render_with_assistant_spans, split_corpus, tokenize_corpus, Corpus,
    CorpusFile, CorpusFormat, Document, DocumentContent, TokenStream,
};
use prunechat::synthetic::{tiny_llama, TinySpec};
use prunechat::tokenizer::Tokenizer;

fn english_corpus_dir() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/chatterbot-corpus/english");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh (or `make model`) first",
        path.display()
    );
    path
}

/// Creates an empty scratch directory under the target directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn tiny_tokenizer_and_template() -> (Tokenizer, ChatTemplate) {
    let gguf = tiny_llama(&TinySpec::default()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer).unwrap();
    (tokenizer, template)
}

fn stream_of(n: usize) -> TokenStream {
    TokenStream {
        source: "test stream".into(),
        tokens: (0..n as u32).collect(),
        assistant: (0..n).map(|i| i % 3 == 0).collect(),
        document_starts: vec![0],
    }
}

fn chat(messages: &[(&str, &str)]) -> Vec<Message> {
    messages
        .iter()
        .map(|(role, content)| Message::new(role, content))
        .collect()
}

#[test]
fn format_from_extension_and_content() {
    assert_eq!(
        detect_format("a.txt", "{\"messages\": []}"),
        CorpusFormat::Text
    );
    assert_eq!(detect_format("a.JSONL", "hello"), CorpusFormat::ChatJsonl);
    assert_eq!(
        detect_format("dir/a.yml", "hello"),
        CorpusFormat::Chatterbot
    );
    assert_eq!(detect_format("a.yaml", ""), CorpusFormat::Chatterbot);
    assert_eq!(
        detect_format(
            "data",
            "\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n"
        ),
        CorpusFormat::ChatJsonl
    );
    assert_eq!(
        detect_format("data", "categories:\n- x\nconversations:\n- - a\n  - b\n"),
        CorpusFormat::Chatterbot
    );
    assert_eq!(detect_format("data", "{ not json"), CorpusFormat::Text);
    assert_eq!(
        detect_format("data", "Just some prose.\n"),
        CorpusFormat::Text
    );
}

#[test]
fn text_paragraphs_are_documents() {
    let corpus = parse_corpus(
        "First line\nsecond line  \n\n\n  \nSecond paragraph\n",
        CorpusFormat::Text,
        "notes.txt",
    )
    .unwrap();
    let texts: Vec<&DocumentContent> = corpus.documents.iter().map(|d| &d.content).collect();
    assert_eq!(
        texts,
        vec![
            &DocumentContent::Text("First line\nsecond line".into()),
            &DocumentContent::Text("Second paragraph".into())
        ]
    );
    assert_eq!(corpus.documents[1].origin, "notes.txt paragraph 2");
}

#[test]
fn jsonl_chat_lines_are_documents() {
    let text = concat!(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}]}\n",
        "\n",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"2+2?\"}], \"id\": 7}\n",
    );
    let corpus = parse_corpus(text, CorpusFormat::ChatJsonl, "chat.jsonl").unwrap();
    assert_eq!(corpus.documents.len(), 2);
    assert_eq!(
        corpus.documents[0].content,
        DocumentContent::Chat(chat(&[("user", "Hi"), ("assistant", "Hello!")]))
    );
    assert_eq!(corpus.documents[1].origin, "chat.jsonl line 3");
}

#[test]
fn malformed_jsonl_names_file_and_line() {
    let good = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}";
    let cases = [
        (
            format!("{good}\n{good}\n{{\"messages\": [{{\"role\": \"user\"}}]}}\n"),
            "chat.jsonl line 3",
            "content",
        ),
        (
            format!("{good}\nnot json at all\n"),
            "chat.jsonl line 2",
            "expected",
        ),
        (
            format!("{good}\n{{\"turns\": []}}\n"),
            "chat.jsonl line 2",
            "messages",
        ),
        (
            format!("{{\"messages\": []}}\n{good}\n"),
            "chat.jsonl line 1",
            "`messages` is empty",
        ),
    ];
    for (text, location, detail) in cases {
        let err = parse_corpus(&text, CorpusFormat::ChatJsonl, "chat.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.contains(location), "{err}");
        assert!(err.contains(detail), "{err}");
    }
}

#[test]
fn chatterbot_conversations_alternate_roles() {
    let text = "categories:\n- test\nconversations:\n- - What is 6 times 7?\n  - 42\n  - Are you sure?\n  - true\n- - Hello\n- A lone question?\n";
    let corpus = parse_corpus(text, CorpusFormat::Chatterbot, "math.yml").unwrap();
    assert_eq!(
        corpus.documents[0].content,
        DocumentContent::Chat(chat(&[
            ("user", "What is 6 times 7?"),
            ("assistant", "42"),
            ("user", "Are you sure?"),
            ("assistant", "true")
        ]))
    );
    assert_eq!(
        corpus.documents[1].content,
        DocumentContent::Chat(chat(&[("user", "Hello")]))
    );
    assert_eq!(corpus.documents[1].origin, "math.yml conversation 2");
    assert_eq!(
        corpus.documents[2].content,
        DocumentContent::Chat(chat(&[("user", "A lone question?")]))
    );
}

#[test]
fn malformed_chatterbot_is_rejected() {
    let cases = [
        ("categories:\n- x\n", "no top-level `conversations` key"),
        ("conversations: 5\n", "`conversations` is not a list"),
        (
            "conversations:\n- - a\n  - b\n- {k: v}\n",
            "conversation 2 is a mapping, expected a list of utterances",
        ),
        (
            "conversations:\n- - a\n  - {k: v}\n",
            "conversation 1, utterance 2: expected text, found a mapping",
        ),
        ("conversations:\n- - a\n  - [unclosed\n", "invalid YAML"),
    ];
    for (text, expected) in cases {
        let err = parse_corpus(text, CorpusFormat::Chatterbot, "bad.yml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.yml"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn empty_file_is_rejected() {
    let dir = scratch_dir("data_empty_file");
    for name in ["empty.txt", "empty.jsonl", "empty.yml"] {
        let path = write(&dir, name, " \n\n");
        let err = load_corpus(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} is empty", path.display())),
            "{err}"
        );
    }
    let err = load_corpus(dir.join("missing.txt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.txt"), "{err}");
    let empty_dir = scratch_dir("data_empty_dir");
    write(&empty_dir, "notes.csv", "a,b\n");
    let err = load_corpus(&empty_dir).unwrap_err().to_string();
    assert!(err.contains("contains no corpus files"), "{err}");
}

#[test]
fn english_corpus_directory_loads_every_conversation() {
    let dir = english_corpus_dir();
    let corpus = load_corpus(&dir).unwrap();

    // Naive count: in these files every conversation is a line starting with "- " after the
    // line "conversations:".
    let mut expected = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let conversations = text
            .split_once("\nconversations:\n")
            .expect("a conversations key")
            .1;
        expected += conversations
            .lines()
            .filter(|l| l.starts_with("- "))
            .count();
    }
    assert_eq!(corpus.documents.len(), expected);
    let first = &corpus.documents[0];
    assert!(
        first.origin.ends_with("ai.yml conversation 1"),
        "{}",
        first.origin
    );
    assert_eq!(
        first.content,
        DocumentContent::Chat(chat(&[
            ("user", "What is AI?"),
            ("assistant", "Artificial Intelligence is the branch of engineering and science devoted to constructing machines that think.")
        ]))
    );
}

#[test]
fn split_is_deterministic_and_disjoint() {
    let documents: Vec<Document> = (0..200)
        .map(|i| Document {
            origin: format!("doc {i}"),
            content: DocumentContent::Text(format!("text {i}")),
        })
        .collect();
    let corpus = Corpus {
        source: "numbers".into(),
        documents,
    };
    let (calibration, held_out) = split_corpus(&corpus, 0.1, 7).unwrap();
    assert_eq!(held_out.documents.len(), 20);
    assert_eq!(calibration.documents.len(), 180);

    // Each split keeps the original order, and together they hold every document once.
    let index = |d: &Document| d.origin[4..].parse::<usize>().unwrap();
    let calibration_ids: Vec<usize> = calibration.documents.iter().map(index).collect();
    let held_out_ids: Vec<usize> = held_out.documents.iter().map(index).collect();
    assert!(calibration_ids.windows(2).all(|w| w[0] < w[1]));
    assert!(held_out_ids.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<usize> = calibration_ids
        .iter()
        .chain(&held_out_ids)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>());

    let (_, again) = split_corpus(&corpus, 0.1, 7).unwrap();
    assert_eq!(again, held_out, "the same seed gives the same split");
    let (_, other) = split_corpus(&corpus, 0.1, 8).unwrap();
    assert_ne!(
        other.documents, held_out.documents,
        "another seed gives another split"
    );

    let (everything, nothing) = split_corpus(&corpus, 0.0, 7).unwrap();
    assert_eq!(everything.documents.len(), 200);
    assert!(nothing.documents.is_empty());
    // A tiny fraction still holds out one document, and a large one leaves one behind.
    assert_eq!(
        split_corpus(&corpus, 0.001, 7).unwrap().1.documents.len(),
        1
    );
    assert_eq!(
        split_corpus(&corpus, 0.999, 7).unwrap().0.documents.len(),
        1
    );
}

#[test]
fn split_rejects_bad_fraction_and_tiny_corpus() {
    let corpus = parse_corpus("one paragraph", CorpusFormat::Text, "one.txt").unwrap();
    for fraction in [1.0, -0.1, 1.5, f64::NAN] {
        let err = split_corpus(&corpus, fraction, 0).unwrap_err().to_string();
        assert!(err.contains("must be in [0, 1)"), "{err}");
    }
    let err = split_corpus(&corpus, 0.1, 0).unwrap_err().to_string();
    assert!(err.contains("one.txt has 1 document(s)"), "{err}");
}

#[test]
fn offsets_encoding_matches_plain_encoding() {
    let tokenizer = Tokenizer::from_gguf(&common::load_smollm2()).unwrap();
    for text in [
        "<|im_start|>user\nHello, wörld! 123<|im_end|>\n",
        "  spaces\tand\nnewlines 😀",
        "",
    ] {
        let (ids, offsets) = tokenizer.encode_with_offsets(text).unwrap();
        assert_eq!(ids, tokenizer.encode(text).unwrap(), "{text:?}");
        assert_eq!(offsets.len(), ids.len());
        for &(start, end) in &offsets {
            assert!(start <= end, "{text:?}: offsets {offsets:?}");
            assert!(end <= text.len(), "{text:?}: offsets {offsets:?}");
        }
    }
}

/// Decodes the flagged tokens of each run of consecutive assistant flags.
fn flagged_runs(tokenizer: &Tokenizer, stream: &TokenStream) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for (&token, &flag) in stream.tokens.iter().zip(&stream.assistant) {
        if flag {
            current.push(token);
        } else if !current.is_empty() {
            runs.push(decode_with_control(tokenizer, &current));
            current.clear();
        }
    }
    if !current.is_empty() {
        runs.push(decode_with_control(tokenizer, &current));
    }
    runs
}

fn decode_with_control(tokenizer: &Tokenizer, ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| tokenizer.token_bytes(id).to_vec())
        .collect();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn assistant_flags_cover_replies_chatml() {
    let (tokenizer, template) = tiny_tokenizer_and_template();
    let messages = chat(&[
        ("user", "Hi there"),
        ("assistant", "Hello, how can I help?"),
        ("user", "Tell me a joke"),
        ("assistant", "No."),
    ]);
    let corpus = Corpus {
        source: "two chats".into(),
        documents: vec![
            Document {
                origin: "a".into(),
                content: DocumentContent::Chat(messages.clone()),
            },
            Document {
                origin: "b".into(),
                content: DocumentContent::Text("plain <|im_end|> text".into()),
            },
        ],
    };
    let stream = tokenize_corpus(&corpus, &tokenizer, &template).unwrap();
    assert_eq!(
        flagged_runs(&tokenizer, &stream),
        vec!["Hello, how can I help?<|im_end|>", "No.<|im_end|>"]
    );

    // The text document's control-token string stays text, and none of it is flagged.
    let text_start = stream.document_starts[1];
    assert!(stream.assistant[text_start..].iter().all(|&f| !f));
    assert_eq!(
        decode_with_control(&tokenizer, &stream.tokens[text_start..]),
        "plain <|im_end|> text\n\n"
    );
    assert!(
        !stream.tokens[text_start..].contains(&2),
        "<|im_end|> (id 2) must not appear as a control token"
    );

    // The whole chat document is the rendered conversation.
    let rendered = template.render(&messages, false).unwrap();
    assert_eq!(
        decode_with_control(&tokenizer, &stream.tokens[..text_start]),
        rendered
    );
}

#[test]
fn assistant_flags_cover_replies_smollm2() {
    let gguf = common::load_smollm2();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer).unwrap();
    let corpus = load_corpus(english_corpus_dir().join("greetings.yml")).unwrap();
    let stream = tokenize_corpus(&corpus, &tokenizer, &template).unwrap();

    let mut expected = Vec::new();
    for document in &corpus.documents {
        let DocumentContent::Chat(messages) = &document.content else {
            panic!("chat expected")
        };
        expected.extend(
            messages
                .iter()
                .filter(|m| m.role == "assistant")
                .map(|m| format!("{}<|im_end|>", m.content)),
        );
    }
    assert_eq!(flagged_runs(&tokenizer, &stream), expected);
    assert_eq!(stream.document_starts.len(), corpus.documents.len());
    assert_eq!(stream.tokens.len(), stream.assistant.len());
}

#[test]
fn spans_fall_back_to_text_search() {
    // A template that drops earlier assistant turns is not prefix-stable, so the reply
    // ranges come from searching for their content.
    let template = ChatTemplate::new(
        Some("{% for m in messages %}{% if m.role != 'assistant' or loop.last %}[{{ m.role }}] {{ m.content }}\n{% endif %}{% endfor %}".into()),
        String::new(),
        String::new(),
    )
    .unwrap();
    let messages = chat(&[
        ("user", "a"),
        ("assistant", "dropped"),
        ("user", "b"),
        ("assistant", "kept reply"),
    ]);
    let err = render_with_assistant_spans(&template, &messages)
        .unwrap_err()
        .to_string();
    assert!(err.contains("assistant message 2 does not appear"), "{err}");

    // A template that renders the turns in reverse order is not prefix-stable either, but the
    // reply is in the text.
    let template = ChatTemplate::new(
        Some("{% for m in messages|reverse %}[{{ m.role }}] {{ m.content }}\n{% endfor %}".into()),
        String::new(),
        String::new(),
    )
    .unwrap();
    let messages = chat(&[("user", "a"), ("assistant", "kept reply")]);
    let (text, spans) = render_with_assistant_spans(&template, &messages).unwrap();
    assert_eq!(text, "[assistant] kept reply\n[user] a\n");
    assert_eq!(spans.len(), 1);
    assert_eq!(&text[spans[0].clone()], "kept reply");
}

#[test]
fn calibration_windows_do_not_overlap() {
    let stream = stream_of(1000);
    let windows = calibration_windows(&stream, 7, 64, 3).unwrap();
    assert_eq!(windows.len(), 7);
    for pair in windows.windows(2) {
        assert!(
            pair[0].start + 64 <= pair[1].start,
            "windows at {} and {} overlap",
            pair[0].start,
            pair[1].start
        );
    }
    for w in &windows {
        assert_eq!(w.tokens.len(), 64);
        assert_eq!(w.tokens, stream.tokens[w.start..w.start + 64]);
        assert_eq!(w.assistant, stream.assistant[w.start..w.start + 64]);
    }
    assert_eq!(
        calibration_windows(&stream, 7, 64, 3).unwrap(),
        windows,
        "the same seed gives the same windows"
    );
    assert_ne!(
        calibration_windows(&stream, 7, 64, 4).unwrap(),
        windows,
        "another seed gives other windows"
    );

    // Exactly enough tokens: the windows tile the stream.
    let tiled = calibration_windows(&stream_of(640), 10, 64, 9).unwrap();
    let starts: Vec<usize> = tiled.iter().map(|w| w.start).collect();
    assert_eq!(starts, (0..10).map(|i| i * 64).collect::<Vec<_>>());
}

#[test]
fn calibration_windows_reject_short_data() {
    let stream = stream_of(1000);
    let err = calibration_windows(&stream, 16, 64, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "test stream has 1000 tokens, fewer than the 1024 requested (16 samples × 64 tokens)"
        ),
        "{err}"
    );
    let err = calibration_windows(&stream, 0, 64, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("n_samples"), "{err}");
    let err = calibration_windows(&stream, 4, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("seq_len"), "{err}");
}

#[test]
fn evaluation_windows_tile_the_stream() {
    for (len, window, expected) in [
        (1000, 256, vec![256, 256, 256, 232]),
        (1024, 256, vec![256; 4]),
        (1025, 256, vec![256; 4]),
        (1026, 256, vec![256, 256, 256, 256, 2]),
    ] {
        let stream = stream_of(len);
        let windows = evaluation_windows(&stream, window).unwrap();
        let lens: Vec<usize> = windows.iter().map(|w| w.tokens.len()).collect();
        assert_eq!(lens, expected, "{len} tokens, window {window}");
        let mut position = 0;
        for w in &windows {
            assert_eq!(w.start, position);
            assert_eq!(w.tokens, stream.tokens[w.start..w.start + w.tokens.len()]);
            position += w.tokens.len();
        }
    }
    let err = evaluation_windows(&stream_of(100), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 2 tokens, got 1"), "{err}");
    let err = evaluation_windows(&stream_of(1), 16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("test stream has 1 token(s)"), "{err}");
}

/// The browser passes the bundled corpus as files held in memory. Parsed together, they give the
/// documents that `load_corpus` reads from the directory, in the same order.
#[test]
fn corpus_files_in_memory_match_the_directory() {
    let dir = english_corpus_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yml"))
        .collect();
    paths.sort();
    let files: Vec<CorpusFile> = paths
        .iter()
        .map(|path| CorpusFile {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            text: std::fs::read_to_string(path).unwrap(),
        })
        .collect();
    let in_memory = parse_corpus_files(&files, "bundled").unwrap();
    let from_dir = load_corpus(&dir).unwrap();
    assert_eq!(in_memory.source, "bundled");
    assert_eq!(in_memory.documents.len(), from_dir.documents.len());
    for (a, b) in in_memory.documents.iter().zip(&from_dir.documents) {
        assert_eq!(a.content, b.content);
    }

    let err = parse_corpus_files(&[], "pasted").unwrap_err().to_string();
    assert!(err.contains("pasted contains no files"), "{err}");
    let bad = CorpusFile {
        name: "chat.jsonl".into(),
        text: "{\"messages\": 3}".into(),
    };
    let err = parse_corpus_files(&[files[0].clone(), bad], "mixed")
        .unwrap_err()
        .to_string();
    assert!(err.contains("chat.jsonl line 1"), "{err}");
}
