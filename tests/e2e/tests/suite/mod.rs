mod agent_executor;
mod chaos;
mod damage;
mod fixture;
mod people;
mod surfaces;
mod whole_suite;
mod workspaces;
