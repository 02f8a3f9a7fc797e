"""A user's handler module, loaded by `wxio serve --app tests.adapter.user_app:setup`."""

from __future__ import annotations

from typing import Any


def setup(io: Any) -> None:
    @io.on("hello")
    def hello(socket: Any, name: str) -> str:
        return f"hello {name}"
