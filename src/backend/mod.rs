//! The backend side: the `Authority` that names a backend, and the `Pool` of idle
//! connections kept for each [R5][R6].

pub mod answer;
pub mod authority;
pub mod fault;
pub mod pool;
