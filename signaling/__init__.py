"""The socket.io namespace that binds ``rooms`` to the wire (WebRTC signaling)."""
