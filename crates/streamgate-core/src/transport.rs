use crate::Hub;

/// A way for clients to connect (raw WebSocket, SSE, Socket.IO). A transport accepts
/// connections on its routes, authenticates them through the hub, feeds decoded commands to
/// [`SessionHandle::handle`](crate::SessionHandle::handle) and drains the session's
/// [`SessionQueue`](crate::SessionQueue) into frames.
pub trait Transport: Send + Sync + 'static {
    /// Short name used in metrics and logs (`ws`, `sse`, `socketio`).
    fn name(&self) -> &'static str;

    /// The routes of this transport, bound to `hub`. The gateway merges the routers of all
    /// enabled transports into one.
    fn router(&self, hub: Hub) -> axum::Router;
}
