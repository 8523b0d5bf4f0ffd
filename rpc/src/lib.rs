//! Everything spore speaks over the network.
//!
//! This crate will hold the wire protocol and its authentication, the node's
//! RPC server, the client library, the operator CLI `sporectl`, call-home and
//! the beacon server (see the project's issues for their specifications).
//! Nothing is implemented here yet.
