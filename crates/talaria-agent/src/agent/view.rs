//! The context view: what of a session is sent to the model. When the estimate passes
//! `agent.compress_at_percent` of the context window, old tool outputs are trimmed and then the
//! middle is summarized (see [`crate::compress`]); the stored messages never change.

use talaria_core::{Message, Role, UsageTask};
use talaria_llm::ChatRequest;

use super::{Agent, AgentError, Session, TurnEvent};
use crate::compress;

/// The compressed view of a session: `summary` stands for the messages from the protected head
/// up to (not including) index `upto`.
#[derive(Debug, Clone)]
pub(super) struct Compressed {
    pub(super) upto: usize,
    pub(super) summary: Message,
}

impl Agent {
    /// The messages to send: the compressed view when there is one.
    fn view(session: &Session) -> Vec<Message> {
        let all: Vec<Message> = session.messages().cloned().collect();
        match &session.compressed {
            Some(c) if c.upto <= all.len() => {
                let head = all
                    .iter()
                    .position(|m| m.role == Role::User)
                    .map_or(1, |i| i + 1)
                    .min(c.upto);
                let mut view = all[..head].to_vec();
                view.push(c.summary.clone());
                view.extend_from_slice(&all[c.upto..]);
                view
            }
            _ => all,
        }
    }

    /// The view for the next request, compressed first when it passes the threshold (or when
    /// `force`). If summarizing fails, the view is sent as it was and the user is told.
    pub(super) async fn prepare_view(
        &self,
        session: &mut Session,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
        force: bool,
    ) -> Result<Vec<Message>, AgentError> {
        let tools = self.tools.specs();
        let threshold =
            self.context_window(session) * u64::from(self.settings.compress_at_percent) / 100;
        let keep_last = self.settings.compress_keep_last;
        let mut view = Self::view(session);
        if !force && compress::estimate_tokens(&view, tools) <= threshold {
            return Ok(view);
        }
        let trimmed = compress::trim_tool_outputs(&mut view, keep_last);
        let estimate = compress::estimate_tokens(&view, tools);
        if !force && estimate <= threshold {
            tracing::debug!(session = %session.id, trimmed, estimate, "old tool outputs trimmed");
            return Ok(view);
        }
        let Some(range) = compress::middle(&view, keep_last) else {
            return Ok(view);
        };
        // Which stored message each view entry is (`None`: an earlier summary).
        let index_of = self.view_indices(session);
        let upto = index_of
            .get(range.end)
            .copied()
            .flatten()
            .unwrap_or(session.len());
        let request = ChatRequest {
            model: session.model.clone(),
            messages: vec![
                Message::system(compress::SUMMARIZER_PROMPT),
                Message::user(compress::render_for_summary(&view[range.clone()])),
            ],
            tools: Vec::new(),
            stream: false,
            max_tokens: None,
            temperature: None,
        };
        let provider = session
            .provider
            .as_ref()
            .map_or_else(|| self.provider.clone(), |(_, p)| p.clone());
        let replaced = range.len();
        match provider.chat(&request, &mut |_| {}).await {
            Ok(response) if !response.message.content.trim().is_empty() => {
                let call =
                    self.pricing(session)
                        .call(UsageTask::Compression, &request.model, &response);
                self.store.record_model_call(&session.id, call).await?;
                session.usage.add(&response.usage);
                let summary =
                    compress::summary_message(&response.message.content, &view[range.clone()]);
                tracing::info!(session = %session.id, replaced, upto, "conversation compressed");
                on_event(TurnEvent::Notice(format!(
                    "context compressed: {replaced} earlier messages summarized (all kept in the session store)"
                )));
                session.compressed = Some(Compressed { upto, summary });
                let mut view = Self::view(session);
                compress::trim_tool_outputs(&mut view, keep_last);
                Ok(view)
            }
            other => {
                let why = match other {
                    Ok(_) => "the summary came back empty".to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(session = %session.id, error = %why, "compression failed; sending the conversation uncompressed");
                on_event(TurnEvent::Notice(format!(
                    "context compression failed ({why}); nothing was dropped, the full conversation is sent and compression is retried next turn"
                )));
                Ok(view)
            }
        }
    }

    /// For each entry of [`Self::view`], the index of the session message it is.
    fn view_indices(&self, session: &Session) -> Vec<Option<usize>> {
        let len = session.len();
        match &session.compressed {
            Some(c) if c.upto <= len => {
                let head = session
                    .messages()
                    .position(|m| m.role == Role::User)
                    .map_or(1, |i| i + 1)
                    .min(c.upto);
                (0..head)
                    .map(Some)
                    .chain(std::iter::once(None))
                    .chain((c.upto..len).map(Some))
                    .collect()
            }
            _ => (0..len).map(Some).collect(),
        }
    }

    /// Compress now (`/compress`, or after a context overflow). Returns whether a summary was
    /// made; when summarizing fails the user is told and nothing changes.
    ///
    /// # Errors
    /// A store error.
    pub async fn compress_now(
        &self,
        session: &mut Session,
        on_event: &(dyn Fn(TurnEvent) + Send + Sync),
    ) -> Result<bool, AgentError> {
        let before = session.compressed.as_ref().map(|c| c.upto);
        self.prepare_view(session, on_event, true).await?;
        Ok(session.compressed.as_ref().map(|c| c.upto) != before)
    }
}
