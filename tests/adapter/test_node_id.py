"""A process's node id (``--node-id``, ``WXIO_NODE_ID``, ``[cluster] node_id``, the ``--workers``
suffix) and the node id in its log lines. Real processes: tests/cluster/test_workers.py."""

from __future__ import annotations

import json
import logging

import pytest
from wxio.adapter.config import ConfigError, ServerConfig, node_id
from wxio.adapter.logs import TEXT_FORMAT, JsonFormatter, TextFormatter

FILE = ServerConfig(extra={"cluster": {"node_id": "from-file"}})


def test_the_flag_wins_then_the_environment_then_the_file() -> None:
    env = {"WXIO_NODE_ID": "from-env"}
    assert node_id(FILE, "flag", env) == "flag"
    assert node_id(FILE, None, env) == "from-env"
    assert node_id(FILE, None, {}) == "from-file"
    assert node_id(FILE, "", {"WXIO_NODE_ID": ""}) == "from-file"  # empty is unset


def test_a_random_id_when_none_is_given() -> None:
    first, second = node_id(ServerConfig(), None, {}), node_id(ServerConfig(), None, {})
    assert first != second and len(first) == 8


def test_a_worker_appends_its_index_to_the_base() -> None:
    assert node_id(FILE, "edge", {"WXIO_WORKER": "1"}) == "edge-1"
    assert node_id(FILE, None, {"WXIO_WORKER": "0"}) == "from-file-0"


@pytest.mark.parametrize("bad", ["has space", "new\nline", "-dash-first", "x" * 64, "a:b", "é"])
def test_ids_that_would_break_keys_urls_or_log_lines_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"--node-id: .* is not a node id"):
        node_id(ServerConfig(), bad, {})
    with pytest.raises(ConfigError, match=r"WXIO_NODE_ID: "):
        node_id(ServerConfig(), None, {"WXIO_NODE_ID": bad})
    with pytest.raises(ConfigError, match=r"\[cluster\] node_id: "):
        node_id(ServerConfig(extra={"cluster": {"node_id": bad}}), None, {})


def test_log_lines_name_the_node() -> None:
    record = logging.LogRecord("wxio.core", logging.INFO, __file__, 1, "hello %s", ("c1",), None)
    text = TextFormatter(TEXT_FORMAT, "web-1-0").format(record)
    assert text.endswith(" INFO [web-1-0] wxio.core hello c1"), text
    assert " INFO [-] wxio.core " in TextFormatter().format(record)  # (no node given)
    data = json.loads(JsonFormatter("web-1-0").format(record))
    assert data["node"] == "web-1-0" and data["message"] == "hello c1"
    assert "node" not in json.loads(JsonFormatter().format(record))
