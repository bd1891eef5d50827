mod routing;
mod tools;
mod turns;
