mod commands;
mod confinement;
mod executor;
mod image;
mod lifecycle;
mod support;
