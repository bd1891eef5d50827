mod contract;
mod introspection;
mod mirror;
mod private_bus;
mod round_trip;
