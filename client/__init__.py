"""wxio's Python client (installed as ``wxio.client``): the raw WebSocket endpoint
(:class:`WxioClient`) and the HTTP API (:class:`ApiClient`), signing as the server expects.

::

    from wxio.client import ApiClient, Credentials, WxioClient

    creds = Credentials("shop", key, user_id="u1")
    async with await WxioClient.connect("https://example.com", creds) as client:
        result = await client.send(other_id, {"text": "hi"})   # SendResult(status="delivered")
        async for message in client:                           # exchange, broadcast, deny
            print(message.sender, message.payload)
"""

from ._auth import Credentials
from .api import ApiClient, ApiSendResult, Presence
from .errors import ConnectionClosed, Denied, WxioError
from .ws import Message, SendResult, WxioClient

__all__ = [
    "ApiClient",
    "ApiSendResult",
    "ConnectionClosed",
    "Credentials",
    "Denied",
    "Message",
    "Presence",
    "SendResult",
    "WxioClient",
    "WxioError",
]
