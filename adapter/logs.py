"""Logging setup: the default text lines, or one JSON object per line (``log_format = "json"``).

A JSON line carries ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``, the ``exc`` text when an exception is logged, and every ``extra={...}`` field the
call passed. Fields whose names look like credentials (keys, signatures, nonces, tokens,
passwords) are written as ``"[redacted]"``, and so are ``sign=...``-style query parameters in any
text (both formats): a log line must never carry a secret.

Both formats carry the node id of the process (``[web-1-0]`` in a text line, ``node`` in JSON):
``--workers`` processes share one stderr, and a line must say which node wrote it.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from ..protocol import jsonutil

__all__ = ["JsonFormatter", "TextFormatter", "configure", "redact", "LOG_FORMATS", "TEXT_FORMAT"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(node)s] %(name)s %(message)s"

#: The attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_SECRET = re.compile(r"key|sign|secret|token|password|passwd|nonce|authorization|cookie", re.I)
#: ``sign=...`` and the like inside a URL or a message.
_SECRET_PARAM = re.compile(r"(?i)\b(sign|nonce|token|key|password|secret)=[^&\s'\"]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    """Replace the values of credential-like ``name=value`` parameters in ``text``."""
    return _BEARER.sub(r"\1[redacted]", _SECRET_PARAM.sub(r"\1=[redacted]", text))


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines; ``node`` fills ``%(node)s`` (a record's own ``node`` extra wins)."""

    def __init__(self, fmt: str = TEXT_FORMAT, node: str = "-") -> None:
        super().__init__(fmt, defaults={"node": node})

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``node`` (when given) is written as the ``node`` field."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
        }
        if self.node:
            line["node"] = self.node
        line["logger"] = record.name
        line["message"] = redact(record.getMessage())
        for name, value in vars(record).items():
            if name in _STANDARD or name.startswith("_") or name in line:
                continue
            line[name] = "[redacted]" if _SECRET.search(name) else _plain(value)
            if isinstance(line[name], str):
                line[name] = redact(line[name])
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        try:
            return jsonutil.dumps(line)
        except Exception:  # e.g. an integer too large for JSON: still one line
            return jsonutil.dumps({k: str(v) for k, v in line.items()})


def _plain(value: Any) -> Any:
    """JSON-able as is, or its ``str``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def configure(level: str, log_format: str = "text", node: str = "") -> None:
    """Configure the root logger once, for ``wxio serve``; ``node`` is this process's node id."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT, node or "-"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
