"""docs/operations.md and docs/grafana-dashboard.json describe what a running server exports:
every metric in the table and every dashboard expression exists in a real scrape of /metrics,
with the documented type, and every exported metric is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from wxio.adapter.config import ServerConfig
from wxio.adapter.embedded.backplane import EmbeddedBackplane
from wxio.adapter.embedded.database import StoreOptions

from .conftest import StartServer

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
METRIC = re.compile(r"\bwxio_[a-z0-9_]+")


async def scrape(start_server: StartServer, tmp_path: Path) -> dict[str, str]:
    """name -> type, from the ``# TYPE`` lines of a real server's /metrics (on the embedded
    store, the single node's default, as ``wxio serve`` sets it up)."""
    backplane = EmbeddedBackplane(StoreOptions(data_dir=str(tmp_path / "data")))
    server = await start_server(
        apps={"shop": {"key": "k"}},
        config=ServerConfig(metrics_path="/metrics"),
        backplane=backplane,
    )
    assert server.hub is not None
    backplane.add_metrics(server.hub.metrics)
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert types, text
    return types


def expressions(node: Any) -> list[str]:
    """Every PromQL string of a dashboard: panel targets and template variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            # "query" is also the datasource variable's plugin name: PromQL has parentheses.
            promql = key in ("expr", "definition") or (key == "query" and "(" in str(value))
            if promql and isinstance(value, str):
                found.append(value)
            else:
                found.extend(expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(expressions(item))
    return found


async def test_dashboard_uses_only_exported_metrics(
    start_server: StartServer, tmp_path: Path
) -> None:
    exported = await scrape(start_server, tmp_path)
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["panels"] and dashboard["title"]
    exprs = expressions(dashboard)
    assert len(exprs) >= len(dashboard["panels"])
    for expr in exprs:
        names = METRIC.findall(expr)
        assert names, f"no wxio metric in {expr!r}"
        for name in names:
            assert name in exported, f"{name} (in {expr!r}) is not exported"
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used == set(exported), f"not on the dashboard: {set(exported) - used}"


async def test_operations_page_lists_every_metric_with_its_type(
    start_server: StartServer, tmp_path: Path
) -> None:
    exported = await scrape(start_server, tmp_path)
    page = (DOCS / "operations.md").read_text()
    documented = dict(re.findall(r"^\| `(wxio_[a-z0-9_]+)` \| (counter|gauge) \|", page, re.M))
    assert documented == exported
    # The examples and alert rules name only real series too.
    assert set(METRIC.findall(page)) <= set(exported)
