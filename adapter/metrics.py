"""Prometheus text-format metrics: counters the server bumps, gauges read at scrape time.

Enable with ``[server] metrics_path = "/metrics"`` (off by default: the labels name your apps).
Every label value comes from configuration or from a fixed set (actions, deny reasons, transports),
never from what a client wrote, so the number of series is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["Metrics", "Labels"]

Labels = tuple[tuple[str, str], ...]
GaugeFn = Callable[[], Iterable[tuple[Labels, float]]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _series(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


class Metrics:
    def __init__(self) -> None:
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, GaugeFn] = {}

    def counter(self, name: str, help_text: str) -> dict[Labels, float]:
        """Declare a counter; bump it with ``series[labels] = series.get(labels, 0) + 1`` or
        :meth:`inc`."""
        self._help[name] = ("counter", help_text)
        return self._counters.setdefault(name, {})

    def inc(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        series = self._counters[name]
        series[labels] = series.get(labels, 0.0) + amount

    def values(self, name: str) -> dict[Labels, float]:
        """A copy of a counter's series (empty if it was never declared)."""
        return dict(self._counters.get(name, {}))

    def gauge(self, name: str, help_text: str, read: GaugeFn, *, kind: str = "gauge") -> None:
        """Series read at scrape time; ``kind="counter"`` for a total kept elsewhere (read, not
        bumped here)."""
        self._help[name] = (kind, help_text)
        self._gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text) in self._help.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            read = self._gauges.get(name)
            if read is not None:
                samples: Iterable[tuple[Labels, float]] = read()
            else:
                samples = self._counters[name].items()
            lines.extend(_series(name, labels, value) for labels, value in samples)
        return "\n".join(lines) + "\n"
