"""Side-by-side pictures of one frame: camera | semantic colours | anomaly heat map."""

import cv2
import numpy as np

from dense_ood_ros.visualize import colorize

OUTLINE_COLOR = (255, 255, 255)
# Obstacle hypotheses (~/anomaly_detections) are drawn on the camera image in this colour.
BOX_COLOR = (255, 0, 255)


def score_range(scores):
    """Return (low, high) for colouring a run's score maps: their 1st and 99.9th percentiles.

    A fixed scale hides everything at high temperature (MSP at T=10 lives in a narrow band
    just under 1 - 1/K); one range for the whole run keeps frames comparable by colour.
    """
    values = np.concatenate([np.asarray(s, np.float32).ravel() for s in scores])
    low, high = np.percentile(values, [1.0, 99.9])
    return float(low), float(max(high, low + 1e-6))


def anomaly_heatmap(score, mask=None, value_range=None):
    """Return an RGB turbo heat map of a score map, with the anomaly mask's outline in white.

    `value_range` (low, high) maps to the colour map's ends (default: the map's own
    score_range).
    """
    low, high = value_range or score_range([score])
    grey = np.clip((np.asarray(score, np.float32) - low) / (high - low) * 255.0, 0,
                   255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    if mask is not None:
        contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(heat, contours, -1, OUTLINE_COLOR, 1)
    return heat


def draw_boxes(rgb, boxes, color=BOX_COLOR):
    """Return a copy of `rgb` with each (x, y, width, height) pixel box outlined."""
    canvas = np.array(rgb, dtype=np.uint8, copy=True)
    for x, y, width, height in boxes:
        cv2.rectangle(canvas, (int(x), int(y)), (int(x + width - 1), int(y + height - 1)),
                      color, 1)
    return canvas


def frame_panel(rgb, semantic, score, mask, lut, value_range=None, boxes=None):
    """Return camera (with detection boxes), semantic colours and heat map side by side."""
    camera = np.asarray(rgb, np.uint8) if boxes is None else draw_boxes(rgb, boxes)
    return np.hstack([camera, colorize(semantic, lut), anomaly_heatmap(score, mask, value_range)])


def write_panel(path, panel):
    """Write an RGB panel as PNG; raise OSError naming the file if OpenCV cannot."""
    if not cv2.imwrite(str(path), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
