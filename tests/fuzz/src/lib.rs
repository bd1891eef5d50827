//! The case generator of Talaria's fuzz harness: seeded, on stable Rust.
//!
//! A target names itself, gives real seed inputs (what the parser sees in normal use) and a
//! dictionary of tokens that matter to its grammar; [`Fuzzer`] then yields cases that are
//! either arbitrary bytes or a seed input under a few structure-aware mutations (token
//! insertion, splicing, range duplication, boundary numbers, split UTF-8, truncation).
//!
//! A case is a pure function of `(seed, target, index)`, so the report of a failing case
//! (its seed and index, printed by [`Fuzzer::fail`]) reproduces it exactly:
//! `TALARIA_FUZZ_SEED=<seed> TALARIA_FUZZ_CASE=<index> cargo nextest run -p talaria-fuzz`.
//!
//! Environment (all optional; the defaults are the bounded CI run):
//! - `TALARIA_FUZZ_SEED`: the base seed (default [`CI_SEED`]).
//! - `TALARIA_FUZZ_CASES`: cases per target, instead of the target's CI count.
//! - `TALARIA_FUZZ_SECS`: a time budget per target; with it the case count is unbounded.
//! - `TALARIA_FUZZ_CASE`: run only this case index (to reproduce a report).
//!
//! It never decides what a failure is: the target's check does (a panic, a wrong status, a
//! unit that lost its bus name); this module only numbers, generates and reports.

use std::time::{Duration, Instant};

/// The fixed seed of the bounded CI run.
pub const CI_SEED: u64 = 0x7a1a_2026_0012_0001;

/// The largest input a mutation may build; bigger inputs only slow a run down without
/// reaching new code (each target also has its own size limit tests).
const MAX_LEN: usize = 64 * 1024;

/// Interesting single bytes: NUL, control characters, quoting, high bit, UTF-8 lead bytes.
const BYTES: &[u8] = &[
    0x00, 0x01, 0x07, 0x08, b'\t', b'\n', b'\r', 0x1b, b' ', b'"', b'\'', b'\\', b'/', b'%', b'{',
    b'}', b'[', b']', b':', b',', b'=', b'#', b'-', b'*', 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed,
    0xf0, 0xf4, 0xfe, 0xff,
];

/// Numbers at type boundaries, to replace digit runs with.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1",
    "127",
    "128",
    "255",
    "256",
    "32767",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "1e309",
    "-1e309",
    "1.5",
    "0x10",
    "nan",
    "inf",
];

/// Text that is valid Unicode but hard on byte/char arithmetic and terminals.
const UNICODE: &[&str] = &[
    "é",
    "日本",
    "🦀",
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "\u{10ffff}",
    "e\u{301}",
    "\u{2028}",
    "\u{85}",
];

/// One generated input.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its index in the target's run (with the seed, all that is needed to rebuild it).
    pub index: u64,
    pub bytes: Vec<u8>,
}

impl Case {
    /// The input as text, invalid UTF-8 replaced (for parsers that take `&str`).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The run's settings, read once from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub cases: Option<u64>,
    pub budget: Option<Duration>,
    pub only: Option<u64>,
}

impl Settings {
    /// Reads `TALARIA_FUZZ_*`; a value that does not parse is a panic naming the variable,
    /// because silently running the CI defaults instead would hide the mistake.
    pub fn from_env() -> Self {
        fn var(name: &str) -> Option<u64> {
            let value = std::env::var(name).ok()?;
            let value = value.trim();
            let parsed = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            };
            match parsed {
                Ok(n) => Some(n),
                Err(e) => panic!("{name}={value:?} is not a number: {e}"),
            }
        }
        Self {
            seed: var("TALARIA_FUZZ_SEED").unwrap_or(CI_SEED),
            cases: var("TALARIA_FUZZ_CASES"),
            budget: var("TALARIA_FUZZ_SECS").map(Duration::from_secs),
            only: var("TALARIA_FUZZ_CASE"),
        }
    }
}

/// Generates the cases of one target.
#[derive(Debug)]
pub struct Fuzzer {
    target: String,
    settings: Settings,
    seeds: Vec<Vec<u8>>,
    dictionary: Vec<Vec<u8>>,
    /// Cases to run when neither a count nor a time budget is set.
    ci_cases: u64,
    next: u64,
    started: Instant,
    /// A wall-clock cap on the CI run of one target, so a slow machine shortens it rather
    /// than blowing the CI time limit.
    ci_cap: Duration,
}

