mod agent_executor;
mod fixture;
