//! The HTTP API: OpenAI-compatible chat completions (plain and streamed), the model list,
//! request status for clients that lost their connection, deliveries for `api:` targets, and
//! a health check.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <key>`. A request is in the inbox
//! before the agent sees it; the handlers only watch the request's driver (see
//! [`crate::turn`]), so a client that goes away never cancels or duplicates a turn.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use talaria_bus::names;
use tokio::sync::watch;

use crate::keys::{ApiKeys, KeyId};
use crate::limits::KeyLimits;
use crate::openai::{ApiError, ChatRequest, Completion};
use crate::platforms::{self, Person, Source};
use crate::server::BodyTimeout;
use crate::store::{
    Accepted, FailureCode, NewRequest, Outcome, RequestState, Store, StoredFailure,
};
use crate::turn::{GaveUp, TurnProgress, TurnResult, Turns};

/// Continues a session; also sent back on every completion.
pub const SESSION_HEADER: &str = "x-talaria-session";
/// The request id of a completion, for `GET /v1/requests/{id}`.
pub const REQUEST_HEADER: &str = "x-talaria-request";
/// The model name the gateway always lists.
pub const DEFAULT_MODEL: &str = "talaria";

/// What the handlers share.
#[derive(Debug)]
pub struct Api {
    pub keys: ApiKeys,
    pub store: Store,
    pub turns: Arc<Turns>,
    pub dbus: zbus::fdo::DBusProxy<'static>,
    /// Names listed by `/v1/models`; a request naming one of them uses the agent's default
    /// model, any other name is passed to the agent as its `model` option.
    pub model_names: Vec<String>,
    pub body_limit: usize,
    /// Requests per minute and running turns, per API key.
    pub key_limits: Arc<KeyLimits>,
}

