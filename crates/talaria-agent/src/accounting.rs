//! What a model call cost: turns a [`ChatResponse`] into the [`ModelCall`] the store records,
//! pricing it from the catalogue at record time.
//!
//! It never fails a turn: a model the catalogue does not price is recorded with no cost.

use std::sync::Arc;

use talaria_core::UsageTask;
use talaria_llm::{Catalogue, ChatResponse};
use talaria_store::ModelCall;

/// Where a session's calls are priced: the catalogue and the provider its requests go to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pricing {
    pub catalogue: Option<Arc<Catalogue>>,
    /// The session's provider, used when the response does not say which one answered.
    pub provider: String,
}

impl Pricing {
    /// The record of one call for `task` that asked for `requested_model`.
    pub fn call(
        &self,
        task: UsageTask,
        requested_model: &str,
        response: &ChatResponse,
    ) -> ModelCall {
        let provider = response
            .provider
            .clone()
            .unwrap_or_else(|| self.provider.clone());
        // The answering model's price, else the requested one's (servers add date suffixes).
        let cost = self
            .catalogue
            .as_ref()
            .and_then(|c| c.provider(&provider, "provider").ok())
            .and_then(|p| {
                p.model(&response.model)
                    .or_else(|| p.model(requested_model))
            })
            .and_then(|m| m.cost(&response.usage));
        ModelCall {
            provider: (!provider.is_empty()).then_some(provider),
            model: response.model.clone(),
            task,
            usage: response.usage,
            cost,
        }
    }
}
