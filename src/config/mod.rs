//! Inventory and playbook: parsed from TOML into raw structs, then validated into the
//! types of [`model`]. All of it runs before any connection.

pub mod model;

pub use model::*;
pub mod shim;
pub use shim::*;
