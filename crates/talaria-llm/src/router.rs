//! The model router: a primary model and an ordered list of fallbacks behind one
//! [`ChatProvider`], with key pools, retries by kind and a cool-down for a benched primary.
//!
//! Each [`Route`] is one provider and model with one client per key of its pool. A failed call
//! is sorted by [`Failure`] and handled by its [`Action`]: wait and retry the same key, rotate to
//! the next key (429, 402, rejected key), fall back to the next route, or return the error
//! (context overflow is the agent's to fix by compressing; a content-policy refusal is final).
//! A route that failed is benched for `cooldown`; once that passes it is tried first again, and
//! a success restores it. Every switch is logged and reported to the caller as
//! [`StreamEvent::Notice`].
//!
//! The router never retries after an answer started streaming (the user saw part of it), and
//! never logs a key: clients are built by the caller and only their descriptions are shown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::classify::{Action, Failure};
use crate::{ChatProvider, ChatRequest, ChatResponse, LlmError, RetryPolicy, StreamEvent};

/// One place a request can go: a provider, a model, and one client per key of its pool.
#[derive(Debug, Clone)]
pub struct Route {
    /// The catalogue's provider name, e.g. `anthropic`.
    pub provider: String,
    /// The model to ask for; `None` on the primary means "the model the request names" (the
    /// session's, which `/model` changes).
    pub model: Option<String>,
    /// One client per key, in pool order; never empty.
    pub clients: Vec<Arc<dyn ChatProvider>>,
}

impl Route {
    fn label(&self, request_model: &str) -> String {
        format!(
            "{}:{}",
            self.provider,
            self.model.as_deref().unwrap_or(request_model)
        )
    }
}

#[derive(Debug, Default)]
struct RouteState {
    /// Index of the key in use.
    key: usize,
    /// Benched until this instant after a failure.
    benched_until: Option<Instant>,
}

/// A primary route and its fallbacks behind one [`ChatProvider`].
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    retry: RetryPolicy,
    cooldown: Duration,
    state: Mutex<Vec<RouteState>>,
}

