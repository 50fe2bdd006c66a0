"""Per-camera counters and latency percentiles behind the node's /diagnostics (no rclpy)."""

import collections
import threading

import numpy as np


class FrameStats:
    """Thread-safe counts of received, processed, dropped and rejected frames, plus latency.

    Rates are computed over the window since the previous `snapshot()`, which the node calls
    once per diagnostics period; latencies keep the last `window` frames.
    """

    def __init__(self, window=200):
        self._lock = threading.Lock()
        self._latencies_ms = collections.deque(maxlen=window)
        self.received = self.processed = self.dropped = self.rejected = 0
        self._last = (0, 0, None)

    def count(self, name, amount=1):
        """Add `amount` to the counter `name` (received, processed, dropped or rejected)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def add_latency(self, milliseconds):
        """Record the latency of one processed frame."""
        with self._lock:
            self._latencies_ms.append(milliseconds)

    def snapshot(self, now_s):
        """Return a dict of counters, rates since the last snapshot and latency percentiles."""
        with self._lock:
            received, processed, last_time = self._last
            elapsed = None if last_time is None else now_s - last_time
            rate = (lambda new, old: (new - old) / elapsed if elapsed else 0.0)
            latencies = np.asarray(self._latencies_ms, dtype=np.float64)
            values = {
                'received': self.received, 'processed': self.processed,
                'dropped': self.dropped, 'rejected': self.rejected,
                'input_rate_hz': rate(self.received, received),
                'processed_rate_hz': rate(self.processed, processed),
                'latency_ms_p50': float(np.percentile(latencies, 50)) if latencies.size else None,
                'latency_ms_p95': float(np.percentile(latencies, 95)) if latencies.size else None,
            }
            self._last = (self.received, self.processed, now_s)
            return values
