//! The `blue_green` runner: the new version starts beside the old one behind the host's
//! `sluice-proxy`, gets traffic only once healthy, and the old one keeps running until the
//! new one has held through `min_healthy`. [`plan::next`] decides (pure, unit-tested path
//! by path); [`crate::runner::perform`] performs.

pub mod plan;
#[cfg(test)]
mod tests;
