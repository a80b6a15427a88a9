pub mod faults;
pub mod fleet;
pub mod liar;
pub mod swarm;
