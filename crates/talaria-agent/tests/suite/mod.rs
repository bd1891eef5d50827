mod routing;
mod skills;
mod tools;
mod turns;
mod usage;
