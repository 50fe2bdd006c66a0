"""The perception node's parameters: names, descriptors, defaults and validation (no rclpy)."""

import dataclasses
import math

from dense_ood_ros.devices import device_form_problem
from dense_ood_ros.onnx_pipeline import DEFAULT_PROVIDERS
from dense_ood_ros.pipeline_common import PIPELINE_PARAMETER_DEFAULTS, UPSAMPLE_MODES
from dense_ood_ros.regions import DEFAULT_DRIVABLE_CLASSES, REGION_SCORES
from dense_ood_ros.scores_numpy import SCORES

# Chosen on a held-out synthetic split (seed 1), not on the demo bag: docs/regions.md.
REGION_DEFAULTS = {'min_area': 40, 'min_road_share': 0.7, 'persistence': 1, 'window': 1,
                   'score': 'peak'}
TRANSPORTS = ('raw', 'compressed')


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: default, description and whether it may change at run time."""

    default: object
    description: str
    dynamic: bool = False


PARAMETERS = {
    'checkpoint': ParameterSpec(
        '', 'Path to the model: a dense_ood_ros checkpoint (.pt, PyTorch) or an exported '
            '.onnx (ONNX Runtime, no PyTorch needed); required.'),
    'providers': ParameterSpec(
        list(DEFAULT_PROVIDERS),
        'ONNX Runtime providers in order of preference (.onnx models); those this build '
        'lacks are skipped and reported once. device cpu means CPUExecutionProvider only.'),
    'device': ParameterSpec(PIPELINE_PARAMETER_DEFAULTS['device'],
                            'auto (CUDA when present), cpu, cuda or cuda:N.'),
    'half': ParameterSpec(PIPELINE_PARAMETER_DEFAULTS['half'], 'fp16 inference (CUDA only).'),
    'input_short_edge': ParameterSpec(
        PIPELINE_PARAMETER_DEFAULTS['input_short_edge'],
        'Network input short side in pixels; 0 takes the checkpoint value.'),
    'upsample': ParameterSpec(
        PIPELINE_PARAMETER_DEFAULTS['upsample'],
        'logits: upsample logits to the frame before argmax and score (the paper); scores: '
        'compute both at network resolution and resize them (cheaper on a CPU).'),
    'score': ParameterSpec(PIPELINE_PARAMETER_DEFAULTS['score'],
                           "Anomaly score, msp or entropy; '' takes the checkpoint default.",
                           dynamic=True),
    'temperature': ParameterSpec(
        PIPELINE_PARAMETER_DEFAULTS['temperature'],
        'Softmax temperature; 0 takes the checkpoint value for the score.', dynamic=True),
    'threshold': ParameterSpec(
        PIPELINE_PARAMETER_DEFAULTS['threshold'],
        'Anomaly threshold on the score; negative takes the checkpoint value.', dynamic=True),
    'input_transport': ParameterSpec(
        'raw', 'raw subscribes image, compressed <remapped image topic>/compressed.'),
    'overlay_alpha': ParameterSpec(0.5, 'Weight of the colour mask in ~/overlay, 0..1.',
                                   dynamic=True),
    'max_input_pixels': ParameterSpec(
        4096 * 4096, 'Frames with more pixels than this are rejected.'),
    'diagnostics_period': ParameterSpec(1.0, 'Seconds between /diagnostics messages.'),
    # Health levels in /diagnostics (dense_ood_ros.health).
    'stale_input_s': ParameterSpec(
        5.0, 'ERROR when no frame arrived on a camera for this many seconds.', dynamic=True),
    'max_drop_share': ParameterSpec(
        0.5, "WARN when a larger share of a period's frames was dropped (0..1).", dynamic=True),
    'latency_budget_ms': ParameterSpec(
        0.0, 'WARN when latency p95 (header stamp to publish) exceeds this; 0 turns it off.',
        dynamic=True),
    # ~/anomaly_detections (docs/regions.md): defaults chosen on a held-out synthetic split.
    'region_min_area': ParameterSpec(
        REGION_DEFAULTS['min_area'],
        'Pixels (at the camera resolution) a region needs to be reported.', dynamic=True),
    'drivable_classes': ParameterSpec(
        list(DEFAULT_DRIVABLE_CLASSES),
        "Class names of the drivable area a region must touch; [''] keeps every region.",
        dynamic=True),
    'region_min_road_share': ParameterSpec(
        REGION_DEFAULTS['min_road_share'],
        'Share of drivable pixels a region needs in the 2-pixel ring around it; 0 means '
        'touching the drivable area is enough.', dynamic=True),
    'region_persistence': ParameterSpec(
        REGION_DEFAULTS['persistence'],
        'Report a region once seen in this many of the last region_window frames.',
        dynamic=True),
    'region_window': ParameterSpec(
        REGION_DEFAULTS['window'],
        'Frames of a camera the persistence looks back over, this one included; '
        'persistence = window = 1 reports every region at once.', dynamic=True),
    'region_score': ParameterSpec(
        REGION_DEFAULTS['score'], "A region's score: peak or mean of its pixels' scores.",
        dynamic=True),
}


def validate(name, value):
    """Return None if `value` is acceptable for parameter `name`, else the reason it is not."""
    checks = {
        'checkpoint': lambda v: None if v else 'a checkpoint path is required',
        'providers': lambda v: (None if v and all(isinstance(p, str) and p for p in v)
                                else 'must name at least one ONNX Runtime provider'),
        'device': device_form_problem,
        'input_short_edge': lambda v: None if v == 0 or v >= 32 else 'must be 0 or >= 32',
        'upsample': lambda v: (None if v in UPSAMPLE_MODES
                               else f'must be one of {UPSAMPLE_MODES}'),
        'score': lambda v: None if v in ('',) + SCORES else f'must be one of {SCORES}',
        'temperature': lambda v: None if math.isfinite(v) and v >= 0 else 'must be >= 0',
        'threshold': lambda v: None if math.isfinite(v) else 'must be finite',
        'input_transport': lambda v: None if v in TRANSPORTS else f'must be one of {TRANSPORTS}',
        'overlay_alpha': lambda v: None if 0.0 <= v <= 1.0 else 'must lie in [0, 1]',
        'max_input_pixels': lambda v: None if v >= 1 else 'must be >= 1',
        'diagnostics_period': lambda v: None if v > 0 else 'must be > 0',
        'stale_input_s': lambda v: None if v > 0 else 'must be > 0',
        'max_drop_share': lambda v: None if 0.0 <= v <= 1.0 else 'must lie in [0, 1]',
        'latency_budget_ms': lambda v: None if v >= 0 else 'must be >= 0 (0: off)',
        'region_min_area': lambda v: None if v >= 1 else 'must be >= 1',
        'drivable_classes': lambda v: (None if all(isinstance(n, str) for n in v)
                                       else 'must be a list of class names'),
        'region_min_road_share': lambda v: None if 0.0 <= v <= 1.0 else 'must lie in [0, 1]',
        'region_persistence': lambda v: None if v >= 1 else 'must be >= 1',
        'region_window': lambda v: None if v >= 1 else 'must be >= 1',
        'region_score': lambda v: (None if v in REGION_SCORES
                                   else f'must be one of {REGION_SCORES}'),
    }
    check = checks.get(name)
    return check(value) if check else None


_TYPE_NAMES = {bool: 'a bool', int: 'an integer', float: 'a double', str: 'a string',
               list: 'a list of strings'}


def coerce(name, value):
    """Return `value` in parameter `name`'s type; raise ValueError naming what was wrong.

    Parameters are declared with dynamic typing so that a compatible value never stops the
    node: an integer for a double (``threshold:=1``, a common slip on the command line and
    in YAML) is taken as that double. Anything else of the wrong type is refused.
    """
    expected = type(PARAMETERS[name].default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is list and isinstance(value, (list, tuple)) and all(
            isinstance(item, str) for item in value):
        return list(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ValueError(f'parameter {name}={value!r}: expected {_TYPE_NAMES[expected]}')


def check_persistence(params):
    """Return None if region_persistence <= region_window, else the reason it is not."""
    if params['region_persistence'] > params['region_window']:
        return (f'region_persistence {params["region_persistence"]} exceeds region_window '
                f'{params["region_window"]}')
    return None


def drivable_names(value):
    """Return the drivable class names of the parameter; [''] (or []) means none."""
    return [name for name in value if name]


def camera_names(value):
    """Return the camera names from the `cameras` parameter; unset means one unnamed camera."""
    if not value:
        return ['']
    names = list(value)
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f'cameras must be distinct non-empty names, got {names}')
    return names