impl Fuzzer {
    /// A target with its seed inputs and grammar tokens, running `ci_cases` cases in CI.
    pub fn new(target: &str, seeds: &[&[u8]], dictionary: &[&[u8]], ci_cases: u64) -> Self {
        let settings = Settings::from_env();
        let mut seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
        if seeds.is_empty() {
            seeds.push(Vec::new());
        }
        Self {
            target: target.to_owned(),
            settings,
            seeds,
            dictionary: dictionary.iter().map(|t| t.to_vec()).collect(),
            ci_cases,
            next: 0,
            started: Instant::now(),
            ci_cap: Duration::from_secs(20),
        }
    }

    /// The number of cases generated so far.
    pub fn count(&self) -> u64 {
        self.next
    }

    /// The next case, or `None` when the run is over (count or time budget reached).
    pub fn next_case(&mut self) -> Option<Case> {
        if let Some(only) = self.settings.only {
            if self.next > 0 {
                return None;
            }
            self.next = 1;
            return Some(self.build(only));
        }
        let elapsed = self.started.elapsed();
        let more = match (self.settings.cases, self.settings.budget) {
            (Some(cases), _) => self.next < cases,
            (None, Some(budget)) => elapsed < budget,
            (None, None) => self.next < self.ci_cases && elapsed < self.ci_cap,
        };
        if !more {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(self.build(index))
    }

    /// Fails the test with everything needed to reproduce `case`.
    pub fn fail(&self, case: &Case, what: &str) -> ! {
        let shown: String = escape(&case.bytes, 2048);
        panic!(
            "fuzz target {target} failed on case {index}: {what}\n\
             input ({len} bytes): {shown}\n\
             reproduce: TALARIA_FUZZ_SEED={seed:#x} TALARIA_FUZZ_CASE={index} \
             cargo nextest run -p talaria-fuzz -E 'test(/{target}/)'",
            target = self.target,
            index = case.index,
            len = case.bytes.len(),
            seed = self.settings.seed,
        )
    }

    /// Runs `check` on every case, in this thread; a panic inside it or an `Err` fails the
    /// target with the case's report. For targets that need no runtime.
    pub fn run(&mut self, mut check: impl FnMut(&Case) -> Result<(), String>) {
        while let Some(case) = self.next_case() {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&case)));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(what)) => self.fail(&case, &what),
                Err(panic) => self.fail(&case, &format!("panicked: {}", panic_text(&panic))),
            }
        }
        eprintln!(
            "fuzz target {}: {} cases, seed {:#x}, {:?}",
            self.target,
            self.next,
            self.settings.seed,
            self.started.elapsed()
        );
    }

    fn build(&self, index: u64) -> Case {
        let mut rng = fastrand::Rng::with_seed(case_seed(self.settings.seed, &self.target, index));
        // Case 0 of every run is each target's first seed untouched, so a target whose normal
        // input already fails says so plainly.
        let bytes = if index < self.seeds.len() as u64 {
            self.seeds[usize::try_from(index).unwrap_or(0)].clone()
        } else if rng.u8(..) < 24 {
            arbitrary_bytes(&mut rng)
        } else {
            let mut bytes = self.seeds[rng.usize(..self.seeds.len())].clone();
            for _ in 0..rng.usize(1..=6) {
                self.mutate(&mut rng, &mut bytes);
            }
            bytes.truncate(MAX_LEN);
            bytes
        };
        Case { index, bytes }
    }

    fn mutate(&self, rng: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
        let at = |rng: &mut fastrand::Rng, bytes: &Vec<u8>| rng.usize(..=bytes.len());
        match rng.u8(..12) {
            0 if !bytes.is_empty() => {
                let i = rng.usize(..bytes.len());
                bytes[i] ^= 1 << rng.u8(..8);
            }
            1 if !bytes.is_empty() => {
                let i = rng.usize(..bytes.len());
                bytes[i] = BYTES[rng.usize(..BYTES.len())];
            }
            2 | 3 if !self.dictionary.is_empty() => {
                let token = &self.dictionary[rng.usize(..self.dictionary.len())];
                let i = at(rng, bytes);
                bytes.splice(i..i, token.iter().copied());
            }
            4 if !bytes.is_empty() => {
                let start = rng.usize(..bytes.len());
                let end = (start + rng.usize(1..=32)).min(bytes.len());
                bytes.drain(start..end);
            }
            5 if !bytes.is_empty() => {
                // Repeat a range many times: deep nesting, long lines, huge values.
                let start = rng.usize(..bytes.len());
                let end = (start + rng.usize(1..=16)).min(bytes.len());
                let chunk = bytes[start..end].to_vec();
                let times = if rng.bool() {
                    rng.usize(2..8)
                } else {
                    rng.usize(64..2048)
                };
                let repeated: Vec<u8> = chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take(chunk.len() * times)
                    .collect();
                bytes.splice(end..end, repeated);
            }
            6 => {
                // Splice: this input's head with another seed's tail.
                let other = &self.seeds[rng.usize(..self.seeds.len())];
                let cut = at(rng, bytes);
                let from = rng.usize(..=other.len());
                bytes.truncate(cut);
                bytes.extend_from_slice(&other[from..]);
            }
            7 => {
                let i = at(rng, bytes);
                bytes.truncate(i);
            }
            8 => {
                if let Some((start, end)) = digit_run(rng, bytes) {
                    let number = NUMBERS[rng.usize(..NUMBERS.len())];
                    bytes.splice(start..end, number.bytes());
                } else {
                    let i = at(rng, bytes);
                    let number = NUMBERS[rng.usize(..NUMBERS.len())];
                    bytes.splice(i..i, number.bytes());
                }
            }
            9 => {
                let text = UNICODE[rng.usize(..UNICODE.len())].as_bytes();
                let i = at(rng, bytes);
                // Sometimes only part of the character: a UTF-8 sequence cut in two.
                let take = if rng.u8(..4) == 0 {
                    rng.usize(1..=text.len())
                } else {
                    text.len()
                };
                bytes.splice(i..i, text[..take].iter().copied());
            }
            10 if !self.dictionary.is_empty() => {
                // Replace a range with a token: keeps the length roughly, changes structure.
                let token = &self.dictionary[rng.usize(..self.dictionary.len())];
                let start = at(rng, bytes);
                let end = (start + rng.usize(0..=token.len().max(1))).min(bytes.len());
                bytes.splice(start..end, token.iter().copied());
            }
            _ => {
                let i = at(rng, bytes);
                bytes.insert(i, BYTES[rng.usize(..BYTES.len())]);
            }
        }
    }
}

