mod adapter;
mod backends;
mod confinement;
mod support;
