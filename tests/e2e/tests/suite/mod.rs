mod agent_executor;
mod fixture;
mod people;
mod whole_suite;
