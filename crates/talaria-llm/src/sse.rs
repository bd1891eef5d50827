//! Server-sent events in, one assembled assistant message out.
//!
//! [`SseParser`] turns bytes into event payloads per the SSE rules that matter for chat
//! streams: `data:` lines (several per event, joined with `\n`), `:` comments, LF/CRLF/CR line
//! endings, and network chunks that split lines, CRLF pairs or UTF-8 characters anywhere.
//! [`StreamAccumulator`] applies `chat.completion.chunk` payloads: it concatenates text deltas
//! and tool-call fragments (keyed by their `index`), reports progress as [`StreamEvent`]s, and
//! refuses to call a stream complete unless it saw a finish reason or `[DONE]`.

use std::collections::HashMap;

use talaria_core::{Message, ToolCall, Usage};

use crate::error::{LlmError, classify_status, snippet};
use crate::wire::{WireChunk, fallback_call_id};
use crate::{ChatResponse, StreamEvent};

/// Splits an SSE byte stream into the `data` payload of each event.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the current, unterminated line. Kept as bytes so a UTF-8 character split
    /// across network chunks is decoded whole.
    line: Vec<u8>,
    /// `data` lines of the current event, each followed by `\n`.
    data: String,
    has_data: bool,
    /// The previous byte was a CR, so an LF right after it ends nothing new.
    after_cr: bool,
    seen_first_line: bool,
}

impl SseParser {
    /// Consumes `bytes`, appending the payload of every event they complete to `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                _ => self.line.push(b),
            }
        }
    }

    /// Ends the stream: a final line without a terminator, and an event without its closing
    /// blank line, are still delivered. (Strict SSE drops them; being lenient lets the caller
    /// see a truncated payload and say so.)
    pub(crate) fn finish(&mut self, out: &mut Vec<String>) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        let raw = std::mem::take(&mut self.line);
        let mut line = String::from_utf8_lossy(&raw).into_owned();
        if !self.seen_first_line {
            self.seen_first_line = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned();
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return; // comment, often a keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        // `event`, `id` and `retry` carry nothing chat streams need.
        if field == "data" {
            self.data.push_str(value);
            self.data.push('\n');
            self.has_data = true;
        }
    }

    fn dispatch(&mut self, out: &mut Vec<String>) {
        if self.has_data {
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the `\n` after the last data line
            out.push(data);
            self.has_data = false;
        }
    }
}

/// Whether the stream said it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    More,
    Done,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
    announced: bool,
}

/// Assembles a streamed answer from `chat.completion.chunk` payloads.
#[derive(Debug, Default)]
pub(crate) struct StreamAccumulator {
    text: String,
    /// Calls in order of first appearance.
    calls: Vec<PartialCall>,
    /// The server's `index` of a call → its position in `calls`.
    slots: HashMap<usize, usize>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
    events: usize,
}

