//! What both targets share: where the test models live, and thread settings.
#![allow(dead_code)]

use std::path::PathBuf;

/// `$SHARED_DIR`, else `../shared` beside the checkout (the fuzz crate is one level deeper).
/// Missing data is a loud failure: a fuzzer that loads nothing tests nothing.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    assert!(
        dir.join("fixtures").is_dir(),
        "shared test data not found at {} (set SHARED_DIR)",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    shared_dir().join("fixtures").join(name)
}

/// One thread for candle's element-wise ops and for the matrix kernels, as the server does on
/// a small machine: the fuzzer runs one input at a time, and spinning pools only add noise.
/// Call before anything touches candle or rayon.
pub fn single_threaded_kernels() {
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
}

/// `n` bytes of `u` (fewer when it runs out), as lossy UTF-8.
pub fn lossy_text(u: &mut arbitrary::Unstructured, max: usize) -> String {
    let n = u.int_in_range(0..=max).unwrap_or(0).min(u.len());
    let bytes = u.bytes(n).unwrap_or_default();
    String::from_utf8_lossy(bytes).into_owned()
}

/// Strings that have tripped tokenizers and validators elsewhere: whitespace that `trim`
/// removes and whitespace it does not, special tokens written as text, NUL, BOM, combining
/// marks, emoji with modifiers, right-to-left and CJK text.
pub const SPECIAL: &[&str] = &[
    "",
    " ",
    "\n\t \r",
    "\u{3000}",
    "\u{85}",
    "\u{200b}",
    "\u{feff}",
    "\0",
    "a\0b",
    "[CLS]",
    "[SEP] [PAD] [UNK] [MASK]",
    "<s></s><pad><unk><mask>",
    "e\u{301}\u{301}\u{301}",
    "\u{1f44d}\u{1f3fd}",
    "\u{fffd}",
    "\u{645}\u{631}\u{62d}\u{628}\u{627}",
    "\u{4e2d}\u{6587}\u{5b57}",
    "I love this movie!",
    "This was a terrible waste of time.",
    "\u{7f}\u{1b}[31m",
    "\u{10ffff}",
];

/// One text: fuzzed bytes, a special string, or a repetition long enough to need truncation.
pub fn text(u: &mut arbitrary::Unstructured) -> String {
    match u.int_in_range(0..=7u8).unwrap_or(0) {
        0 => SPECIAL[u.choose_index(SPECIAL.len()).unwrap_or(0)].to_string(),
        1 => {
            let unit = if u.arbitrary().unwrap_or(false) {
                SPECIAL[u.choose_index(SPECIAL.len()).unwrap_or(0)].to_string()
            } else {
                lossy_text(u, 16)
            };
            let times = u.int_in_range(1..=800usize).unwrap_or(1);
            let mut s = String::new();
            for _ in 0..times {
                if s.len() + unit.len() > 8_000 {
                    break;
                }
                s.push_str(&unit);
                s.push(' ');
            }
            s
        }
        2 => {
            let a = lossy_text(u, 32);
            let b = SPECIAL[u.choose_index(SPECIAL.len()).unwrap_or(0)];
            format!("{a}{b}{}", lossy_text(u, 32))
        }
        _ => lossy_text(u, 256),
    }
}
