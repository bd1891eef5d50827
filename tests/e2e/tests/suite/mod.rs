mod agent_executor;
mod damage;
mod fixture;
mod people;
mod surfaces;
mod whole_suite;
mod workspaces;
