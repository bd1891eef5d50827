mod migrate;
mod parsers;
mod providers;
mod services;
