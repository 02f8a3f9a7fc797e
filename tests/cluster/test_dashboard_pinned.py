"""The dashboard behind a round-robin proxy: a page sticks to one node (``?node=<id>``, relayed by
the node a request lands on), says which, switches node from its node table, and moves on when
its node leaves. Headless Chromium as in tests/adapter/test_browser.py; the nodes are in this
process, on the shared Redis, behind a proxy that sends each request to the next node."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.adapter.config import ServerConfig

from tests.adapter.conftest import RunningServer, StartServer, free_port
from tests.adapter.test_browser import browser  # noqa: F401  (the Chromium fixture)

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

CONFIG = ServerConfig(dashboard=True, dashboard_user="ops", dashboard_password="pw")
CREDENTIALS = {"username": "ops", "password": "pw"}
AUTH = {"Authorization": "Basic b3BzOnB3"}  # ops:pw
#: Request headers the proxy does not pass on (hop by hop, or its own to set).
HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}
T = 10_000  # ms, Playwright's unit


class RoundRobin:
    """Each request to the next node, all headers passed both ways (basic auth included)."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = itertools.cycle(backends)
        self.stats_hits: dict[str, int] = dict.fromkeys(backends, 0)
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        backend = next(self.backends)
        if request.path == "/dashboard/stats":
            self.stats_hits[backend] += 1
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with self.session.request(
            request.method,
            backend + request.path_qs,
            headers=headers,
            data=await request.read() or None,
            allow_redirects=False,
        ) as res:
            body = await res.read()  # (decompressed: its encoding is not passed on)
            skip = HOP | {"content-encoding"}
            out = {k: v for k, v in res.headers.items() if k.lower() not in skip}
            return web.Response(status=res.status, body=body, headers=out)


@pytest.fixture
async def cluster(
    start_server: StartServer, redis_prefix: str
) -> AsyncIterator[tuple[str, RoundRobin, list[RunningServer]]]:
    nodes = [
        await start_server(
            apps={"c": {"key": "c-key"}},
            config=CONFIG,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"n{i}", node_ttl=3),
        )
        for i in range(2)
    ]
    proxy = RoundRobin([n.url for n in nodes])
    proxy.session = aiohttp.ClientSession()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", proxy, nodes
    await proxy.session.close()
    await runner.cleanup()


async def stats(url: str, node: str | None = None) -> tuple[int, dict[str, Any]]:
    query = f"?node={node}" if node is not None else ""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/dashboard/stats{query}", headers=AUTH) as res,
    ):
        return res.status, await res.json()


async def test_stats_of_a_named_node_from_any_node(cluster: Any) -> None:
    url, proxy, nodes = cluster
    for node in nodes:  # each node answers for the other, and for itself
        assert (await stats(node.url, "n0"))[1]["node"] == "n0"
        assert (await stats(node.url, "n1"))[1]["node"] == "n1"
    status, body = await stats(nodes[0].url, "ghost")
    assert status == 404 and body["gone"] is True and "ghost" in body["error"]
    # The relay carries the operator's credentials; without them the first node says no.
    async with aiohttp.ClientSession() as http, http.get(f"{url}/dashboard/stats?node=n1") as res:
        assert res.status == 401


@pytest.mark.slow  # (a browser, as tests/adapter/test_browser.py)
async def test_the_page_sticks_to_one_node_behind_round_robin(
    browser: Any,  # noqa: F811
    cluster: Any,
) -> None:
    url, proxy, nodes = cluster
    context = await browser.new_context(http_credentials=CREDENTIALS)
    page = await context.new_page()
    shown: list[str] = []
    # Bumped where `shown` starts afresh: an answer read before, whose body comes after, is
    # not counted in the new list.
    generation = [0]

    async def on_response(response: Any) -> None:
        if "/dashboard/stats" in response.url and response.ok:
            seen_in = generation[0]
            try:
                node = (await response.json())["node"]
            except Exception:  # the page navigated away meanwhile: that answer is not shown
                return
            if seen_in == generation[0]:
                shown.append(node)

    page.on("response", on_response)
    try:
        await page.goto(url + "/")
        await page.wait_for_function(
            "() => ['n0', 'n1'].includes(document.getElementById('node')?.textContent)", timeout=T
        )
        first = await page.inner_text("#node")
        other = "n1" if first == "n0" else "n0"
        assert page.url.endswith(f"/?node={first}")
        # A second a refresh: wait until both nodes got stats requests from the proxy (the page's
        # requests alternate between them) and several answers came back.
        await page.wait_for_function(
            "() => document.title === 'wxio dashboard: " + first + "'", timeout=T
        )
        start = len(shown)
        while len(shown) < start + 4 or min(proxy.stats_hits.values()) < 2:
            await page.wait_for_event("response", timeout=T)
        assert set(shown) == {first}, shown  # every answer was the pinned node's
        assert await page.inner_text("#node") == first

        # The node table switches the page to the other node, and a reload keeps it.
        await page.click(f"#node-table a[data-node='{other}']")
        await page.wait_for_function(
            f"() => document.getElementById('node')?.textContent === '{other}'", timeout=T
        )
        assert page.url.endswith(f"/?node={other}")
        await page.reload()
        await page.wait_for_function(
            f"() => document.getElementById('node')?.textContent === '{other}'", timeout=T
        )
        shown.clear()
        generation[0] += 1
        while len(shown) < 4:
            await page.wait_for_event("response", timeout=T)
        assert set(shown) == {other}, shown

        # A node that is not (or no longer) in the cluster: the page says so and moves on.
        await page.goto(url + "/?node=ghost")
        await page.wait_for_function(
            "() => document.getElementById('error')?.textContent.includes("
            "'node ghost is not in the cluster')",
            timeout=T,
        )
        await page.wait_for_function(
            "() => ['n0', 'n1'].includes(document.getElementById('node')?.textContent)", timeout=T
        )
        assert "node=ghost" not in page.url
    finally:
        await context.close()
