//! Tokenization of arbitrary text with every fixture's tokenizer, then batch formation through
//! the public `Batcher` API (`announce` / `submit` / the reply receivers) with an in-process
//! backend that checks the batch limits and answers each sequence with logits derived from its
//! ids, so that a reply delivered to the wrong request, twice, or not at all is detected.
//!
//! For the real model (minilm-sst2), every text is also encoded by the tokenizer built from its
//! `vocab.txt` alone (the fallback for checkpoints without tokenizer.json), which must give the
//! same ids as its tokenizer.json.
//!
//! Input layout: byte 0 picks the tokenizer (`% 5`) and byte 1 the batch limits (`% 3`); the
//! rest drives up to 3 requests of up to 10 texts (or synthetic sequences of fuzzed lengths).

#![no_main]

mod common;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use sentiment_server::batcher::{BatchLimits, Batcher};
use sentiment_server::checkpoint::{ModelConfig, ModelFiles};
use sentiment_server::metrics::Metrics;
use sentiment_server::tokenize::TextTokenizer;
use sentiment_server::types::Encoded;
use sentiment_server::types::{Backend, Reply};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

struct Tok {
    name: String,
    tokenizer: TextTokenizer,
    vocab_size: usize,
    type_vocab_size: usize,
    /// The same model's tokenizer built from vocab.txt, where it has one.
    from_vocab: Option<TextTokenizer>,
}

/// The backend under the batcher: checks each batch against the limits, counts sequences,
/// fails batches holding a "poisoned" sequence, and otherwise answers each sequence with its
/// own signature.
struct FakeBackend {
    limits: BatchLimits,
    forwarded: Arc<AtomicUsize>,
}

