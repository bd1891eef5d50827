//! The verdict line: `{"case":…,"ok":bool,"errno":…,"detail":…,"errnos":[…],"count":…}`.
//!
//! `ok` says whether the attempt *succeeded*: an escape that works, or a harmless twin that
//! works. `errno` names why it failed (`null` when nothing failed with an errno, e.g. a setuid
//! program that ran but gained nothing). `errnos` lists every distinct errno of a probe that
//! makes several attempts; `count` is how many operations succeeded, where that matters.

use std::io;

use crate::sys::error_name;

/// What one attempt came to.
#[derive(Debug, Default)]
pub struct Report {
    pub ok: bool,
    pub errno: Option<String>,
    pub detail: String,
    pub errnos: Vec<String>,
    pub count: Option<u64>,
}

impl Report {
    /// The attempt succeeded.
    pub fn done(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
            ..Self::default()
        }
    }

    /// The attempt failed with `error`.
    pub fn failed(error: &io::Error, detail: impl Into<String>) -> Self {
        let name = error_name(error);
        Self {
            ok: false,
            errno: Some(name.clone()),
            errnos: vec![name],
            detail: detail.into(),
            count: None,
        }
    }

    /// The attempt ran but gained nothing, with no errno to show for it.
    pub fn held(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
            ..Self::default()
        }
    }

    /// `done` or `failed` from a result.
    pub fn from_result(result: io::Result<()>, what: &str) -> Self {
        match result {
            Ok(()) => Self::done(what),
            Err(e) => Self::failed(&e, format!("{what}: {e}")),
        }
    }

    #[must_use]
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Record another attempt's errno in `errnos` (kept distinct, in order of appearance).
    pub fn note(&mut self, error: &io::Error) {
        let name = error_name(error);
        if !self.errnos.contains(&name) {
            self.errnos.push(name);
        }
    }

    pub fn to_json(&self, case: &str) -> String {
        let errno = self
            .errno
            .as_deref()
            .map_or_else(|| "null".to_owned(), json_string);
        let errnos: Vec<String> = self.errnos.iter().map(|e| json_string(e)).collect();
        let count = self
            .count
            .map_or_else(|| "null".to_owned(), |c| c.to_string());
        format!(
            "{{\"case\":{},\"ok\":{},\"errno\":{errno},\"detail\":{},\"errnos\":[{}],\"count\":{count}}}",
            json_string(case),
            self.ok,
            json_string(&self.detail),
            errnos.join(",")
        )
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
