pub mod faults;
pub mod fleet;
pub mod swarm;
