"""The client tests run a real server in the test's loop (tests/adapter/conftest.py) and, for the
cluster cases, a real Redis (tests/cluster/conftest.py)."""

from __future__ import annotations

from tests.adapter.conftest import RunningServer, StartServer, free_port, start_server  # noqa: F401
from tests.cluster.conftest import REDIS_URL, redis_prefix  # noqa: F401
