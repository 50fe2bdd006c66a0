"""Score a stream of node outputs against a bag's ground truth, matched by header stamp.

ROS-free: eval_stream feeds it arrays and arrival times, so the accounting (sent, matched,
missing) and the metrics are the same code whether frames come from rclpy or a test.
"""

import dataclasses
import zlib

import numpy as np

# /ood/ground_truth follows Fishyscapes Lost & Found: 0 inlier, 1 outlier, 255 void.
from dense_ood_ros.datasets.sample import INLIER, OUTLIER
from dense_ood_ros.component_metrics import ComponentAccumulator
from dense_ood_ros.metrics import ConfusionMatrix, OODAccumulator, UndefinedMetricError
from dense_ood_ros.regions import mask_of_boxes

REQUIRED_SCORE = 'score'
REQUIRED_SEMANTIC = 'semantic'
# Component metrics score the node's regions: its mask, cut to the boxes it reported.
REQUIRED_MASK = 'mask'
REQUIRED_DETECTIONS = 'detections'
COMPONENT_KEYS = ('siou', 'ppv', 'f1_mean', 'truth_components', 'predicted_components')


@dataclasses.dataclass(frozen=True)
class PackedLabel:
    """A uint8 label map kept zlib-compressed: masks of a long bag would not fit in memory."""

    shape: tuple
    data: bytes

    @classmethod
    def pack(cls, array):
        """Compress a uint8 array (fast level: label maps are mostly long runs)."""
        array = np.ascontiguousarray(array, dtype=np.uint8)
        return cls(shape=array.shape, data=zlib.compress(array.tobytes(), 1))

    def unpack(self):
        """Return the uint8 array."""
        return np.frombuffer(zlib.decompress(self.data), np.uint8).reshape(self.shape)


@dataclasses.dataclass(frozen=True)
class Truth:
    """Ground truth of one frame: the outlier mask and, where the bag has it, trainIds."""

    ood: PackedLabel
    semantic: PackedLabel | None = None


class StreamScorer:
    """Accumulate OOD metrics and mIoU over the frames whose outputs all arrived.

    ``truth`` maps header stamp (ns) to :class:`Truth`; ``frames_sent`` is how many camera
    frames the bag holds. A frame is matched when its anomaly score and, if the bag has semantic
    ground truth, its semantic labels have arrived; frames never matched are missing (the node
    dropped them or the transport lost them). Outputs whose stamp is not in the bag, or that
    repeat a matched stamp (a looping player), are counted and otherwise ignored. ``keep``
    names stamps whose outputs are retained for pictures. With ``components`` a frame also
    waits for the node's anomaly mask and detections (a list of (x, y, w, h) boxes), and the
    regions they describe are scored with the component-level metrics.
    """

    def __init__(self, truth, *, frames_sent, num_classes, keep=(), components=False):
        self.truth = dict(truth)
        self.frames_sent = int(frames_sent)
        self.needs_semantic = any(t.semantic is not None for t in self.truth.values())
        self.required = {REQUIRED_SCORE} | ({REQUIRED_SEMANTIC} if self.needs_semantic
                                            else set())
        self.components = ComponentAccumulator() if components else None
        if components:
            self.required |= {REQUIRED_MASK, REQUIRED_DETECTIONS}
        self.ood = OODAccumulator()
        self.confusion = ConfusionMatrix(num_classes)
        self.keep = set(keep)
        self.kept = {}
        self.matched = set()
        self.unexpected = self.repeated = 0
        self.outlier_pixels = self.valid_pixels = 0
        self.latencies_ms = []
        self._pending = {}
        self._input_arrival = {}
        self._score_arrival = {}

    def add_input(self, stamp, arrival_s):
        """Note when a camera frame reached the evaluator (the start of its latency)."""
        self._input_arrival.setdefault(stamp, arrival_s)

    def add_output(self, kind, stamp, array, arrival_s):
        """Take one node output; score the frame once every required output is in."""
        if stamp not in self.truth:
            self.unexpected += 1
            return
        if kind not in self.required:  # wanted for pictures only
            if stamp in self.keep:
                self.kept.setdefault(stamp, {})[kind] = np.array(array)
            return
        if stamp in self.matched:
            self.repeated += 1
            return
        outputs = self._pending.setdefault(stamp, {})
        outputs[kind] = array
        if kind == REQUIRED_SCORE:
            self._score_arrival[stamp] = arrival_s
        if self.required <= outputs.keys():
            del self._pending[stamp]
            self._score(stamp, outputs)

    def _score(self, stamp, outputs):
        truth = self.truth[stamp]
        ood = truth.ood.unpack()
        score = outputs[REQUIRED_SCORE]
        if score.shape != ood.shape:
            raise ValueError(f'frame {stamp}: anomaly score is {score.shape[1]}x{score.shape[0]} '
                             f'but its ground truth {ood.shape[1]}x{ood.shape[0]}')
        self.ood.add(score, ood)
        outliers = int(np.count_nonzero(ood == OUTLIER))
        self.outlier_pixels += outliers
        self.valid_pixels += outliers + int(np.count_nonzero(ood == INLIER))
        if self.needs_semantic:
            self.confusion.add(outputs[REQUIRED_SEMANTIC], truth.semantic.unpack())
        if self.components is not None:
            regions = mask_of_boxes(outputs[REQUIRED_MASK] > 0, outputs[REQUIRED_DETECTIONS])
            self.components.add(regions, ood)
        self.matched.add(stamp)
        score_arrival = self._score_arrival.pop(stamp)
        if stamp in self._input_arrival:
            self.latencies_ms.append((score_arrival - self._input_arrival.pop(stamp)) * 1e3)
        if stamp in self.keep:
            self.kept.setdefault(stamp, {}).update(
                {kind: (list(value) if kind == REQUIRED_DETECTIONS else np.array(value))
                 for kind, value in outputs.items()})

    def done(self):
        """Tell whether every frame of the bag has been matched."""
        return len(self.matched) >= len(self.truth)

    def result(self):
        """Return the report: metrics (None where undefined), frame counts, latency."""
        report = {'ap': None, 'fpr95': None, 'auroc': None, 'miou': None,
                  **dict.fromkeys(COMPONENT_KEYS)}
        notes = []
        if self.components is not None:
            report.update({key: value for key, value in self.components.compute().items()
                           if key in COMPONENT_KEYS})
        else:
            notes.append('component metrics not measured (no ~/anomaly_detections)')
        if self.matched:
            try:
                report.update(self.ood.compute())
            except UndefinedMetricError as error:  # no outlier or no inlier pixel matched
                notes.append(f'OOD metrics undefined: {error}')
            # Any other ValueError (non-finite scores from the node) propagates: it is the
            # node's fault, not a property of the data, and must not read as "undefined".
            if self.needs_semantic:
                report['miou'] = self.confusion.compute()['miou']
        latencies = np.asarray(self.latencies_ms, dtype=np.float64)
        report.update({
            'anomaly_pixel_share': (self.outlier_pixels / self.valid_pixels
                                    if self.valid_pixels else None),
            'frames_sent': self.frames_sent,
            'frames_processed': len(self.matched),
            'frames_dropped': self.frames_sent - len(self.matched),
            'frames_unexpected': self.unexpected,
            'frames_repeated': self.repeated,
            'latency_ms_p50': float(np.percentile(latencies, 50)) if latencies.size else None,
            'latency_ms_p95': float(np.percentile(latencies, 95)) if latencies.size else None,
            'latency_frames': int(latencies.size),
            'notes': notes,
        })
        return report
