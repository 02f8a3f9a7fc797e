"""Print the call chain of one routed message, for ``docs/architecture.md``'s traces.

Starts ``wxio serve`` (memory store, one md5 app checking ``meta.sign``) with its
``FrameWriter`` patched to print the stack (wxio's frames only) when a frame holding the
traced ``exchange`` is queued, and at the flush that writes it; then a raw client (websockets)
sends one ``sendToOthers`` to another raw client, and a python-socketio client one
``requestMessage`` (no ack asked) to another socket.io client. ``--kept``: the app keeps
messages until acked (the targets have user ids either way).

    .venv/bin/python bench/trace_path.py [--kept] [--loop asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "adapter"))

from core_clients import RawClient, Signer, SioClient  # noqa: E402  (after the path)

CONFIG = """[server]
log_level = "WARNING"
[apps.trace]
key = "trace-key"
scheme = "md5"
verify_message_sign = true
keep_until_ack = {kept}
[core]
namespace = "/"
[store]
engine = "memory"
"""

# Run as the server's main: the patch, then wxio's CLI.
PATCHED_MAIN = r"""
import sys, traceback
from wxio.adapter.transports import outbox

write_frame, flush = outbox.FrameWriter.write_frame, outbox.FrameWriter.flush
armed = []

def chain():
    names = []
    for f in traceback.extract_stack()[:-2]:
        path = f.filename.replace("\\", "/")
        for root in ("/adapter/", "/protocol/"):
            if root in path:
                names.append(path.rsplit(root, 1)[1].removesuffix(".py") + ":" + f.name)
    return " > ".join(names) or "(the loop)"

def traced_write(self, frame):
    if b"TRACE" in frame:
        print("write:", chain(), flush=True)
        armed.append(self)
    return write_frame(self, frame)

def traced_flush(self):
    if self in armed:
        armed.remove(self)
        print("flush:", chain(), flush=True)
    return flush(self)

outbox.FrameWriter.write_frame = traced_write
outbox.FrameWriter.flush = traced_flush
from wxio.adapter.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def trace(port: int) -> None:
    signer = Signer("trace", "trace-key")
    a = await RawClient.connect(f"ws://127.0.0.1:{port}", signer, "raw-a")
    b = await RawClient.connect(f"ws://127.0.0.1:{port}", signer, "raw-b")
    print("-- raw /ws sendToOthers", flush=True)
    await a.send(signer.envelope("sendToOthers", {"text": "TRACE"}, target=b.client_id))
    assert (await b.recv())["data"]["action"] == "exchange"
    await a.recv()  # the result
    base = f"http://127.0.0.1:{port}"
    s1 = await SioClient.connect(base, signer, "sio-a", transports=["websocket"])
    s2 = await SioClient.connect(base, signer, "sio-b", transports=["websocket"])
    await asyncio.sleep(0.3)  # the welcomes are over
    print("-- socket.io requestMessage", flush=True)
    envelope = signer.envelope("sendToOthers", {"text": "TRACE"}, target=s2.client_id)
    await s1.sio.emit("requestMessage", envelope)
    assert (await s2.recv())["data"]["action"] == "exchange"
    await asyncio.sleep(0.2)
    for c in (a, b, s1, s2):
        await c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kept", action="store_true", help="keep_until_ack = true")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wxio-trace-"))
    config = tmp / "wxio.toml"
    config.write_text(CONFIG.format(kept="true" if args.kept else "false"))
    script = tmp / "traced_main.py"
    script.write_text(PATCHED_MAIN)
    port = free_port()
    env = dict(os.environ, WXIO_LOOP=args.loop)
    for name in ("WXIO_REDIS_URL", "WXIO_STORE", "WXIO_DATA_DIR"):
        env.pop(name, None)
    argv = [sys.executable, str(script), "serve", "--port", str(port), "--config", str(config)]
    server = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.1)
        asyncio.run(trace(port))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
