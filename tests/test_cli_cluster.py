"""``wxio serve`` with a cluster configured but without the ``redis`` extra fails with a clear
message (exit 2), not a ModuleNotFoundError traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Hide the redis package, as in an install without the extra, then run the CLI.
_RUN = """
import sys
class _NoRedis:
    def find_spec(self, name, path=None, target=None):
        if name == "redis" or name.startswith("redis."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoRedis())
from wxio.adapter.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cluster_without_the_redis_extra(tmp_path: Path, workers: str) -> None:
    config = tmp_path / "wxio.toml"
    config.write_text('[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\n', encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUN,
            "serve",
            "--config",
            str(config),
            "--port",
            "0",
            "--workers",
            workers,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'wxio[redis]'" in result.stderr
    assert "Traceback" not in result.stderr