impl Router {
    /// `primary` first, then `fallbacks` in order. Routes without clients are dropped.
    /// `retry` governs waiting on the same key (its clients should not retry themselves);
    /// `cooldown` is how long a failed route sits out before it is tried first again.
    pub fn new(
        primary: Route,
        fallbacks: Vec<Route>,
        retry: RetryPolicy,
        cooldown: Duration,
    ) -> Self {
        let routes: Vec<Route> = std::iter::once(primary)
            .chain(fallbacks)
            .filter(|r| !r.clients.is_empty())
            .collect();
        let state = routes.iter().map(|_| RouteState::default()).collect();
        Self {
            routes,
            retry,
            cooldown,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RouteState>> {
        // A panic while holding this lock leaves only indices behind, which stay valid.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The routes to try, in order: those not benched (or whose cool-down has passed), then,
    /// when every route is benched, all of them anyway: failing is worse than asking again.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let state = self.lock();
        let open: Vec<usize> = (0..self.routes.len())
            .filter(|&i| state[i].benched_until.is_none_or(|until| until <= now))
            .collect();
        if open.is_empty() {
            (0..self.routes.len()).collect()
        } else {
            open
        }
    }

    fn current_key(&self, route: usize) -> usize {
        self.lock()[route].key
    }

    fn bench(&self, route: usize) {
        self.lock()[route].benched_until = Some(Instant::now() + self.cooldown);
    }

    /// Clears the bench; returns whether the route had been benched.
    fn restore(&self, route: usize) -> bool {
        self.lock()[route].benched_until.take().is_some()
    }

    /// Moves to the next key; returns the new index, or `None` for a single-key route.
    fn rotate(&self, route: usize) -> Option<usize> {
        let count = self.routes[route].clients.len();
        if count < 2 {
            return None;
        }
        let mut state = self.lock();
        state[route].key = (state[route].key + 1) % count;
        Some(state[route].key)
    }

    /// Sends `request` along one route, retrying and rotating keys as the failure kind says.
    /// Returns the error and whether anything was shown to the user.
    async fn try_route(
        &self,
        index: usize,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, (LlmError, bool)> {
        let route = &self.routes[index];
        let mut request = request.clone();
        if let Some(model) = &route.model {
            request.model.clone_from(model);
        }
        let mut retries = 0;
        let mut rotations = 0;
        loop {
            let key = self.current_key(index);
            let mut shown = false;
            let result = {
                let mut forward = |event: StreamEvent| {
                    if !matches!(event, StreamEvent::Notice(_)) {
                        shown = true;
                    }
                    on_event(event);
                };
                route.clients[key].chat(&request, &mut forward).await
            };
            let error = match result {
                Ok(mut response) => {
                    response.provider = Some(route.provider.clone());
                    return Ok(response);
                }
                Err(e) if shown => return Err((e, true)),
                Err(e) => e,
            };
            let failure = Failure::of(&error);
            let action = failure.action();
            if action == Action::RotateKey
                && rotations + 1 < route.clients.len()
                && let Some(next) = self.rotate(index)
            {
                rotations += 1;
                tracing::warn!(route = %route.label(&request.model), %failure, key = next + 1, keys = route.clients.len(), "rotating to the next key");
                on_event(StreamEvent::Notice(format!(
                    "{} {failure}: switching to key {} of {}",
                    route.label(&request.model),
                    next + 1,
                    route.clients.len()
                )));
                continue;
            }
            let wait = matches!(action, Action::Retry | Action::RotateKey)
                && failure.worth_waiting()
                && retries < self.retry.max_retries;
            if wait {
                let delay = self.retry.delay(retries, error.retry_after());
                retries += 1;
                tracing::info!(route = %route.label(&request.model), %failure, retry = retries, delay_ms = delay.as_millis() as u64, "model call failed; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err((error, false));
        }
    }
}

#[async_trait::async_trait]
impl ChatProvider for Router {
    fn describe(&self) -> String {
        let Some(primary) = self.routes.first().and_then(|r| r.clients.first()) else {
            return "no model route".to_owned();
        };
        let fallbacks: Vec<String> = self
            .routes
            .iter()
            .skip(1)
            .map(|r| r.label("(session model)"))
            .collect();
        if fallbacks.is_empty() {
            primary.describe()
        } else {
            format!(
                "{}, falling back to {}",
                primary.describe(),
                fallbacks.join(", ")
            )
        }
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, LlmError> {
        let order = self.order();
        let mut last: Option<(usize, LlmError)> = None;
        for index in order {
            let label = self.routes[index].label(&request.model);
            if let Some((failed, error)) = &last {
                let from = self.routes[*failed].label(&request.model);
                let failure = Failure::of(error);
                tracing::warn!(%from, to = %label, %failure, "falling back to the next model");
                on_event(StreamEvent::Notice(format!(
                    "{from} {failure}: falling back to {label}"
                )));
            }
            match self.try_route(index, request, on_event).await {
                Ok(response) => {
                    if self.restore(index) {
                        tracing::info!(route = %label, "model restored after its cool-down");
                        on_event(StreamEvent::Notice(format!("{label} is answering again")));
                    }
                    return Ok(response);
                }
                Err((error, shown)) => {
                    let failure = Failure::of(&error);
                    let action = failure.action();
                    let final_error =
                        shown || matches!(action, Action::CompressAndRetry | Action::Stop);
                    if final_error {
                        return Err(error);
                    }
                    self.bench(index);
                    last = Some((index, error));
                }
            }
        }
        match last {
            Some((_, error)) => Err(error),
            None => Err(LlmError::InvalidRequest {
                detail: "no model route is configured".to_owned(),
            }),
        }
    }

    async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        let Some(route) = self.routes.first() else {
            return Ok(Vec::new());
        };
        let key = self.current_key(0);
        route.clients[key].list_models().await
    }
}
