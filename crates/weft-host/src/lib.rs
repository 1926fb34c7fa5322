//! The process that serves workloads: today the HTTP front for `weft serve`; the workload
//! host, router and admin API grow here.

pub mod server;
