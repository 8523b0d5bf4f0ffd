//! The node's signed RPC server: admission before authentication (bounded
//! per source and in total, hellos budgeted under pressure), the handshake
//! and sealed session from `proto`, then each call handed to the node
//! (a [`server::Dispatcher`]) and answered, waits released when the peer
//! leaves.
//!
//! Only the node links it: sporectl and the beacon use `rpc` and `proto`
//! without the node API underneath.

pub mod hello_budget;
pub mod server;
