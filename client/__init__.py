"""wxio's Python client (installed as ``wxio.client``): the raw WebSocket endpoint
(:class:`WxioClient`) and the HTTP API (:class:`ApiClient`), signing as the server expects.

::

    from wxio.client import ApiClient, Credentials, WxioClient

    creds = Credentials("shop", key, user_id="u1")
    async with await WxioClient.connect("https://example.com", creds) as client:
        result = await client.send(other_id, {"text": "hi"})   # SendResult(status="delivered")
        sent = await client.send(other_id, "read?", receipt=True)
        receipt = await client.wait_receipt(sent.msg_id)       # the target acknowledged it
        async for message in client:                           # exchange, broadcast, receipt, deny
            print(message.sender, message.payload)

    async with ApiClient("https://example.com", Credentials("shop", server_key)) as api:
        result = await api.send(client_id, {"text": "hi"})     # the same SendResult
"""

from ._auth import Credentials
from .api import ApiClient, ApiSendResult, Presence
from .errors import ConnectionClosed, Denied, WxioError
from .result import Guarantee, Receipt, SendResult, SendStatus
from .ws import Message, WxioClient

__all__ = [
    "ApiClient",
    "ApiSendResult",
    "ConnectionClosed",
    "Credentials",
    "Denied",
    "Guarantee",
    "Message",
    "Presence",
    "Receipt",
    "SendResult",
    "SendStatus",
    "WxioClient",
    "WxioError",
]
