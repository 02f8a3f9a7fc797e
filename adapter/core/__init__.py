"""The signed routing core: apps and keys, the hub that routes envelopes between clients of every
kind (socket.io, raw JSON WebSocket, HTTP API), and the offline inbox."""
