"""Engine.IO transports: HTTP long-polling and WebSocket. Only these modules touch aiohttp's
request and response objects for Engine.IO traffic."""
