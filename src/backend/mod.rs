//! The backend side: the `Authority` that names a backend, connecting to it
//! (`dial`), the `Pool` of idle connections kept for each [R5][R6], and reading its
//! answer (`answer`).

pub mod answer;
pub mod authority;
pub mod dial;
pub mod fault;
pub mod pool;
