mod adapter;
mod backends;
mod support;
