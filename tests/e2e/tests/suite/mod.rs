mod agent_executor;
mod fixture;
mod whole_suite;
