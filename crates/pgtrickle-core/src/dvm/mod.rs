//! The pure half of differential maintenance: what a stream table stores
//! and the SQL of its refreshes, given the printed query cores.

pub mod plan;
pub mod sqlgen;
