"""docs/tutorial.md, "Signing in the client": its example, both ways of giving the user id, run
as a mini program's app.js against a real server; the server names the connection's user."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import StartServer
from .jspeer import JsPeer, requires_node

pytestmark = [requires_node, pytest.mark.node]

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "clients" / "js" / "dist" / "wxio.js"
KEY = "tutorial-key"


def signing_example() -> str:
    text = (ROOT / "docs" / "tutorial.md").read_text()
    section = text.index("### Signing in the client")
    start = text.index("```js", section) + len("```js")
    return text[start : text.index("```", start)]


def variants() -> dict[str, str]:
    """The example as written, and with its commented-out `userId` option form instead."""
    example = signing_example()
    lines = example.splitlines()
    key = next(line for line in lines if line.startswith("const KEY"))
    option = next(line for line in lines if line.startswith("// wxio.connect("))
    call = option.removeprefix("// ").replace("(url,", "('http://127.0.0.1:3000',")
    return {
        "in the credentials": example,
        "the userId option": f"{key}\nthis.client = {call};\n",
    }


@pytest.mark.parametrize("variant", ["in the credentials", "the userId option"])
async def test_local_signing_example_names_the_user(
    start_server: StartServer, tmp_path: Path, variant: str
) -> None:
    server = await start_server(apps={"demo": {"key": KEY}})
    code = variants()[variant].replace("<the key wxio printed>", KEY)
    code = code.replace("http://127.0.0.1:3000", server.url)
    (tmp_path / "utils").mkdir()
    shutil.copy(DIST, tmp_path / "utils" / "wxio.js")
    (tmp_path / "app.js").write_text(
        "const wxio = require('./utils/wxio.js');\n"
        "App({ onLaunch() {\n"
        f"{code}\n"
        "  this.client.on('connect', ({ userId }) => wx.showToast({ title: String(userId) }));\n"
        "} });\n"
    )
    peer = await JsPeer.start("wxio", script="sdk_peer.js")
    try:
        cid = await peer.command("app", file=str(tmp_path / "app.js"))
        await peer.expect("done", id=cid)
        assert (await peer.expect("toast", timeout=10))["title"] == "mp-user-1"
    finally:
        await peer.close()
