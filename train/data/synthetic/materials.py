"""What scenes are made of: Cityscapes class ids, texture grains and colour palettes."""

import numpy as np

from dense_ood_ros.labels import CITYSCAPES_CLASSES

_ID = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}
ROAD, SIDEWALK, BUILDING, WALL = _ID['road'], _ID['sidewalk'], _ID['building'], _ID['wall']
FENCE, POLE, TRAFFIC_LIGHT = _ID['fence'], _ID['pole'], _ID['traffic light']
TRAFFIC_SIGN, VEGETATION, TERRAIN = _ID['traffic sign'], _ID['vegetation'], _ID['terrain']
SKY, PERSON, CAR, TRUCK, BUS = _ID['sky'], _ID['person'], _ID['car'], _ID['truck'], _ID['bus']

# Texture ids index this table of multiplicative noise amplitudes (fine, mid, coarse scale), so
# every material has its own grain and classes cannot be told apart by flat colour alone.
(TEX_NONE, TEX_SKY, TEX_ASPHALT, TEX_PAINT, TEX_PAVING, TEX_GRASS, TEX_FOLIAGE, TEX_FACADE,
 TEX_METAL, TEX_GLASS, TEX_CLOTH, TEX_FUR, TEX_CARGO, TEX_DEBRIS, TEX_RUBBER) = range(15)
_TEXTURE_AMPLITUDE = np.array([
    (0.0, 0.0, 0.0), (0.005, 0.0, 0.0), (0.06, 0.03, 0.05), (0.05, 0.04, 0.05),
    (0.05, 0.04, 0.05), (0.16, 0.14, 0.10), (0.22, 0.22, 0.06), (0.03, 0.04, 0.06),
    (0.02, 0.01, 0.02), (0.02, 0.03, 0.05), (0.05, 0.05, 0.0), (0.06, 0.05, 0.04),
    (0.05, 0.03, 0.02), (0.04, 0.04, 0.03), (0.06, 0.03, 0.0),
], np.float32)
# The anomaly-only grains (fur, debris) are as fine as cloth: real road obstacles (boxes, tyres,
# bins, toys) are smooth, shaded surfaces, and a grain far above every inlier material's would
# make "high-frequency energy" the cue that finds them, which Gaussian-noise patches teach
# directly (DESIGN.md section 4, "A fair proxy").

# Training scenes use these colours; the vivid anomaly palette below stays clear of them.
_BUILDING_COLOURS = ((200, 185, 160), (150, 70, 55), (120, 120, 125), (225, 220, 210),
                     (215, 200, 140), (80, 80, 85), (160, 170, 185), (185, 150, 120))
_CAR_COLOURS = ((225, 225, 225), (30, 30, 35), (160, 165, 170), (100, 100, 105), (30, 45, 90),
                (150, 25, 25), (30, 70, 45), (190, 175, 140), (110, 140, 175))
_CLOTHES = ((40, 45, 70), (30, 30, 30), (110, 110, 115), (170, 150, 120), (120, 40, 40),
            (60, 80, 60), (200, 200, 200), (90, 60, 40))
_SKIN = ((235, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 40))
_ANOMALY_VIVID = ((225, 40, 200), (40, 220, 230), (150, 245, 30), (255, 120, 0), (140, 60, 230),
                  (255, 150, 190), (30, 200, 160), (245, 230, 40), (250, 30, 110))
_FUR = ((190, 110, 40), (110, 70, 40), (35, 30, 30), (225, 220, 210), (160, 100, 60))
_DEBRIS = ((150, 110, 70), (140, 70, 35), (190, 150, 90), (120, 50, 20))


def _jitter(rng, colour, amount):
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in colour)


def _pick(rng, colours, amount=12):
    return _jitter(rng, colours[rng.integers(len(colours))], amount)


def _scaled(colour, factor):
    return tuple(float(min(c * factor, 255.0)) for c in colour)
