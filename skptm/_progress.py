"""A small progress bar over images, with throughput, for ``verbose=1``."""

from __future__ import annotations

import sys
import time


class Progress:
    """Report ``done / total`` images and images per second on a stream.

    Writes a single line, redrawn in place at most every ``interval``
    seconds, and a final line when closed. Keeps no state beyond counters,
    so it costs nothing measurable per batch.
    """

    def __init__(self, total, *, label="images", stream=None, interval=0.2, width=30):
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.width = width
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._drawn_done = -1

    def update(self, n):
        self.done += n
        now = time.perf_counter()
        if now - self._last_draw >= self.interval or self.done >= self.total:
            self._draw(now)

    def close(self):
        if self._drawn_done != self.done:
            self._draw(time.perf_counter())
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, now):
        self._last_draw = now
        self._drawn_done = self.done
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        fraction = self.done / self.total if self.total else 1.0
        filled = int(self.width * fraction)
        bar = "=" * filled + (">" if filled < self.width else "") + " " * (self.width - filled - 1)
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f"ETA {remaining:.0f}s" if self.done < self.total else f"{elapsed:.1f}s"
        self.stream.write(
            f"\r{self.done}/{self.total} {self.label} [{bar[: self.width]}] "
            f"{rate:.1f} {self.label}/s {eta}"
        )
        self.stream.flush()
