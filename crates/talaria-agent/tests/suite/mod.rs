mod routing;
mod skills;
mod tool_search;
mod tools;
mod turns;
mod usage;