/// The routes, ready to serve.
pub fn router(api: Arc<Api>) -> Router {
    let limit = api.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/requests/{request_id}", get(request_status))
        .route("/v1/deliveries", get(deliveries))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

/// The API key a request authenticated with.
#[derive(Debug)]
pub struct Caller(pub KeyId);

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing API key: send `Authorization: Bearer <key>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(id) = token.and_then(|token| api.keys.verify(token)) else {
            return Err(ApiError::unauthorized("invalid API key"));
        };
        api.key_limits.check_rate(&id).map_err(ApiError::limited)?;
        Ok(Self(id))
    }
}

/// Short printable names (model names in paths): safe to log and to put in an `a{sv}` option.
/// Request ids and session keys are checked by [`talaria_bus::ids`], the agent's own rules.
fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| {
        tracing::error!(%error, "no randomness from the OS");
        ApiError::server(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no_randomness",
            "the gateway could not generate an id",
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(|v| Some(v.trim())).map_err(|_| {
            ApiError::bad_request(
                "invalid_header",
                format!("header {name} is not printable ASCII"),
            )
        }),
    }
}

fn body_error(rejection: &BytesRejection, limit: usize) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large(limit);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "body_timeout",
                timeout.to_string(),
            );
        }
        source = error.source();
    }
    ApiError::new(
        status,
        "invalid_request_error",
        "unreadable_body",
        format!("cannot read the request body: {}", rejection.body_text()),
    )
}

/// Adds the session and request headers to any response about a completion.
fn with_ids(mut response: Response, completion: &Completion) -> Response {
    for (name, value) in [
        (SESSION_HEADER, &completion.session_key),
        (REQUEST_HEADER, &completion.request_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

fn failure_error(failure: &StoredFailure, completion: &Completion) -> ApiError {
    match failure.code {
        FailureCode::UnknownSession => ApiError::not_found(
            "unknown_session",
            format!(
                "session {} is unknown to the agent: start a new one by leaving out the {SESSION_HEADER} header",
                completion.session_key
            ),
        ),
        FailureCode::AccessDenied => ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "access_denied",
            format!("the agent refused the request: {}", failure.message),
        ),
        FailureCode::InvalidRequest => ApiError::bad_request(
            "rejected_by_agent",
            format!("the agent rejected the request: {}", failure.message),
        ),
        FailureCode::Unsendable => ApiError::bad_request(
            "unsendable_request",
            format!(
                "the gateway cannot pass this request to the agent: {}",
                failure.message
            ),
        ),
        FailureCode::AgentError => ApiError::server(
            StatusCode::BAD_GATEWAY,
            "agent_error",
            match &failure.kind {
                Some(kind) => format!("the turn failed ({kind}): {}", failure.message),
                None => format!("the turn failed: {}", failure.message),
            },
        ),
    }
}

fn gave_up_error(why: &GaveUp, completion: &Completion) -> ApiError {
    let id = &completion.request_id;
    match why {
        GaveUp::Unavailable { waited, last_error } => ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            format!(
                "the agent did not take the request within {}s ({last_error}); request {id} stays queued and runs when the agent is back: GET /v1/requests/{id}",
                waited.as_secs()
            ),
        ),
        GaveUp::TimedOut { waited } => ApiError::server(
            StatusCode::GATEWAY_TIMEOUT,
            "turn_timeout",
            format!(
                "no answer within {}s; the agent is still working on request {id}: GET /v1/requests/{id}",
                waited.as_secs()
            ),
        ),
        GaveUp::Storage(error) => {
            tracing::error!(request_id = id, error, "cannot record an outcome");
            ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                format!(
                    "the gateway could not record the answer to request {id}; it will be fetched again: GET /v1/requests/{id}"
                ),
            )
        }
        GaveUp::Stopping(why) => ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway_stopping",
            format!("{why}; request {id} stays queued: GET /v1/requests/{id}"),
        ),
    }
}

fn result_error(result: &TurnResult, completion: &Completion) -> Option<ApiError> {
    match result {
        TurnResult::Done(Outcome::Answered(_)) => None,
        TurnResult::Done(Outcome::Failed(failure)) => Some(failure_error(failure, completion)),
        TurnResult::GaveUp(why) => Some(gave_up_error(why, completion)),
    }
}

fn stopped(completion: &Completion) -> ApiError {
    gave_up_error(
        &GaveUp::Stopping("the gateway is stopping".into()),
        completion,
    )
}

async fn healthz(State(api): State<Arc<Api>>) -> Json<Value> {
    let has_owner = match zbus::names::BusName::try_from(names::AGENT) {
        Ok(name) => matches!(
            tokio::time::timeout(Duration::from_secs(2), api.dbus.name_has_owner(name)).await,
            Ok(Ok(true))
        ),
        Err(_) => false,
    };
    Json(json!({
        "status": "ok",
        "agent": {"name": names::AGENT, "has_owner": has_owner},
    }))
}

async fn models(State(api): State<Arc<Api>>, _caller: Caller) -> Json<Value> {
    let data: Vec<Value> = api
        .model_names
        .iter()
        .map(|name| json!({"id": name, "object": "model", "created": 0, "owned_by": "talaria"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn chat_completions(
    State(api): State<Arc<Api>>,
    Caller(key): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| body_error(&rejection, api.body_limit))?;
    let request: ChatRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "invalid_request_body",
            format!("the body is not a valid chat completion request: {error}"),
        )
    })?;
    let text = request.user_text()?;
    let stream = request.stream.unwrap_or(false);
    let model = request
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL.into());
    let agent_model = (!api.model_names.contains(&model)).then(|| model.clone());
    if agent_model
        .as_deref()
        .is_some_and(|m| m.len() > 256 || m.contains(char::is_control))
    {
        return Err(ApiError::bad_request(
            "invalid_model",
            "`model` must be a model name of at most 256 characters, without control characters",
        ));
    }

    let idempotency_key = header_str(&headers, "idempotency-key")?
        .map(|k| {
            if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
                ))
            } else {
                Ok(k.to_owned())
            }
        })
        .transpose()?;
    let continued = header_str(&headers, SESSION_HEADER)?.map(str::to_owned);
    let (session_key, create_session) = match &continued {
        Some(session) => {
            // The agent's own rule for session keys; the store lookup below then refuses any
            // key this gateway did not hand to this API key.
            if talaria_bus::ids::check_session_key(session).is_err() {
                return Err(ApiError::bad_request(
                    "invalid_session",
                    format!("{SESSION_HEADER} must be a session key this gateway returned"),
                ));
            }
            let owner = api.store.session_owner(session).await?;
            if owner.as_deref() != Some(key.as_str()) {
                return Err(ApiError::not_found(
                    "unknown_session",
                    format!(
                        "no session {session} for this API key: start a new one by leaving out the {SESSION_HEADER} header"
                    ),
                ));
            }
            (session.clone(), false)
        }
        None => (format!("api:{}", random_hex()?), true),
    };

    // A new turn takes one of the key's turn slots, held by the turn's driver until it ends;
    // a retry of a request the key already made joins that request and needs none.
    let mut slot = match api.key_limits.reserve_turn(&key) {
        Ok(slot) => Some(slot),
        Err(refusal) => {
            let known = match &idempotency_key {
                Some(idem) => api
                    .store
                    .idempotent_request(key.as_str(), idem)
                    .await?
                    .is_some(),
                None => false,
            };
            if !known {
                return Err(ApiError::limited(refusal));
            }
            None
        }
    };
    let accepted = api
        .store
        .accept(NewRequest {
            request_id: format!("req-{}", random_hex()?),
            // The HTTP API's person is its API key; its source, the session.
            person: Person {
                platform: platforms::api::NAME.to_owned(),
                user: key.as_str().to_owned(),
            },
            source: Source {
                platform: platforms::api::NAME.to_owned(),
                chat: session_key.clone(),
            },
            idempotency_key: idempotency_key.clone(),
            session_key,
            create_session,
            text: text.clone(),
            model: agent_model,
        })
        .await?;
    let (row, stored) = match accepted {
        Accepted::New(row) => {
            tracing::info!(request_id = row.request_id, session = row.session_key, key = %key, stream, "accepted");
            (row, None)
        }
        Accepted::Existing(record) => {
            let same_session = continued
                .as_ref()
                .is_none_or(|session| *session == record.row.session_key);
            if record.row.text != text || !same_session {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request_error",
                    "idempotency_key_reused",
                    format!(
                        "Idempotency-Key {} was already used for a different request ({})",
                        idempotency_key.unwrap_or_default(),
                        record.row.request_id
                    ),
                ));
            }
            tracing::info!(
                request_id = record.row.request_id,
                state = record.row.state.as_str(),
                "retry of an accepted request"
            );
            (record.row, record.outcome)
        }
    };
    let completion = Completion {
        request_id: row.request_id.clone(),
        session_key: row.session_key.clone(),
        model,
        created: row.created_at_ms / 1000,
    };
    let progress = match stored {
        Some(outcome) => {
            let text = match &outcome {
                Outcome::Answered(answer) => answer.text.clone(),
                Outcome::Failed(_) => String::new(),
            };
            watch::channel(TurnProgress {
                accepted: true,
                text,
                finished: Some(TurnResult::Done(outcome)),
            })
            .1
        }
        None => api.turns.attach_or_start(row, slot.take()),
    };
    let response = if stream {
        stream_reply(api, completion.clone(), progress).await
    } else {
        whole_reply(api, completion.clone(), progress).await
    };
    Ok(with_ids(
        response.unwrap_or_else(IntoResponse::into_response),
        &completion,
    ))
}

async fn whole_reply(
    api: Arc<Api>,
    completion: Completion,
    mut progress: watch::Receiver<TurnProgress>,
) -> Result<Response, ApiError> {
    let result = progress
        .wait_for(|p| p.finished.is_some())
        .await
        .ok()
        .and_then(|p| p.finished.clone())
        .ok_or_else(|| stopped(&completion))?;
    if let Some(error) = result_error(&result, &completion) {
        return Err(error);
    }
    let TurnResult::Done(Outcome::Answered(answer)) = result else {
        return Err(stopped(&completion));
    };
    api.store.mark_delivered(&completion.request_id).await?;
    Ok(Json(completion.object(&answer.text, &answer.finish_reason)).into_response())
}

async fn stream_reply(
    api: Arc<Api>,
    completion: Completion,
    mut progress: watch::Receiver<TurnProgress>,
) -> Result<Response, ApiError> {
    // Until the agent takes the request, failures are still plain HTTP errors.
    let early = progress
        .wait_for(|p| p.accepted || p.finished.is_some())
        .await
        .map_err(|_| stopped(&completion))?
        .finished
        .clone();
    if let Some(error) = early.and_then(|result| result_error(&result, &completion)) {
        return Err(error);
    }
    let state = SseState {
        progress,
        sent: 0,
        phase: Phase::Role,
        completion,
        store: api.store.clone(),
    };
    let events = futures_util::stream::unfold(state, next_event);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

enum Phase {
    Role,
    Content,
    Done,
    End,
}

struct SseState {
    progress: watch::Receiver<TurnProgress>,
    /// Bytes of the progress text already sent.
    sent: usize,
    phase: Phase,
    completion: Completion,
    store: Store,
}

enum Step {
    Delta(String),
    Finished(TurnResult),
    Wait,
}

fn data(value: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(value.to_string()))
}

async fn next_event(mut s: SseState) -> Option<(Result<Event, Infallible>, SseState)> {
    loop {
        match s.phase {
            Phase::Role => {
                s.phase = Phase::Content;
                let chunk = s
                    .completion
                    .chunk(json!({"role": "assistant", "content": ""}), None);
                return Some((data(&chunk), s));
            }
            Phase::Content => {
                let step = {
                    let p = s.progress.borrow_and_update();
                    if p.text.len() > s.sent {
                        let delta = p.text.get(s.sent..).unwrap_or_default().to_owned();
                        s.sent = p.text.len();
                        Step::Delta(delta)
                    } else if let Some(finished) = &p.finished {
                        Step::Finished(finished.clone())
                    } else {
                        Step::Wait
                    }
                };
                match step {
                    Step::Delta(delta) => {
                        let chunk = s.completion.chunk(json!({"content": delta}), None);
                        return Some((data(&chunk), s));
                    }
                    Step::Finished(TurnResult::Done(Outcome::Answered(answer))) => {
                        s.phase = Phase::Done;
                        let store = s.store.clone();
                        let request_id = s.completion.request_id.clone();
                        tokio::spawn(async move {
                            if let Err(error) = store.mark_delivered(&request_id).await {
                                tracing::warn!(request_id, %error, "cannot mark the answer delivered");
                            }
                        });
                        let chunk = s
                            .completion
                            .chunk(json!({}), Some(answer.finish_reason.as_str()));
                        return Some((data(&chunk), s));
                    }
                    Step::Finished(other) => {
                        s.phase = Phase::End;
                        let error = result_error(&other, &s.completion)
                            .unwrap_or_else(|| stopped(&s.completion));
                        return Some((data(&error.body()), s));
                    }
                    Step::Wait => {
                        if s.progress.changed().await.is_err() {
                            s.phase = Phase::End;
                            let error = stopped(&s.completion);
                            return Some((data(&error.body()), s));
                        }
                    }
                }
            }
            Phase::Done => {
                s.phase = Phase::End;
                return Some((Ok(Event::default().data("[DONE]")), s));
            }
            Phase::End => return None,
        }
    }
}

async fn request_status(
    State(api): State<Arc<Api>>,
    Caller(key): Caller,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "unknown_request",
            format!("no request {request_id} for this API key"),
        )
    };
    if talaria_bus::ids::check_request_id(&request_id).is_err() {
        return Err(not_found());
    }
    let record = api
        .store
        .request(&request_id)
        .await?
        .filter(|record| {
            record.row.person.platform == platforms::api::NAME
                && record.row.person.user == key.as_str()
        })
        .ok_or_else(not_found)?;
    let (answer, finish_reason, error) = match &record.outcome {
        Some(Outcome::Answered(answer)) => (
            Some(answer.text.clone()),
            Some(answer.finish_reason.clone()),
            None,
        ),
        Some(Outcome::Failed(failure)) => (
            None,
            None,
            Some(json!({
                "code": failure.code.as_str(),
                "kind": failure.kind,
                "message": failure.message,
            })),
        ),
        None => (None, None, None),
    };
    if record.row.state == RequestState::Answered && record.delivered_at_ms.is_none() {
        api.store.mark_delivered(&request_id).await?;
    }
    Ok(Json(json!({
        "id": record.row.request_id,
        "object": "talaria.request",
        "completion_id": format!("chatcmpl-{}", record.row.request_id),
        "state": record.row.state.as_str(),
        "in_flight": api.turns.is_live(&request_id),
        "session": record.row.session_key,
        "created": record.row.created_at_ms / 1000,
        "answered_at": record.answered_at_ms.map(|ms| ms / 1000),
        "answer": answer,
        "finish_reason": finish_reason,
        "error": error,
    })))
}

#[derive(Debug, Deserialize)]
struct DeliveriesQuery {
    target: String,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn deliveries(
    State(api): State<Arc<Api>>,
    _caller: Caller,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!("{}: use ?target=NAME&after=ID", rejection.body_text()),
        )
    })?;
    let name = query.target.strip_prefix("api:").unwrap_or(&query.target);
    if !is_token(name, 128) {
        return Err(ApiError::bad_request(
            "invalid_target",
            format!("target {:?} is not a delivery name", query.target),
        ));
    }
    let target = format!("api:{name}");
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let found = api
        .store
        .deliveries(&target, query.after.unwrap_or(0), limit)
        .await?;
    let last_id = found.last().map(|d| d.id.to_string());
    let data: Vec<Value> = found
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id.to_string(),
                "object": "talaria.delivery",
                "target": d.target,
                "text": d.text,
                "reply_to": d.reply_to,
                "silent": d.silent,
                "created": d.created_at_ms / 1000,
            })
        })
        .collect();
    Ok(Json(
        json!({"object": "list", "data": data, "last_id": last_id}),
    ))
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("unknown_route", "no such route")
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "this route does not take that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_short_and_plain() {
        assert!(is_token("api:0123abcd", 200));
        assert!(is_token("req-1.2_3", 200));
        assert!(!is_token("", 200));
        assert!(!is_token("a b", 200));
        assert!(!is_token("a/b", 200));
        assert!(!is_token(&"x".repeat(201), 200));
    }
}
