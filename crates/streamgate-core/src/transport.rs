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

/// Decodes one component of a URL query (`%XX` escapes and `+` for space), for transports that
/// read credentials or room lists from the query string. Invalid escapes are kept as they are;
/// invalid UTF-8 becomes U+FFFD.
///
/// ```
/// use streamgate_core::decode_query_component;
///
/// assert_eq!(decode_query_component("execution%3A7%2Corg%3Aacme"), "execution:7,org:acme");
/// assert_eq!(decode_query_component("a+b"), "a b");
/// assert_eq!(decode_query_component("bad%zz%"), "bad%zz%");
/// ```
#[must_use]
pub fn decode_query_component(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::decode_query_component as decode;

    #[test]
    fn query_components_are_decoded() {
        assert_eq!(decode("abc"), "abc");
        assert_eq!(decode("a%2Eb%3d"), "a.b=");
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("bad%zz%"), "bad%zz%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%41"), "A");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%ff"), "\u{fffd}");
    }
}
