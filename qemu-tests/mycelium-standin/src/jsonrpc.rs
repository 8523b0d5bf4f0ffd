//! mycelium's JSON-RPC API (`--jsonrpc-addr`, 127.0.0.1:8990 by default):
//! JSON-RPC 2.0 over HTTP POST. The stand-in answers `getInfo` (the node's
//! subnet and public key, as mycelium's admin RPC does) and `getPeers`;
//! every other method is -32601.

use std::net::TcpListener;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::Api;

fn answer(api: &Api, body: &[u8]) -> (u16, Value) {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return (
            200,
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": "Parse error" } }),
        );
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let result = match request.get("method").and_then(Value::as_str) {
        Some("getInfo") => json!({
            "nodeSubnet": api.identity.subnet(),
            "nodePubkey": api.identity.public_hex(),
        }),
        Some("getPeers") => api.peers(),
        _ => {
            return (
                200,
                json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "Method not found" } }),
            )
        }
    };
    (200, json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

/// Serves JSON-RPC on `listener` forever.
pub fn serve(api: Arc<Api>, listener: TcpListener) {
    crate::http::serve(
        listener,
        Arc::new(move |method: &str, _path: &str, body: &[u8]| {
            if method == "POST" {
                answer(&api, body)
            } else {
                (404, json!({ "error": "not found" }))
            }
        }),
    );
}
