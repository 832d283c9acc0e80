//! Integration tests: the real app over real sockets, against a real Redis.

#[macro_use]
mod support;

mod abuse;
mod atomic_events;
mod binary;
mod bounded;
mod cluster;
mod contract;
mod devices;
mod failover;
mod identity;
mod lifecycle;
mod local_cluster;
mod outage;
mod relay;
mod standins;
mod telemetry;
