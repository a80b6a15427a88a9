pub mod fleet;
pub mod swarm;
