"""The canvas a scene is painted on, and the fixed-point polygon rasterising it rests on."""

import cv2
import numpy as np

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertices keep far, thin objects in place
_COORD_LIMIT = 20000.0  # pixels; cv2's fixed-point arithmetic overflows far beyond the image


class _Canvas:
    """Colour, fog depth and (label, texture, anomaly instance) buffers painted back to front."""

    def __init__(self, height, width):
        self.rgbd = np.zeros((height, width, 4), np.float32)
        self.ids = np.zeros((height, width, 3), np.uint8)
        self.ground_shade = np.ones((height, width), np.float32)

    def fill(self, polys, colour, depth, label, tex, inst=0, disjoint=False):
        """Fill the union of polygons (each Nx2 float pixels) with one flat colour.

        cv2.fillPoly fills several polygons with the even-odd rule, so overlaps would become
        holes; only polygons known to be ``disjoint`` go through it in one call.
        """
        pts = [_fixed(p) for p in polys]
        for batch in ([pts] if disjoint else [[p] for p in pts]):
            if batch:
                cv2.fillPoly(self.rgbd, batch, (*colour, float(depth)), cv2.LINE_8, _SHIFT)
                cv2.fillPoly(self.ids, batch, (label, tex, inst), cv2.LINE_8, _SHIFT)

    def paint(self, mask, origin, colours, depth, label, tex, inst=0):
        """Paint per-pixel colours (hxwx3) where a local mask (hxw) placed at origin is set."""
        x0, y0 = origin
        h, w = mask.shape
        height, width = self.ids.shape[:2]
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if ix0 >= ix1 or iy0 >= iy1:
            return
        local = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
        m = mask[local].astype(bool)
        rgbd = self.rgbd[iy0:iy1, ix0:ix1]
        rgbd[m, :3] = colours[local][m]
        rgbd[m, 3] = depth
        self.ids[iy0:iy1, ix0:ix1][m] = (label, tex, inst)

    def shade_at(self, point):
        """Return the ground shadow factor at a pixel, clamped into the image."""
        h, w = self.ground_shade.shape
        x = int(np.clip(point[0], 0, w - 1))
        y = int(np.clip(point[1], 0, h - 1))
        return float(self.ground_shade[y, x])


def _fixed(points):
    pts = np.clip(np.asarray(points, np.float64).reshape(-1, 2), -_COORD_LIMIT, _COORD_LIMIT)
    return np.round(pts * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _local_mask(polys, box):
    x0, y0, x1, y1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for p in polys:  # one at a time: fillPoly's even-odd rule would punch holes in overlaps
        cv2.fillPoly(mask, [_fixed(p - (x0, y0))], 1, cv2.LINE_8, _SHIFT)
    return mask


def _bbox(polys):
    pts = np.clip(np.concatenate(polys), -_COORD_LIMIT, _COORD_LIMIT)
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    return int(x0), int(y0), int(x1), int(y1)


def _ellipse(cx, cy, rx, ry, n=20):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], -1)
