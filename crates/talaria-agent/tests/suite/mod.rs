mod tools;
mod turns;