/// Logits that identify a sequence: its length, an FNV-1a hash of its ids and type ids in
/// 21-bit pieces (exact in f32), and its first and last id.
fn signature(e: &Encoded) -> Vec<f32> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in e.ids.iter().chain(&e.type_ids) {
        for b in x.to_le_bytes() {
            hash = (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let piece = |shift: u32| ((hash >> shift) & 0x1f_ffff) as f32;
    vec![
        e.ids.len() as f32,
        piece(0),
        piece(21),
        piece(42),
        e.ids.first().map_or(-1.0, |&x| x as f32),
        e.ids.last().map_or(-1.0, |&x| x as f32),
    ]
}

fn id_sum(e: &Encoded) -> u64 {
    e.ids.iter().map(|&x| x as u64).sum::<u64>() + e.ids.len() as u64
}

/// A sequence whose batch the backend fails with an error.
fn poisoned(e: &Encoded) -> bool {
    id_sum(e) % 23 == 5
}

/// A sequence whose batch the backend answers with one row too few.
fn short_changed(e: &Encoded) -> bool {
    id_sum(e) % 29 == 7
}

impl Backend for FakeBackend {
    fn forward(&self, batch: &[&Encoded]) -> Result<Vec<Vec<f32>>, String> {
        // A panic here aborts the fuzzer (libfuzzer-sys' panic hook) before the batcher's
        // catch_unwind sees it: every assertion failure is a reported crash.
        assert!(!batch.is_empty(), "empty batch");
        assert!(
            batch.len() <= self.limits.max_batch_size,
            "batch of {} sequences over max_batch_size {}",
            batch.len(),
            self.limits.max_batch_size
        );
        let longest = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        assert!(
            batch.len() == 1 || longest * batch.len() <= self.limits.max_batch_tokens,
            "batch of {} x {longest} padded tokens over max_batch_tokens {}",
            batch.len(),
            self.limits.max_batch_tokens
        );
        for e in batch {
            assert_eq!(
                e.ids.len(),
                e.type_ids.len(),
                "ids and type ids differ in length"
            );
        }
        self.forwarded.fetch_add(batch.len(), Ordering::SeqCst);
        if batch.iter().any(|e| poisoned(e)) {
            return Err("poisoned batch".into());
        }
        let mut rows: Vec<Vec<f32>> = batch.iter().map(|e| signature(e)).collect();
        if batch.iter().any(|e| short_changed(e)) {
            rows.pop();
        }
        Ok(rows)
    }
}

struct Lane {
    batcher: Batcher,
    forwarded: Arc<AtomicUsize>,
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    tokenizers: Vec<Tok>,
    lanes: Vec<Lane>,
}

fn load_tokenizer(dir: &Path) -> (ModelFiles, ModelConfig, TextTokenizer) {
    let files = ModelFiles::locate(dir).unwrap_or_else(|e| panic!("{e}"));
    let config = files.read_config().unwrap_or_else(|e| panic!("{e}"));
    let tokenizer = TextTokenizer::load(&files, &config).unwrap_or_else(|e| panic!("{e}"));
    (files, config, tokenizer)
}

fn tokenizer(dir: PathBuf) -> Tok {
    let (files, config, tokenizer) = load_tokenizer(&dir);
    let from_vocab = dir.join("vocab.txt").is_file().then(|| vocab_only(&dir));
    Tok {
        name: files.name(),
        tokenizer,
        vocab_size: config.vocab_size,
        type_vocab_size: config.type_vocab_size,
        from_vocab,
    }
}

/// The tokenizer of `dir` built from vocab.txt: a directory beside it without tokenizer.json
/// (links to the other files), as tests/tokenizer.rs makes.
fn vocab_only(dir: &Path) -> TextTokenizer {
    let copy = std::env::temp_dir().join(format!("sentiment-fuzz-vocab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).expect("temp dir");
    for entry in std::fs::read_dir(dir).expect("model dir") {
        let path = entry.expect("dir entry").path();
        if path.file_name().is_some_and(|n| n != "tokenizer.json") {
            std::os::unix::fs::symlink(&path, copy.join(path.file_name().expect("name")))
                .expect("symlink");
        }
    }
    let (files, _, tokenizer) = load_tokenizer(&copy);
    assert!(files.tokenizer_is_vocab(), "{:?}", files.tokenizer);
    let _ = std::fs::remove_dir_all(&copy);
    tokenizer
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let mut tokenizers: Vec<Tok> = [
            "bert-tiny-3class",
            "bert-tiny-multilabel",
            "distilbert-tiny",
            "roberta-tiny-3class",
        ]
        .into_iter()
        .map(|f| tokenizer(common::fixture(f)))
        .collect();
        // The real model's tokenizer.json carries fixed padding and truncation at 128, which
        // loading must replace (truncation at 512, no padding).
        tokenizers.push(tokenizer(common::shared_dir().join("models/minilm-sst2")));
        let lanes = [
            (4, 256, Duration::from_millis(1), Duration::ZERO),
            // A token budget below the longest input: long sequences must run alone.
            (3, 100, Duration::ZERO, Duration::ZERO),
            // The server's defaults, the queue bounded by time included.
            (32, 16384, Duration::from_millis(1), Duration::from_secs(2)),
        ]
        .into_iter()
        .map(
            |(max_batch_size, max_batch_tokens, max_batch_delay, max_queue_wait)| {
                let limits = BatchLimits {
                    max_batch_size,
                    max_batch_tokens,
                    max_batch_delay,
                    max_queue_size: 1024,
                    max_queue_wait,
                };
                let forwarded = Arc::new(AtomicUsize::new(0));
                let backend = FakeBackend {
                    limits,
                    forwarded: forwarded.clone(),
                };
                Lane {
                    batcher: Batcher::start(backend, limits, Metrics::new().for_model("fuzz", 1)),
                    forwarded,
                }
            },
        )
        .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        Harness {
            runtime,
            tokenizers,
            lanes,
        }
    })
}

fn encode(tok: &Tok, text: &str) -> Encoded {
    let max = tok.tokenizer.max_length();
    let e = tok
        .tokenizer
        .encode(text)
        .unwrap_or_else(|e| panic!("{}: cannot encode {text:?}: {e}", tok.name));
    let show = || format!("{}: {text:?} -> {} ids {:?}", tok.name, e.ids.len(), e.ids);
    assert!(
        !e.ids.is_empty(),
        "no ids, not even special tokens: {}",
        show()
    );
    assert!(
        e.ids.len() <= max,
        "longer than max_length {max}: {}",
        show()
    );
    assert_eq!(e.ids.len(), e.type_ids.len(), "type ids: {}", show());
    assert!(
        !e.truncated || e.ids.len() == max,
        "truncated to fewer than max_length {max}: {}",
        show()
    );
    assert!(
        e.ids.iter().all(|&id| (id as usize) < tok.vocab_size),
        "id beyond vocab_size {}: {}",
        tok.vocab_size,
        show()
    );
    assert!(
        e.type_ids
            .iter()
            .all(|&t| (t as usize) < tok.type_vocab_size.max(1)),
        "type id beyond type_vocab_size {}: {}",
        tok.type_vocab_size,
        show()
    );
    if let Some(twin) = &tok.from_vocab {
        let v = twin
            .encode(text)
            .unwrap_or_else(|err| panic!("{}: vocab.txt cannot encode {text:?}: {err}", tok.name));
        assert!(
            (&v.ids, &v.type_ids, v.truncated) == (&e.ids, &e.type_ids, e.truncated),
            "{}: vocab.txt and tokenizer.json disagree on {text:?}:\n  tokenizer.json {:?} (truncated: {})\n  vocab.txt      {:?} (truncated: {})",
            tok.name,
            e.ids,
            e.truncated,
            v.ids,
            v.truncated
        );
    }
    e
}

fn synthetic(u: &mut Unstructured) -> Encoded {
    let len = u.int_in_range(1..=600usize).unwrap_or(1);
    let seed = u.arbitrary::<u32>().unwrap_or(0);
    let ids: Vec<u32> = (0..len as u32)
        .map(|i| seed.wrapping_add(i.wrapping_mul(2_654_435_761)) % 30_000)
        .collect();
    Encoded {
        type_ids: vec![0; ids.len()],
        ids,
        truncated: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let [t, l, rest @ ..] = data else {
        return;
    };
    let h = harness();
    let tok = &h.tokenizers[*t as usize % h.tokenizers.len()];
    let lane = &h.lanes[*l as usize % h.lanes.len()];
    let mut u = Unstructured::new(rest);

    // Up to 3 requests, each tokenized before it is submitted, as the engine does.
    let mut requests: Vec<Vec<Encoded>> = Vec::new();
    let groups = u.int_in_range(1..=3u8).unwrap_or(1);
    for _ in 0..groups {
        let n = u.int_in_range(1..=10usize).unwrap_or(1);
        let mut seqs = Vec::with_capacity(n);
        for _ in 0..n {
            if u.int_in_range(0..=7u8).unwrap_or(0) == 0 {
                seqs.push(synthetic(&mut u));
            } else {
                let text = common::text(&mut u);
                let e = encode(tok, &text);
                if seqs.is_empty() {
                    let again = encode(tok, &text);
                    assert_eq!(
                        (&e.ids, &e.type_ids, e.truncated),
                        (&again.ids, &again.type_ids, again.truncated),
                        "{}: encoding {text:?} twice differs",
                        tok.name
                    );
                }
                seqs.push(e);
            }
        }
        requests.push(seqs);
    }

    let total: usize = requests.iter().map(Vec::len).sum();
    let any_failing = requests
        .iter()
        .flatten()
        .any(|e| poisoned(e) || short_changed(e));
    let before = lane.forwarded.load(Ordering::SeqCst);

    // Every request announces itself before any is queued, as concurrent requests being
    // tokenized do, so the worker may gather them into one batch.
    let marks: Vec<_> = requests.iter().map(|_| lane.batcher.announce()).collect();
    let mut pending: Vec<(Encoded, oneshot::Receiver<Reply>)> = Vec::with_capacity(total);
    for (seqs, incoming) in requests.into_iter().zip(marks) {
        let receivers = lane
            .batcher
            .submit(seqs.clone(), incoming)
            .unwrap_or_else(|e| panic!("submit refused {} sequences: {e}", seqs.len()));
        assert_eq!(receivers.len(), seqs.len(), "one receiver per sequence");
        pending.extend(seqs.into_iter().zip(receivers));
    }

    h.runtime.block_on(async {
        for (i, (e, rx)) in pending.into_iter().enumerate() {
            let reply = tokio::time::timeout(Duration::from_secs(20), rx)
                .await
                .unwrap_or_else(|_| panic!("sequence {i} got no reply within 20 s"))
                .unwrap_or_else(|_| panic!("sequence {i}: the worker dropped its reply"));
            match reply {
                Ok(row) => {
                    assert!(!poisoned(&e), "sequence {i}: a poisoned batch succeeded");
                    assert!(
                        !short_changed(&e),
                        "sequence {i}: a batch with a missing row was answered"
                    );
                    assert_eq!(
                        row,
                        signature(&e),
                        "sequence {i} (len {}) got another sequence's logits",
                        e.len()
                    );
                }
                Err(error) => assert!(
                    any_failing,
                    "sequence {i}: error `{error}` though no batch of this input should fail"
                ),
            }
        }
    });
    // Each sequence went through the backend exactly once.
    let forwarded = lane.forwarded.load(Ordering::SeqCst) - before;
    assert_eq!(
        forwarded, total,
        "backend saw {forwarded} sequences for {total} submitted"
    );
});