/// Some random digit run of `bytes`, as a range.
fn digit_run(rng: &mut fastrand::Rng, bytes: &[u8]) -> Option<(usize, usize)> {
    if bytes.is_empty() {
        return None;
    }
    let from = rng.usize(..bytes.len());
    let start = from + bytes[from..].iter().position(u8::is_ascii_digit)?;
    let end = start
        + bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(bytes.len() - start);
    Some((start, end))
}

fn arbitrary_bytes(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = match rng.u8(..8) {
        0 => 0,
        1..=5 => rng.usize(1..64),
        6 => rng.usize(64..1024),
        _ => rng.usize(1024..8192),
    };
    if rng.bool() {
        (0..len).map(|_| rng.u8(..)).collect()
    } else {
        // Printable ASCII with some structure bytes: more likely to get past a tokenizer.
        (0..len).map(|_| rng.u8(0x20..0x7f)).collect()
    }
}

/// The seed of one case: the base seed, the target's name and the index mixed (SplitMix64),
/// so targets do not share cases and any single case can be rebuilt alone.
fn case_seed(seed: u64, target: &str, index: u64) -> u64 {
    let mut h = seed;
    for b in target.bytes() {
        h = splitmix(h ^ u64::from(b));
    }
    splitmix(h ^ index)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `bytes` for a report: printable ASCII as is, everything else `\xNN`, cut at `max` bytes.
pub fn escape(bytes: &[u8], max: usize) -> String {
    let mut out: String = bytes
        .iter()
        .take(max)
        .flat_map(|&b| std::ascii::escape_default(b).map(char::from))
        .collect();
    if bytes.len() > max {
        out.push_str(&format!("… ({} more bytes)", bytes.len() - max));
    }
    out
}

/// The message of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// Checks that an error a user would see is clear: not empty, and not an amplification of its
/// input (an error may quote what it refuses, escaped, once or twice — the field and the
/// whole — but not grow past a short paragraph plus those quotes). `names` must appear in it (the file or field it is about).
///
/// # Errors
/// Says what is wrong with the message.
pub fn clear_error(message: &str, input_len: usize, names: &[&str]) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("an empty error message".to_owned());
    }
    // `{:?}` escaping turns one byte into at most 6 characters (`\u{7f}`); two quotes.
    let limit = 1024 + 12 * input_len;
    if message.len() > limit {
        return Err(format!(
            "an error message of {} bytes for {input_len} bytes of input: {}",
            message.len(),
            escape(message.as_bytes(), 300)
        ));
    }
    for name in names {
        if !message.contains(name) {
            return Err(format!("the error does not name {name:?}: {message}"));
        }
    }
    Ok(())
}
