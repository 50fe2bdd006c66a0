"""Per-camera counters and latency percentiles behind the node's /diagnostics (no rclpy)."""

import collections
import threading

import numpy as np

PERIOD_COUNTERS = ('received', 'dropped', 'rejected', 'failed', 'non_finite')


class FrameStats:
    """Thread-safe counts of received, processed, dropped and rejected frames, plus latency.

    Rates are computed over the window since the previous `snapshot()`, which the node calls
    once per diagnostics period; latencies keep the last `window` frames. Two latencies:
    `latency` runs from the header stamp (camera and transport delay included) and
    `processing` from the message's arrival in the node, both to the end of publishing;
    `inference` is the pipeline's share of `processing` (the forward pass of the frame's
    batch), so processing minus inference is what the node itself adds.
    """

    def __init__(self, window=200):
        self._lock = threading.Lock()
        self._latencies_ms = collections.deque(maxlen=window)
        self._processing_ms = collections.deque(maxlen=window)
        self._inference_ms = collections.deque(maxlen=window)
        self.received = self.processed = self.dropped = self.rejected = 0
        # Frames whose forward pass also served another camera's frame (one batched pass).
        self.batched = 0
        # Obstacle hypotheses published on ~/anomaly_detections, all frames together.
        self.detections = 0
        # Frames whose inference raised, and frames whose scores were not all finite.
        self.failed = self.non_finite = 0
        self.last_input_s = None  # time.monotonic() of the newest frame's arrival
        self._last = (0, 0, None)
        self._last_counts = dict.fromkeys(PERIOD_COUNTERS, 0)

    def note_input(self, now_s):
        """Record that a frame arrived at `now_s` (time.monotonic())."""
        with self._lock:
            self.last_input_s = now_s

    def count(self, name, amount=1):
        """Add to the counter `name` (received, processed, dropped, rejected, batched, ...)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def add_latency(self, *, since_stamp_ms, since_arrival_ms, inference_ms):
        """Record the latencies of one processed frame and its pipeline time."""
        with self._lock:
            self._latencies_ms.append(since_stamp_ms)
            self._processing_ms.append(since_arrival_ms)
            self._inference_ms.append(inference_ms)

    def snapshot(self, now_s):
        """Return a dict of counters, rates since the last snapshot and latency percentiles."""
        with self._lock:
            received, processed, last_time = self._last
            elapsed = None if last_time is None else now_s - last_time
            rate = (lambda new, old: (new - old) / elapsed if elapsed else 0.0)
            values = {
                'received': self.received, 'processed': self.processed,
                'dropped': self.dropped, 'rejected': self.rejected, 'batched': self.batched,
                'detections': self.detections, 'failed': self.failed,
                'non_finite': self.non_finite,
                # What happened since the previous snapshot, for the health levels.
                **{f'period_{name}': getattr(self, name) - self._last_counts[name]
                   for name in PERIOD_COUNTERS},
                'input_rate_hz': rate(self.received, received),
                'processed_rate_hz': rate(self.processed, processed),
                **_percentiles('latency_ms', self._latencies_ms),
                **_percentiles('processing_ms', self._processing_ms),
                **_percentiles('inference_ms', self._inference_ms),
            }
            self._last = (self.received, self.processed, now_s)
            self._last_counts = {name: getattr(self, name) for name in PERIOD_COUNTERS}
            return values


def _percentiles(name, values):
    values = np.asarray(values, dtype=np.float64)
    return {f'{name}_p{q}': float(np.percentile(values, q)) if values.size else None
            for q in (50, 95)}
