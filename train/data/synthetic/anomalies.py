"""Lost & Found style road anomalies (cargo, animals, debris, tyres): placed, then painted."""

import cv2
import numpy as np

from dense_ood_ros.labels import IGNORE_INDEX
from train.data.synthetic.canvas import _SHIFT, _bbox, _ellipse, _fixed, _local_mask
from train.data.synthetic.materials import (
    _ANOMALY_VIVID, _DEBRIS, _FUR, TEX_ASPHALT, TEX_CARGO, TEX_DEBRIS, TEX_FUR, TEX_RUBBER,
    _jitter, _pick, _scaled)

ANOMALY_KINDS = ('cargo', 'animal', 'debris', 'tyre')


def _anomaly_colours(rng, style, road, sign, shade, natural=None):
    """Return two colours: vivid never-seen ones, or grey / road-like ones offset from the road.

    Low-contrast colours lie on one side of the asphalt (``sign``, fixed per object), so the
    parts of an object never average out to the colour of the road around it. The offset is
    meant after shading: objects in a cast shadow (``shade`` < 1) get a larger albedo offset.
    """
    if style == 'vivid':
        return _pick(rng, natural or _ANOMALY_VIVID, 15), _pick(rng, _ANOMALY_VIVID, 15)
    offset = sign * (rng.uniform(15, 35) if style == 'grey' else rng.uniform(14, 24))
    offset /= max(shade, 0.4)
    first = tuple(float(np.clip(c + offset + rng.uniform(-6, 6), 0, 255)) for c in road)
    if style == 'roadlike':
        return first, _pick(rng, _ANOMALY_VIVID)
    second = tuple(float(np.clip(c + offset * rng.uniform(1.3, 1.6), 0, 255)) for c in road)
    return first, second


def _relief(style, factor):
    """Soften face shading of low-contrast objects, which would otherwise cancel their offset."""
    return 1 + (factor - 1) * (1.0 if style == 'vivid' else 0.3)


