//! The event loops [R8]: one per CPU, each owning the connections it serves from
//! accept to close. Being built: `timers` keeps the deadlines of one loop.

pub mod timers;
