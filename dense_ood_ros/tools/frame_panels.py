"""Side-by-side pictures of one frame: camera | semantic colours | anomaly heat map."""

import cv2
import numpy as np

from dense_ood_ros.visualize import colorize

OUTLINE_COLOR = (255, 255, 255)


def anomaly_heatmap(score, mask=None):
    """Return an RGB turbo heat map of a score map, with the anomaly mask's outline in white.

    Scores are shown on a fixed 0..1 scale (MSP's range), widened to the map's maximum for
    scores beyond 1 (entropy), so frames of one run are comparable by colour.
    """
    scale = max(1.0, float(np.max(score)))
    grey = np.clip(np.asarray(score, np.float32) / scale * 255.0, 0, 255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    if mask is not None:
        contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(heat, contours, -1, OUTLINE_COLOR, 1)
    return heat


def frame_panel(rgb, semantic, score, mask, lut):
    """Return camera, palette-coloured semantic and heat map side by side (uint8 RGB)."""
    return np.hstack([np.asarray(rgb, np.uint8), colorize(semantic, lut),
                      anomaly_heatmap(score, mask)])


def write_panel(path, panel):
    """Write an RGB panel as PNG; raise OSError naming the file if OpenCV cannot."""
    if not cv2.imwrite(str(path), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
