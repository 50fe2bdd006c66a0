"""Score a stream of node outputs against a bag's ground truth, matched by header stamp.

ROS-free: eval_stream feeds it arrays and arrival times, so the accounting (sent, matched,
missing) and the metrics are the same code whether frames come from rclpy or a test.
"""

import dataclasses
import zlib

import numpy as np

from dense_ood_ros.evaluation import (ComponentSettings, DenseEvaluator, GroundTruth,
                                      Prediction)
from dense_ood_ros.regions import mask_of_boxes

REQUIRED_SCORE = 'score'
REQUIRED_SEMANTIC = 'semantic'
# Component metrics score the node's regions: its mask, cut to the boxes it reported.
REQUIRED_MASK = 'mask'
REQUIRED_DETECTIONS = 'detections'
COMPONENT_KEYS = ('siou', 'ppv', 'f1_mean', 'truth_components', 'predicted_components')
# The evaluator's one score row and one region row: what the node published, at the node's
# own settings, which the stream does not know.
PUBLISHED_SCORE = (None, None)
PUBLISHED_REGIONS = ComponentSettings(drivable=None, min_areas=(None,), min_road_shares=(None,))


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

    def unpack(self):
        """Return the frame's GroundTruth (arrays)."""
        return GroundTruth(ood=self.ood.unpack(),
                           semantic=None if self.semantic is None else self.semantic.unpack())


class StreamScorer:
    """Match a node's outputs to a bag's frames by stamp and score the complete frames.

    ``truth`` maps header stamp (ns) to :class:`Truth`; ``frames_sent`` is how many camera
    frames the bag holds. A frame is matched when its anomaly score and, if the bag has semantic
    ground truth, its semantic labels have arrived; frames never matched are missing (the node
    dropped them or the transport lost them). Outputs whose stamp is not in the bag, or that
    repeat a matched stamp (a looping player), are counted and otherwise ignored. ``keep``
    names stamps whose outputs are retained for pictures. With ``components`` a frame also
    waits for the node's anomaly mask and detections (a list of (x, y, w, h) boxes), and the
    regions they describe are scored with the component-level metrics. The metrics are
    dense_ood_ros.evaluation.DenseEvaluator's, as train.evaluate's.
    """

    def __init__(self, truth, *, frames_sent, num_classes, keep=(), components=False):
        self.truth = dict(truth)
        self.frames_sent = int(frames_sent)
        self.needs_semantic = any(t.semantic is not None for t in self.truth.values())
        self.required = {REQUIRED_SCORE} | ({REQUIRED_SEMANTIC} if self.needs_semantic
                                            else set())
        self.components = bool(components)
        if components:
            self.required |= {REQUIRED_MASK, REQUIRED_DETECTIONS}
        self.evaluator = DenseEvaluator(
            num_classes, settings=(PUBLISHED_SCORE,),
            components=PUBLISHED_REGIONS if components else None)
        self.keep = set(keep)
        self.kept = {}
        self.matched = set()
        self.unexpected = self.repeated = 0
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
        truth = self.truth[stamp].unpack()
        score = outputs[REQUIRED_SCORE]
        if score.shape != truth.ood.shape:
            height, width = truth.ood.shape
            raise ValueError(f'frame {stamp}: anomaly score is {score.shape[1]}x{score.shape[0]} '
                             f'but its ground truth {width}x{height}')
        regions = ()
        if self.components:
            regions = (mask_of_boxes(outputs[REQUIRED_MASK] > 0, outputs[REQUIRED_DETECTIONS]),)
        self.evaluator.process(Prediction(labels=outputs.get(REQUIRED_SEMANTIC), scores=(score,),
                                          regions=regions), truth)
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
        # Non-finite scores from the node raise ValueError here: the node's fault, not a
        # property of the data, so they must not read as "undefined".
        metrics = self.evaluator.evaluate()
        (row,) = metrics['rows']
        report = {key: row[key] for key in ('ap', 'fpr95', 'auroc')}
        report['miou'] = metrics['miou']
        report.update(dict.fromkeys(COMPONENT_KEYS))
        notes = []
        if self.components:
            report.update({key: value for key, value in metrics['components'][0].items()
                           if key in COMPONENT_KEYS})
        else:
            notes.append('component metrics not measured (no ~/anomaly_detections)')
        if metrics['ood_undefined']:  # no outlier or no inlier pixel matched
            notes.append(f'OOD metrics undefined: {metrics["ood_undefined"]}')
        latencies = np.asarray(self.latencies_ms, dtype=np.float64)
        report.update({
            'anomaly_pixel_share': metrics['anomaly_pixel_share'],
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