impl StreamAccumulator {
    /// Applies one event payload, reporting text and new tool calls to `emit`.
    ///
    /// # Errors
    /// [`LlmError::InvalidResponse`] for a payload that is not a chunk, or the classified error
    /// when the server reports one mid-stream.
    pub(crate) fn apply(
        &mut self,
        payload: &str,
        emit: &mut dyn FnMut(StreamEvent),
    ) -> Result<Progress, LlmError> {
        let payload = payload.trim();
        if payload == "[DONE]" {
            self.done = true;
            return Ok(Progress::Done);
        }
        if payload.is_empty() {
            return Ok(Progress::More);
        }
        self.events += 1;
        let chunk: WireChunk =
            serde_json::from_str(payload).map_err(|e| LlmError::InvalidResponse {
                detail: format!(
                    "stream event is not a chat.completion.chunk ({e}): {}",
                    snippet(payload)
                ),
            })?;
        if let Some(error) = chunk.error {
            return Err(stream_error(&error));
        }
        if self.model.is_none() {
            self.model = chunk.model.filter(|m| !m.is_empty());
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.to_usage());
        }
        // We ask for one choice; a server that sends more gets its first one used.
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    self.text.push_str(&text);
                    emit(StreamEvent::TextDelta(text));
                }
                for (position, fragment) in
                    delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    let wire_index = fragment.index.unwrap_or(position);
                    let id = fragment.id.filter(|id| !id.is_empty());
                    let slot = self.slot_for(wire_index, id.as_deref());
                    let call = &mut self.calls[slot];
                    if let Some(id) = id
                        && call.id.is_empty()
                    {
                        call.id = id;
                    }
                    if let Some(function) = fragment.function {
                        if let Some(name) = function.name.as_deref().filter(|n| !n.is_empty())
                            && call.name.is_empty()
                        {
                            call.name = name.to_owned();
                        }
                        call.arguments.push_str(&function.arguments());
                    }
                    if !call.announced && !call.name.is_empty() {
                        call.announced = true;
                        emit(StreamEvent::ToolCallStarted {
                            index: slot,
                            id: call.id.clone(),
                            name: call.name.clone(),
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish_reason = Some(reason);
            }
        }
        Ok(Progress::More)
    }

    /// The position in `calls` for a fragment with the server's `wire_index`. A fragment that
    /// brings a different id than the call already at that index starts a new call: some
    /// servers number every parallel call 0.
    fn slot_for(&mut self, wire_index: usize, id: Option<&str>) -> usize {
        if let Some(&slot) = self.slots.get(&wire_index) {
            let existing = &self.calls[slot].id;
            let new_call = matches!(id, Some(id) if !existing.is_empty() && existing != id);
            if !new_call {
                return slot;
            }
        }
        self.calls.push(PartialCall::default());
        let slot = self.calls.len() - 1;
        self.slots.insert(wire_index, slot);
        slot
    }

    /// Whether the server said the answer is complete (finish reason or `[DONE]`).
    pub(crate) fn is_complete(&self) -> bool {
        self.done || self.finish_reason.is_some()
    }

    /// The assembled answer.
    ///
    /// # Errors
    /// [`LlmError::Truncated`] when the stream ended before the server said it was complete.
    pub(crate) fn finish(self, requested_model: &str) -> Result<ChatResponse, LlmError> {
        if !self.is_complete() {
            return Err(LlmError::Truncated {
                detail: format!(
                    "the stream ended without a finish reason or [DONE] after {} event(s) and {} \
                     character(s) of text",
                    self.events,
                    self.text.chars().count()
                ),
            });
        }
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| ToolCall {
                id: if c.id.is_empty() {
                    fallback_call_id(i)
                } else {
                    c.id
                },
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        Ok(ChatResponse {
            message: Message::assistant(self.text, tool_calls),
            usage: self.usage.unwrap_or_default(),
            finish_reason: self.finish_reason,
            model: self.model.unwrap_or_else(|| requested_model.to_owned()),
            provider: None,
        })
    }
}

