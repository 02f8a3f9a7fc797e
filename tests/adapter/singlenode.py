"""One ``wxio serve`` process at a time on a fixed port and data directory: started, stopped by
SIGTERM or SIGKILL, started again, for the restart tests of the embedded store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .conftest import free_port


def toml(tables: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


class SingleNode:
    """``apps``: the ``[apps.<name>]`` tables (None: demo mode); ``env``: variables for the
    process (the outer ``WXIO_*`` ones are dropped, but for the event loop's choice)."""

    def __init__(
        self,
        tmp_path: Path,
        durability: str = "group",
        *,
        apps: dict[str, dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.data = tmp_path / "data"
        self.config = tmp_path / "wxio.toml"
        tables = {f"apps.{name}": table for name, table in (apps or {}).items()}
        tables["store"] = {"data_dir": str(self.data), "durability": durability}
        self.config.write_text(toml(tables))
        self.strict = durability == "strict"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.tmp_path / f"run{self.runs}.log"

    async def start(self) -> None:
        """Start and wait until the port answers."""
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
        env["WXIO_LOOP"] = os.environ.get("WXIO_LOOP", "asyncio")
        env.update(self.env)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wxio.adapter", "serve", "--port", str(self.port),
                 "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp_path, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                assert time.monotonic() < deadline, self.log.read_text()
                await asyncio.sleep(0.05)

    def stop(self, how: str) -> int:
        """SIGTERM ("term") or SIGKILL ("kill"); the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
        code = self.proc.wait(15)
        self.proc = None
        return code

    def kept_rows(self) -> int:
        """Messages in the file's inbox table (read-only: the server owns the file)."""
        path = self.data / "wxio.db"
        if not path.exists():
            return 0
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])
        finally:
            conn.close()

    def output(self) -> str:
        return "\n".join(
            (self.tmp_path / f"run{i}.log").read_text() for i in range(1, self.runs + 1)
        )
