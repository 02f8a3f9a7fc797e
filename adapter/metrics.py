"""Prometheus text-format metrics: counters the server bumps, gauges read at scrape time.

Enable with ``[server] metrics_path = "/metrics"`` (off by default: the labels name your apps).
Every label value comes from configuration or from a fixed set (actions, deny reasons, transports),
never from what a client wrote, so the number of series is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["Metrics", "Labels", "Histogram"]

Labels = tuple[tuple[str, str], ...]
GaugeFn = Callable[[], Iterable[tuple[Labels, float]]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _series(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


class Histogram:
    """Observations in fixed buckets, by labels (a Prometheus histogram)."""

    __slots__ = ("buckets", "series")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        #: labels -> the count of each bucket (not cumulative), then the sum, then the count.
        self.series: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
                break
        counts[-2] += value
        counts[-1] += 1

    def lines(self, name: str) -> list[str]:
        out: list[str] = []
        for labels, counts in self.series.items():
            total = 0.0
            for bound, count in zip(self.buckets, counts, strict=False):
                total += count
                out.append(_series(f"{name}_bucket", (*labels, ("le", f"{bound:g}")), total))
            out.append(_series(f"{name}_bucket", (*labels, ("le", "+Inf")), counts[-1]))
            out.append(_series(f"{name}_sum", labels, counts[-2]))
            out.append(_series(f"{name}_count", labels, counts[-1]))
        return out


class Metrics:
    def __init__(self) -> None:
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, GaugeFn] = {}
        self._histograms: dict[str, Histogram] = {}

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

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...]) -> Histogram:
        """Declare a histogram with these upper bounds (ascending); ``observe`` it."""
        self._help[name] = ("histogram", help_text)
        return self._histograms.setdefault(name, Histogram(buckets))

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text) in self._help.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            histogram = self._histograms.get(name)
            if histogram is not None:
                lines.extend(histogram.lines(name))
                continue
            read = self._gauges.get(name)
            if read is not None:
                samples: Iterable[tuple[Labels, float]] = read()
            else:
                samples = self._counters[name].items()
            lines.extend(_series(name, labels, value) for labels, value in samples)
        return "\n".join(lines) + "\n"