/// An `{"error": ..}` event. Servers put an HTTP-like status in `code` when they have one.
fn stream_error(error: &serde_json::Value) -> LlmError {
    let body = serde_json::json!({ "error": error }).to_string();
    let status = error
        .get("code")
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    match classify_status(status.unwrap_or(400), &body, "the stream", None, None) {
        e @ LlmError::ContextOverflow { .. } => e,
        LlmError::RateLimited { message, .. }
        | LlmError::Server { message, .. }
        | LlmError::Api { message, .. }
        | LlmError::NotFound { message, .. }
        | LlmError::Auth { message, .. }
        | LlmError::ModelNotFound { message, .. } => LlmError::StreamAborted { message },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            parser.feed(c, &mut out);
        }
        parser.finish(&mut out);
        out
    }

    #[test]
    fn parses_events_comments_and_multiline_data() {
        let stream = b": keep-alive\n\ndata: one\n\nevent: message\nid: 7\ndata: two\ndata:three\n\nretry: 10\ndata: [DONE]\n\n";
        assert_eq!(parse_all(&[stream]), vec!["one", "two\nthree", "[DONE]"]);
    }

    #[test]
    fn every_split_point_and_line_ending_gives_the_same_events() {
        let lf = "data: {\"a\":\"héllo ✓\"}\n\n: ping\n\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        let crlf = lf.replace('\n', "\r\n");
        let cr = lf.replace('\n', "\r");
        let expected = vec!["{\"a\":\"héllo ✓\"}", "x\ny", "[DONE]"];
        for text in [lf.to_owned(), crlf, cr] {
            let bytes = text.as_bytes();
            for split in 0..=bytes.len() {
                assert_eq!(
                    parse_all(&[&bytes[..split], &bytes[split..]]),
                    expected,
                    "split at {split} of {text:?}"
                );
            }
            // One byte at a time.
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(parse_all(&singles), expected);
        }
    }

    #[test]
    fn unterminated_final_event_is_still_delivered() {
        assert_eq!(parse_all(&[b"data: {\"partial"]), vec!["{\"partial"]);
        assert_eq!(parse_all(&[b"data: a\n"]), vec!["a"]);
        assert!(parse_all(&[b": only a comment"]).is_empty());
    }

    fn run(payloads: &[&str]) -> (Result<ChatResponse, LlmError>, Vec<StreamEvent>) {
        let mut acc = StreamAccumulator::default();
        let mut events = Vec::new();
        for p in payloads {
            match acc.apply(p, &mut |e| events.push(e)) {
                Ok(Progress::Done) => break,
                Ok(Progress::More) => {}
                Err(e) => return (Err(e), events),
            }
        }
        (acc.finish("requested"), events)
    }

    #[test]
    fn text_deltas_accumulate() {
        let (resp, events) = run(&[
            r#"{"model":"m1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#,
            "[DONE]",
        ]);
        let resp = resp.unwrap();
        assert_eq!(resp.message.content, "Hello");
        assert_eq!(resp.finish_reason.as_deref(), Some("stop"));
        assert_eq!(resp.model, "m1");
        assert_eq!(resp.usage.prompt_tokens, 5);
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta("Hel".into()),
                StreamEvent::TextDelta("lo".into())
            ]
        );
    }

    #[test]
    fn interleaved_parallel_tool_calls_are_assembled_by_index() {
        let (resp, events) = run(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"read_file","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","type":"function","function":{"name":"terminal","arguments":"{\"cmd"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\":\"ls\"}"}},{"index":0,"function":{"arguments":"\"a.txt\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            "[DONE]",
        ]);
        let resp = resp.unwrap();
        let calls = &resp.message.tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("a", "read_file")
        );
        assert_eq!(calls[0].arguments, r#"{"path":"a.txt"}"#);
        assert_eq!(
            (calls[1].id.as_str(), calls[1].name.as_str()),
            ("b", "terminal")
        );
        assert_eq!(calls[1].arguments, r#"{"cmd":"ls"}"#);
        assert_eq!(resp.message.content, "");
        assert_eq!(
            resp.usage,
            Usage {
                prompt_tokens: 9,
                completion_tokens: 3,
                cached_tokens: 4,
                cache_write_tokens: 0,
            }
        );
        assert_eq!(
            events,
            vec![
                StreamEvent::ToolCallStarted {
                    index: 0,
                    id: "a".into(),
                    name: "read_file".into()
                },
                StreamEvent::ToolCallStarted {
                    index: 1,
                    id: "b".into(),
                    name: "terminal".into()
                },
            ]
        );
    }

    #[test]
    fn calls_that_all_claim_index_zero_are_kept_apart() {
        let (resp, _) = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"x","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"b","function":{"name":"y","arguments":"{"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]},"finish_reason":"tool_calls"}]}"#,
        ]);
        let calls = resp.unwrap().message.tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].name.as_str(), calls[0].arguments.as_str()),
            ("x", "{}")
        );
        assert_eq!(
            (calls[1].name.as_str(), calls[1].arguments.as_str()),
            ("y", "{}")
        );
    }

    #[test]
    fn missing_ids_get_stand_ins_and_usage_may_ride_on_the_last_choice() {
        let (resp, _) = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"x","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        ]);
        let resp = resp.unwrap();
        assert_eq!(resp.message.tool_calls[0].id, "call_0");
        assert_eq!(resp.usage.total(), 2);
        // No [DONE], but a finish reason: complete. The requested model stands in.
        assert_eq!(resp.model, "requested");
    }

    #[test]
    fn stream_without_finish_or_done_is_truncated() {
        let (resp, events) = run(&[r#"{"choices":[{"index":0,"delta":{"content":"par"}}]}"#]);
        assert!(matches!(resp, Err(LlmError::Truncated { .. })), "{resp:?}");
        assert_eq!(events.len(), 1);
        // [DONE] alone counts as complete.
        assert!(run(&["[DONE]"]).0.is_ok());
    }

    #[test]
    fn garbage_and_error_events_are_reported() {
        let (resp, _) = run(&["<html>oops</html>"]);
        let err = resp.unwrap_err();
        assert!(matches!(err, LlmError::InvalidResponse { .. }));
        assert!(err.to_string().contains("<html>oops</html>"));

        let (resp, _) = run(&[r#"{"error":{"message":"model overloaded","type":"server_error"}}"#]);
        let err = resp.unwrap_err();
        assert!(matches!(err, LlmError::StreamAborted { .. }), "{err:?}");
        assert!(err.to_string().contains("model overloaded"));

        let (resp, _) = run(&[
            r#"{"error":{"message":"the request exceeds the available context size","code":400}}"#,
        ]);
        assert!(matches!(resp, Err(LlmError::ContextOverflow { .. })));
    }
}