def _pattern(rng, shape, first, second, scale, style):
    """Stripes, checkers, dots or plain paint; road-like objects get a partial stripe only."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Mostly plain paint and coarse prints, like real crates and cartons (see _TEXTURE_AMPLITUDE).
    kind = rng.choice(['stripes', 'checker', 'dots', 'plain'], p=[0.2, 0.1, 0.1, 0.6])
    period = max(4.0, scale * rng.uniform(0.35, 0.7))
    if kind == 'stripes' or style == 'roadlike':
        angle = rng.uniform(0, np.pi)
        mask = ((xx * np.cos(angle) + yy * np.sin(angle)) / period % 1) < 0.5
    elif kind == 'checker':
        mask = ((xx // period + yy // period) % 2) == 0
    elif kind == 'dots':
        mask = (xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2
        mask = mask < (0.3 * period) ** 2
    else:
        mask = np.zeros((h, w), bool)
    if style == 'roadlike':
        mask &= xx < w * rng.uniform(0.15, 0.45)
    out = np.empty((h, w, 3), np.float32)
    out[:] = first
    out[mask] = second
    return out


def _draw_cargo(canvas, geo, rng, *, u, z, size, style, sign, shade, inst, road):
    """Lost cargo: one or two boxes with a yaw, painted with stripes, checkers or dots."""
    for box in range(1 if rng.random() < 0.7 else 2):
        w, d, h = size * rng.uniform(0.6, 1.0, 3)
        yaw = rng.uniform(-0.8, 0.8)
        cx, cz = geo.centre(z) + u + box * w * 1.1, z + d / 2
        corners = np.array([[-w, -d], [w, -d], [w, d], [-w, d]]) / 2
        rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        foot = corners @ rot.T + (cx, cz)
        bottom = geo.project_world(foot[:, 0], 0, foot[:, 1])
        top = geo.project_world(foot[:, 0], h, foot[:, 1])
        faces = []
        for i in range(4):
            j = (i + 1) % 4
            edge = foot[j] - foot[i]
            normal = np.array([edge[1], -edge[0]])  # outward for counter-clockwise corners
            view = -(foot[i] + foot[j]) / 2
            cos = normal @ view / (np.linalg.norm(normal) * np.linalg.norm(view) + 1e-9)
            if cos > 0:
                faces.append((np.stack([bottom[i], bottom[j], top[j], top[i]]), 0.65 + 0.35 * cos))
        faces.append((top, 1.12))
        box_px = _bbox([top, bottom])
        first, second = _anomaly_colours(rng, style, road, sign, shade)
        pattern = _pattern(rng, (box_px[3] - box_px[1], box_px[2] - box_px[0]), first, second,
                           w * geo.focal / z, style) * shade
        tex = TEX_ASPHALT if style == 'roadlike' else TEX_CARGO
        for poly, light in faces:
            mask = _local_mask([poly], box_px)
            canvas.paint(mask, box_px[:2], pattern * _relief(style, light), z, IGNORE_INDEX,
                         tex, inst)


def _draw_animal(canvas, geo, rng, *, u, z, size, style, sign, shade, inst, road):
    """Animal-like blob in profile: clustered ellipses, four legs, head, ears, tail, fur."""
    length = size
    body_h = length * rng.uniform(0.35, 0.55)
    leg = length * rng.uniform(0.25, 0.5)
    facing = rng.choice([-1, 1])
    s = geo.focal / z

    def px(du, y):
        return geo.project(u + np.asarray(du), np.asarray(y), z)

    polys = []
    for du in np.linspace(-0.3, 0.3, rng.integers(3, 5)) * length:
        (cx, cy), = px(du, leg + body_h / 2 + rng.uniform(-0.1, 0.1) * body_h)
        polys.append(_ellipse(cx, cy, length * rng.uniform(0.25, 0.35) * s,
                              body_h / 2 * rng.uniform(0.8, 1.1) * s))
    lw = 0.07 * length
    for du in np.array([-0.35, -0.22, 0.22, 0.35]) * length:
        tilt = rng.uniform(-0.05, 0.05) * length
        polys.append(px([du - lw / 2 + tilt, du + lw / 2 + tilt, du + lw / 2, du - lw / 2],
                        [0, 0, leg + body_h * 0.4, leg + body_h * 0.4]))
    hx, hy = facing * length * 0.58, leg + body_h * rng.uniform(0.8, 1.2)
    (cx, cy), = px(hx, hy)
    polys.append(_ellipse(cx, cy, 0.17 * length * s, 0.12 * length * s))
    for ear in (-0.06, 0.05):
        polys.append(px([hx + ear * length, hx + (ear + 0.06) * length, hx + (ear + 0.02)
                         * length], [hy + 0.05 * length] * 2 + [hy + 0.2 * length]))
    tail = -facing * length * 0.48
    polys.append(px([tail, tail - facing * 0.25 * length, tail - facing * 0.27 * length, tail],
                    [leg + body_h * 0.7, leg + body_h * 1.1, leg + body_h, leg + body_h * 0.5]))
    box = _bbox(polys)
    shape = (box[3] - box[1], box[2] - box[0])
    first, second = _anomaly_colours(rng, style, road, sign, shade, natural=_FUR)
    fur = rng.standard_normal(shape).astype(np.float32)
    clumps = cv2.resize(rng.standard_normal((shape[0] // 4 + 2, shape[1] // 4 + 2)).astype(
        np.float32), shape[::-1], interpolation=cv2.INTER_LINEAR)
    colours = np.empty(shape + (3,), np.float32)
    colours[:] = first
    if style == 'vivid' and rng.random() < 0.5:
        colours[clumps > 0.6] = second  # patches like a cow or a tabby
    colours *= (1 + 0.05 * fur + 0.15 * clumps)[..., None]
    tex = TEX_ASPHALT if style == 'roadlike' else TEX_FUR
    canvas.paint(_local_mask(polys, box), box[:2], np.clip(colours, 0, 255) * shade, z,
                 IGNORE_INDEX, tex, inst)


def _draw_debris(canvas, geo, rng, *, u, z, size, style, sign, shade, inst, road):
    """Scattered irregular flat pieces, each a low prism lying on the road."""
    pieces = []
    for _ in range(rng.integers(3, 9)):
        angle, dist = rng.uniform(0, 2 * np.pi), size * np.sqrt(rng.random())
        pu, pz = u + dist * np.cos(angle), z + 0.8 * dist * np.sin(angle)
        n = rng.integers(5, 9)
        a = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(0.05, 0.3) * rng.uniform(0.5, 1.0, n)
        pieces.append((pz, pu + r * np.cos(a), pz + r * np.sin(a), rng.uniform(0.02, 0.15)))
    natural = _DEBRIS if rng.random() < 0.5 else None  # wood and rust, or bright plastic
    colours = _anomaly_colours(rng, style, road, sign, shade, natural=natural)
    tex = TEX_ASPHALT if style == 'roadlike' else TEX_DEBRIS
    for pz, us, zs, height in sorted(pieces, key=lambda p: -p[0]):
        colour = _scaled(_jitter(rng, colours[int(rng.random() < 0.3)], 10), shade)
        canvas.fill([geo.project(us, 0, zs)], _scaled(colour, _relief(style, 0.7)), pz,
                    IGNORE_INDEX, tex, inst)
        canvas.fill([geo.project(us, height, zs)], colour, pz, IGNORE_INDEX, tex, inst)


def _draw_tyre(canvas, geo, rng, *, u, z, size, style, sign, shade, inst, road):
    """Lost tyre: upright with a rim, or lying flat with the road visible through the hole."""
    r, width = size / 2, size * rng.uniform(0.3, 0.45)
    rubber = (rng.uniform(25, 45),) * 3
    rim = _pick(rng, _ANOMALY_VIVID) if style == 'vivid' else (150, 150, 155)
    if style != 'vivid':
        rubber, rim = _anomaly_colours(rng, style, road, sign, shade)
    a = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    if rng.random() < 0.5:
        squeeze = max(abs(np.cos(rng.uniform(-1.2, 1.2))), width / size)
        outer = geo.project(u + r * squeeze * np.cos(a), r + r * np.sin(a), z)
        hub = geo.project(u + 0.55 * r * squeeze * np.cos(a), r + 0.55 * r * np.sin(a), z)
        box = _bbox([outer])
        shape = (box[3] - box[1], box[2] - box[0])
        mask = _local_mask([outer], box)
        colours = np.empty(shape + (3,), np.float32)
        colours[:] = rubber
        colours[_local_mask([hub], box).astype(bool)] = rim
    else:
        ring = [geo.project(u + k * r * np.cos(a), y, z + k * r * np.sin(a))
                for k, y in ((1, 0), (1, width), (0.55, 0), (0.55, width))]
        box = _bbox(ring)
        shape = (box[3] - box[1], box[2] - box[0])
        hull = cv2.convexHull(_fixed(np.concatenate(ring[:2])))
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [hull - np.array([box[0], box[1]], np.int32) * (1 << _SHIFT)], 1,
                     cv2.LINE_8, _SHIFT)
        hole = _local_mask([ring[2]], box) & _local_mask([ring[3]], box)
        mask &= 1 - hole
        colours = np.empty(shape + (3,), np.float32)
        colours[:] = rubber
        colours[_local_mask([ring[1]], box).astype(bool)] = _scaled(rubber, _relief(style, 1.25))
    tex = TEX_ASPHALT if style == 'roadlike' else TEX_RUBBER
    canvas.paint(mask, box[:2], colours * shade, z, IGNORE_INDEX, tex, inst)


_ANOMALY_DRAW = {'cargo': _draw_cargo, 'animal': _draw_animal, 'debris': _draw_debris,
                 'tyre': _draw_tyre}
# Typical size in metres (box edge, body length, scatter radius, diameter) and its spread.
_ANOMALY_SIZE = {'cargo': (0.25, 0.9), 'animal': (0.4, 1.3), 'debris': (0.3, 1.2),
                 'tyre': (0.55, 0.8)}


def _plan_anomalies(rng, geo, vehicles, relaxed=False):
    """Place 1..3 anomalies on visible road, never behind a nearer vehicle or each other."""
    anomalies, boxes = [], []
    zmin = geo.bottom_depth * 1.15
    for _ in range(rng.integers(1, 4)):
        kind = ANOMALY_KINDS[rng.integers(len(ANOMALY_KINDS))]
        style = rng.choice(['vivid', 'grey', 'roadlike'], p=[0.4, 0.35, 0.25])
        size = rng.uniform(*_ANOMALY_SIZE[kind])
        # Far enough to be small, but at least ~6 px tall/wide, as in Lost & Found.
        zmax = max(min(50.0, geo.focal * size / 6), zmin * 1.01)
        for _ in range(30):
            z = float(np.exp(rng.uniform(np.log(zmin), np.log(zmax))))
            lo, hi = geo.u_range(z, margin=4 + size * geo.focal / z)
            lo, hi = max(lo, -geo.half_width + 0.3 + size), min(hi, geo.half_width - 0.3 - size)
            if lo >= hi:
                continue
            u = rng.uniform(lo, hi)
            (x, y), = geo.project(u, 0, z)
            half = 1.5 * size * geo.focal / z
            box = (x - half, y - 2 * half, x + half, y + 0.5 * half)
            nearer = [v['bbox'] for v in vehicles if v['z'] < z + 1] + boxes
            if not relaxed and any(_overlap(box, b) for b in nearer):
                continue
            boxes.append(box)
            anomalies.append(dict(kind=kind, u=u, z=z, size=size, style=str(style),
                                  seed=int(rng.integers(2 ** 31))))
            break
    return anomalies


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw_anomaly(canvas, geo, *, kind, u, z, size, style, seed, inst, road):
    rng = np.random.default_rng(seed)
    # Lighter or darker than the asphalt, whichever leaves room for the offset.
    level = float(np.mean(road))
    sign = 1 if level < 60 else -1 if level > 190 else int(rng.choice([-1, 1]))
    shade = canvas.shade_at(geo.project(u, 0, z)[0])
    _ANOMALY_DRAW[kind](canvas, geo, rng, u=u, z=z, size=size, style=style, sign=sign,
                        shade=shade, inst=inst, road=road)
