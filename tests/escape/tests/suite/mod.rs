//! The escape suite's machinery and its cases.

pub mod case;
pub mod cases;
pub mod host;
pub mod reads;
pub mod world;
