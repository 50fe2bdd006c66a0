"""Procedural street scenes with Cityscapes trainIds and Lost & Found style road anomalies."""

import argparse
import dataclasses
import functools
import operator
import pathlib
import shutil
import sys
import tempfile

import cv2
import numpy as np

from dense_ood_ros.atomic_file import replace_dir
from dense_ood_ros.labels import CITYSCAPES_CLASSES, IGNORE_INDEX

_ID = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}
ROAD, SIDEWALK, BUILDING, WALL = _ID['road'], _ID['sidewalk'], _ID['building'], _ID['wall']
FENCE, POLE, TRAFFIC_LIGHT = _ID['fence'], _ID['pole'], _ID['traffic light']
TRAFFIC_SIGN, VEGETATION, TERRAIN = _ID['traffic sign'], _ID['vegetation'], _ID['terrain']
SKY, PERSON, CAR, TRUCK, BUS = _ID['sky'], _ID['person'], _ID['car'], _ID['truck'], _ID['bus']
VOID = IGNORE_INDEX

SPLITS = ('train', 'val', 'test')
ANOMALY_KINDS = ('cargo', 'animal', 'debris', 'tyre')
LF_DIRS = ('images', 'labels_masks', 'semantic')

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

CURVE_END = 120.0  # metres; beyond this the road goes on straight, so the horizon stays sane
NEAR = 0.3  # metres; nothing is projected closer than this
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertices keep far, thin objects in place
_COORD_LIMIT = 20000.0  # pixels; cv2's fixed-point arithmetic overflows far beyond the image


@dataclasses.dataclass(frozen=True)
class Scene:
    """One rendered frame.

    ``image`` is uint8 HxWx3 RGB; ``semantic`` uint8 HxW Cityscapes trainIds with 255 on
    anomalies; ``ood`` uint8 HxW in the Fishyscapes Lost & Found convention (1 anomaly, 0 road,
    255 everything else); ``anomalies`` the kinds placed, and ``anomaly_ids`` uint8 HxW with
    ``k`` on the pixels of ``anomalies[k - 1]`` and 0 elsewhere.
    """

    image: np.ndarray
    semantic: np.ndarray
    ood: np.ndarray
    anomalies: list
    anomaly_ids: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Pinhole camera above a road; road coordinates are (lateral u, height y, depth z) in m."""

    height: int
    width: int
    focal: float
    cx: float
    horizon: float
    cam_height: float
    lanes: int
    lane_width: float
    cam_u: float
    heading: float
    curvature: float
    sidewalk: tuple  # (left, right) widths in metres, 0 where there is none
    strip: tuple  # terrain strip beyond the sidewalk, (left, right)

    @property
    def half_width(self):
        return self.lanes * self.lane_width / 2

    @property
    def bottom_depth(self):
        return self.focal * self.cam_height / (self.height - self.horizon)

    def centre(self, z):
        """Return the world x of the road's centre line at depth z (a parabola, then straight)."""
        z = np.asarray(z, np.float64)
        near = np.minimum(z, CURVE_END)
        bend = near ** 2 + 2 * CURVE_END * np.maximum(z - CURVE_END, 0)
        return -self.cam_u + self.heading * z + self.curvature * bend

    def project_world(self, x, y, z):
        """Return Nx2 pixel coordinates of world points (x right, y up, z forward), N >= 1."""
        x, y, z = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, np.float64))
                                        for v in (x, y, z)))
        z = np.maximum(z, NEAR)
        return np.stack([self.cx + self.focal * x / z,
                         self.horizon + self.focal * (self.cam_height - y) / z], -1)

    def project(self, u, y, z):
        """Return Nx2 pixel coordinates of points in road coordinates."""
        z = np.asarray(z, np.float64)
        return self.project_world(self.centre(z) + u, y, z)

    def u_range(self, z, margin=0.0):
        """Return the lateral interval of road coordinates inside the image at depth z."""
        lo = (margin - self.cx) * z / self.focal - self.centre(z)
        hi = (self.width - margin - self.cx) * z / self.focal - self.centre(z)
        return float(lo), float(hi)

    def side_edge(self, side):
        """Return |u| of the outer sidewalk edge on a side (-1 left, +1 right)."""
        return self.half_width + self.sidewalk[(side + 1) // 2]

    def visible_start(self, u, z0):
        """Clip a span starting at z0 so that its near end lies well outside the image."""
        margin = max(min(self.cx, self.width - self.cx), 1.0)
        return max(z0, NEAR, self.focal * max(abs(u - self.cam_u), 0.5) / (2 * margin))


@dataclasses.dataclass(frozen=True)
class _Look:
    """Appearance of a scene: sky, weather, lighting and material colours."""

    sky_top: tuple
    sky_horizon: tuple
    clouds: float
    fog_distance: float
    sun_side: int
    shadow: float  # multiplier inside cast shadows, 1 when overcast
    brightness: float
    contrast: float
    gains: tuple
    noise_sigma: float
    blur_sigma: float
    asphalt: tuple
    marking: tuple
    centre_marking: tuple
    paving: tuple
    curb: tuple
    grass: tuple
    far_ground: tuple
    foliage: tuple
    tile: float


def _jitter(rng, colour, amount):
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in colour)


def _pick(rng, colours, amount=12):
    return _jitter(rng, colours[rng.integers(len(colours))], amount)


def _scaled(colour, factor):
    return tuple(float(min(c * factor, 255.0)) for c in colour)


def _sample_geometry(rng, height, width):
    hfov = np.deg2rad(rng.uniform(55, 80))
    lanes = int(rng.choice([2, 2, 3, 4]))
    lane_width = rng.uniform(2.9, 3.6)
    half = lanes * lane_width / 2
    # Drive on the right: the ego lane is one of the right half of the lanes.
    ego = rng.integers(lanes // 2, lanes)
    return _Geometry(
        height=height, width=width, focal=width / 2 / np.tan(hfov / 2),
        cx=width * (0.5 + rng.uniform(-0.06, 0.06)), horizon=height * rng.uniform(0.36, 0.5),
        cam_height=rng.uniform(1.3, 1.9), lanes=lanes, lane_width=lane_width,
        cam_u=-half + (ego + 0.5) * lane_width + rng.uniform(-0.4, 0.4),
        heading=rng.uniform(-0.04, 0.04),
        curvature=0.0 if rng.random() < 0.4 else rng.uniform(-0.003, 0.003),
        sidewalk=tuple(rng.uniform(1.8, 4.5) if rng.random() < 0.93 else 0.0 for _ in range(2)),
        strip=tuple(rng.uniform(0.8, 4.0) if rng.random() < 0.4 else 0.0 for _ in range(2)))


def _sample_look(rng):
    overcast = rng.random() < 0.35
    if overcast:
        g = rng.uniform(150, 200)
        sky_top = (g - 5, g, g + 8)
        sky_horizon = tuple(min(g + d, 255.0) for d in (20, 22, 25))
        clouds, shadow = 0.0, 1.0
    else:
        sky_top = (rng.uniform(40, 90), rng.uniform(100, 150), rng.uniform(190, 240))
        sky_horizon = (rng.uniform(175, 215), rng.uniform(200, 228), rng.uniform(225, 250))
        clouds = rng.uniform(0.2, 1.0) if rng.random() < 0.6 else 0.0
        shadow = rng.uniform(0.45, 0.7)
    g = rng.uniform(70, 130)
    white = rng.uniform(200, 245)
    temperature = rng.uniform(-1, 1)
    if rng.random() < 0.6:
        paving = _jitter(rng, (165, 162, 158), 25)
    else:
        paving = (rng.uniform(150, 190), rng.uniform(110, 140), rng.uniform(100, 130))
    if rng.random() < 0.8:
        grass = (rng.uniform(60, 110), rng.uniform(100, 150), rng.uniform(35, 70))
    else:
        grass = (rng.uniform(140, 170), rng.uniform(130, 150), rng.uniform(70, 90))
    if rng.random() < 0.9:
        foliage = (rng.uniform(40, 80), rng.uniform(80, 130), rng.uniform(25, 55))
    else:
        foliage = (rng.uniform(120, 160), rng.uniform(90, 120), rng.uniform(30, 50))
    far_ground = grass if rng.random() < 0.6 else _jitter(rng, (125, 105, 80), 15)
    return _Look(
        sky_top=sky_top, sky_horizon=sky_horizon, clouds=clouds,
        fog_distance=rng.uniform(80, 200) if rng.random() < 0.15 else rng.uniform(250, 900),
        sun_side=int(rng.choice([-1, 1])), shadow=shadow,
        brightness=rng.uniform(0.75, 1.2), contrast=rng.uniform(0.8, 1.15),
        gains=(1 + 0.08 * temperature, 1.0, 1 - 0.08 * temperature),
        noise_sigma=rng.uniform(1.0, 3.0), blur_sigma=rng.uniform(0.35, 0.8),
        asphalt=(g, g + rng.uniform(-3, 3), g + rng.uniform(-2, 8)),
        marking=(white, white, white * rng.uniform(0.95, 1.0)),
        centre_marking=(230, 190, 50) if rng.random() < 0.3 else (white, white, white),
        paving=paving, curb=_jitter(rng, (190, 190, 190), 20), grass=grass,
        far_ground=far_ground, foliage=foliage, tile=rng.uniform(0.3, 0.6))


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


def _band(geo, u, z0, z1, y0, y1, n=12):
    """Return the image polygon of a vertical strip along the road from z0 to z1."""
    zs = np.geomspace(z0, z1, n)
    bottom = geo.project(u, np.broadcast_to(y0, zs.shape), zs)
    top = geo.project(u, np.broadcast_to(y1, zs.shape), zs)
    return np.concatenate([bottom, top[::-1]])


def _quad(geo, u0, u1, y0, y1, z):
    """Return the image polygon of an upright rectangle facing the camera at depth z."""
    return geo.project(np.array([u0, u1, u1, u0]), np.array([y0, y0, y1, y1]), z)


# --- sky, ground and skyline ----------------------------------------------------------------


def _draw_sky(canvas, geo, look, rng):
    """Fill the whole canvas with a vertical sky gradient and, on some days, noise clouds."""
    h, w = canvas.ids.shape[:2]
    t = np.clip((np.arange(h) + 0.5) / max(geo.horizon, 1.0), 0, 1)[:, None] ** 1.5
    top, bottom = np.array(look.sky_top, np.float32), np.array(look.sky_horizon, np.float32)
    sky = np.broadcast_to((top + (bottom - top) * t)[:, None, :], (h, w, 3)).copy()
    if look.clouds > 0:
        coarse = cv2.resize(rng.standard_normal((h // 16 + 2, w // 16 + 2)).astype(np.float32),
                            (w, h), interpolation=cv2.INTER_CUBIC)
        fine = cv2.resize(rng.standard_normal((h // 5 + 2, w // 5 + 2)).astype(np.float32),
                          (w, h), interpolation=cv2.INTER_CUBIC)
        field = coarse + 0.35 * fine
        cover = np.clip((field - (1.4 - 1.4 * look.clouds)) / 0.8, 0, 1)[..., None]
        cloud = np.array((238, 238, 242), np.float32) * (0.85 + 0.05 * fine[..., None])
        sky = sky * (1 - cover) + cloud * cover
    canvas.rgbd[..., :3] = sky
    canvas.rgbd[..., 3] = 0  # no fog on the sky: it already is the fog colour at the horizon
    canvas.ids[...] = (SKY, TEX_SKY, 0)


def _draw_ground(canvas, geo, look, plan):
    """Paint road, markings, curbs, sidewalks and terrain per pixel, with cast shadows."""
    h, w = canvas.ids.shape[:2]
    top = int(np.floor(geo.horizon)) + 1
    if top >= h:
        return
    z = geo.focal * geo.cam_height / (np.arange(top, h) + 0.5 - geo.horizon)
    zz = np.broadcast_to(z[:, None], (h - top, w))
    u = (np.arange(w) + 0.5 - geo.cx)[None, :] * zz / geo.focal - geo.centre(z)[:, None]
    right = u >= 0
    sidewalk = np.where(right, geo.sidewalk[1], geo.sidewalk[0])
    strip = np.where(right, geo.strip[1], geo.strip[0])
    d = np.abs(u) - geo.half_width  # metres outside the road edge
    road = d < 0
    # Categories: 0 asphalt, 1 marking, 2 curb, 3 paving, 4 terrain strip, 5 far ground,
    # 6 centre marking.
    cat = np.full(d.shape, 5, np.uint8)
    cat[d < sidewalk + strip] = 4
    cat[d < sidewalk] = 3
    cat[(d < 0.2) & (sidewalk > 0)] = 2
    cat[road] = 0
    m = plan.markings
    pos = (u + geo.half_width) / geo.lane_width
    k = np.rint(pos)
    on_line = road & (k >= 1) & (k <= geo.lanes - 1)
    on_line &= np.abs(pos - k) * geo.lane_width < m['width'] / 2
    dashed = ((zz / m['period'] + m['phase']) % 1) < m['duty']
    centre = k == geo.lanes // 2
    cat[on_line & dashed & ~centre] = 1
    cat[on_line & centre & (dashed | m['centre_solid'])] = 6
    if m['edge_lines']:
        cat[road & (np.abs(d + 0.35) < m['width'] / 2)] = 1
    if m['crosswalk'] is not None:
        near = (zz > m['crosswalk']) & (zz < m['crosswalk'] + 3.5) & (d < -0.3)
        cat[near & (((u + geo.half_width) / 1.1 % 1) < 0.5)] = 1
    colours = np.array([look.asphalt, look.marking, look.curb, look.paving, look.grass,
                        look.far_ground, look.centre_marking], np.float32)
    labels = np.array([ROAD, ROAD, SIDEWALK, SIDEWALK, TERRAIN, TERRAIN, ROAD], np.uint8)
    textures = np.array([TEX_ASPHALT, TEX_PAINT, TEX_PAVING, TEX_PAVING, TEX_GRASS, TEX_GRASS,
                         TEX_PAINT], np.uint8)
    shade = np.ones(d.shape, np.float32)
    # Paving joints, only where a tile is several pixels wide (aliasing would read as noise).
    tile_px = look.tile * geo.focal / zz
    joints = ((d / look.tile % 1) < 0.07) | ((zz / look.tile % 1) < 0.07)
    shade[(cat == 3) & joints & (tile_px > 4)] = 0.82
    _cast_shadows(shade, u, zz, d, geo, look, plan)
    canvas.rgbd[top:, :, :3] = colours[cat] * shade[..., None]
    canvas.rgbd[top:, :, 3] = np.minimum(zz, 1e4)
    canvas.ids[top:, :, 0] = labels[cat]
    canvas.ids[top:, :, 1] = textures[cat]
    canvas.ids[top:, :, 2] = 0
    canvas.ground_shade[top:] = shade


def _cast_shadows(shade, u, z, d, geo, look, plan):
    """Darken ground shade where buildings, trees and vehicles block the light."""
    if look.shadow < 1:
        # The sun stands behind the buildings on sun_side: they shade a band of the road.
        s = look.sun_side
        for b in plan.buildings:
            if b['side'] != s:
                continue
            offset = abs(b['u']) - geo.half_width
            inside = (np.sign(u) == s) & (d > offset - plan.shadow_reach)
            inside &= (z > b['z0'] + plan.shadow_shift) & (z < b['z1'] + plan.shadow_shift)
            shade[inside] = np.minimum(shade[inside], look.shadow)
        for t in plan.trees:
            inside = ((u - t['u'] + s * 0.4 * t['r']) / t['r']) ** 2
            inside = inside + ((z - t['z']) / (0.7 * t['r'])) ** 2 < 1
            shade[inside] = np.minimum(shade[inside], look.shadow)
    for v in plan.vehicles:
        # Contact shadow under every vehicle, also on overcast days.
        inside = (np.abs(u - v['u']) < v['w'] / 2 + 0.15)
        inside &= (z > v['z'] - 0.3) & (z < v['z'] + v['length'] + 0.2)
        shade[inside] = np.minimum(shade[inside], 0.4 if look.shadow < 1 else 0.55)


def _draw_skyline(canvas, geo, *, segments):
    """Distant buildings and tree lines on the horizon, hazy through fog."""
    for kind, xs, tops, colour in segments:
        poly = np.concatenate([np.stack([xs, tops], -1),
                               [[xs[-1], geo.horizon + 1], [xs[0], geo.horizon + 1]]])
        label, tex = (BUILDING, TEX_FACADE) if kind == 'building' else (VEGETATION, TEX_FOLIAGE)
        canvas.fill([poly], colour, 600.0, label, tex)


def _plan_skyline(rng, geo, look, urban):
    segments, x = [], 0.0
    while x < geo.width:
        seg = geo.width * rng.uniform(0.03, 0.15)
        r = rng.random()
        height = geo.height * rng.uniform(0.01, 0.06)
        if r < (0.45 if urban else 0.1):
            xs = np.array([x, x + seg])
            colour = _jitter(rng, (140, 140, 145), 25)
            segments.append(('building', xs, np.full(2, geo.horizon - height), colour))
        elif r < 0.8:
            xs = np.linspace(x, x + seg, 12)
            tops = geo.horizon - height * rng.uniform(0.5, 1.0, xs.shape)
            segments.append(('trees', xs, tops, _scaled(look.foliage, 0.8)))
        x += seg
    return segments


# --- buildings, vegetation and other things beside the road ---------------------------------


def _draw_building(canvas, geo, *, side, u, z0, z1, height, depth, colour, plinth, windows):
    """Facade parallel to the road with a plinth, rows of windows and a visible end wall."""
    zs = geo.visible_start(u, z0)
    if zs >= z1:
        return
    fog = float(np.sqrt(zs * z1))
    canvas.fill([_band(geo, u, zs, z1, 0, height)], colour, fog, BUILDING, TEX_FACADE)
    if z0 > zs:
        end = geo.project(np.array([u, u + side * depth, u + side * depth, u]),
                          np.array([0, 0, height, height]), z0)
        canvas.fill([end], _scaled(colour, 0.75), fog, BUILDING, TEX_FACADE)
    canvas.fill([_band(geo, u, zs, z1, 0, plinth[0])], plinth[1], fog, BUILDING, TEX_FACADE)
    if windows is None:
        return
    za, ya = np.meshgrid(np.arange(z0 + 0.8, z1 - windows['width'] - 0.5, windows['spacing']),
                         np.arange(windows['first'], height - 1.5, windows['floor']))
    za, ya = za.ravel(), ya.ravel()
    keep = za >= zs
    za, ya = za[keep], ya[keep]
    zb, yb = za + windows['width'], ya + windows['height']
    quads = np.stack([geo.project(u, ya, za), geo.project(u, ya, zb), geo.project(u, yb, zb),
                      geo.project(u, yb, za)], 1)
    big = np.abs(quads[:, 2, 1] - quads[:, 1, 1]) > 1.0
    for group, colour in enumerate(windows['colours']):
        chosen = big & (np.arange(len(quads)) % len(windows['colours']) == group)
        canvas.fill(list(quads[chosen]), colour, fog, BUILDING, TEX_GLASS, disjoint=True)


def _plan_buildings(rng, geo, side, strip):
    buildings = []
    # Without a sidewalk, keep a verge in front of the houses rather than asphalt up to the door.
    face = geo.side_edge(side) + strip + (0 if geo.sidewalk[(side + 1) // 2] else 2.5)
    z, end = rng.uniform(-10, 5), rng.uniform(80, 160)
    while z < end:
        if rng.random() < 0.2:
            z += rng.uniform(4, 15)
        length = rng.uniform(8, 30)
        colour = _pick(rng, _BUILDING_COLOURS, 15)
        windows = None
        if rng.random() < 0.85:
            width = rng.uniform(0.9, 1.6)
            glass = _jitter(rng, (55, 65, 80), 15)
            windows = dict(width=width, height=rng.uniform(1.2, 1.8),
                           spacing=width + rng.uniform(0.8, 2.2), first=rng.uniform(1.0, 3.5),
                           floor=rng.uniform(2.8, 3.6),
                           colours=[glass, _scaled(glass, 1.4), _scaled(glass, 0.7)])
        buildings.append(dict(
            side=side, u=side * (face + (rng.uniform(0, 2) if rng.random() < 0.3 else 0)),
            z0=z, z1=z + length, height=rng.uniform(6, 26), depth=rng.uniform(8, 15),
            colour=colour, windows=windows,
            plinth=(rng.uniform(0.3, 1.0), _scaled(colour, rng.uniform(0.6, 0.85)))))
        z += length
    return buildings


def _draw_tree(canvas, geo, *, u, z, trunk_h, trunk_w, blobs, trunk_colour, leaves):
    """Trunk plus a crown of overlapping noisy-green discs (all labelled vegetation)."""
    shade = canvas.shade_at(geo.project(u, 0, z)[0])
    trunk = _quad(geo, u - trunk_w / 2, u + trunk_w / 2, 0, trunk_h + 0.5, z)
    canvas.fill([trunk], _scaled(trunk_colour, shade), z, VEGETATION, TEX_FOLIAGE)
    scale = geo.focal / z
    # Dark discs first, then smaller lit discs on their upper parts.
    for (colour, lift, shrink) in ((leaves[0], 0.0, 1.0), (leaves[1], 0.25, 0.65)):
        polys = []
        for du, dy, r in blobs:
            cx, cy = geo.project(u + du, trunk_h + dy + lift * r, z)[0]
            polys.append(_ellipse(cx, cy, r * shrink * scale, r * shrink * scale, 18))
        canvas.fill(polys, colour, z, VEGETATION, TEX_FOLIAGE)


def _plan_trees(rng, geo, look, side, u, z0, z1, spacing):
    trees, z = [], z0 + rng.uniform(0, spacing)
    while z < z1:
        r = rng.uniform(1.2, 3.0)
        n = rng.integers(5, 11)
        blobs = [(rng.uniform(-r, r) * 0.8, r + rng.uniform(-0.4, 0.9) * r,
                  r * rng.uniform(0.45, 0.8)) for _ in range(n)]
        leaves = [_scaled(look.foliage, rng.uniform(0.6, 0.8)),
                  _scaled(look.foliage, rng.uniform(0.95, 1.25))]
        trees.append(dict(u=u + side * rng.uniform(-0.3, 0.3), z=z, trunk_h=rng.uniform(1.8, 3.5),
                          trunk_w=rng.uniform(0.2, 0.4), blobs=blobs,
                          trunk_colour=_jitter(rng, (85, 65, 50), 15), leaves=leaves, r=r))
        z += spacing * rng.uniform(0.7, 1.3)
    return trees


def _draw_band(canvas, geo, *, u, z0, z1, y0, tops, colour, label, tex):
    """Hedge, wall or tree line: a strip along the road with an optionally ragged top."""
    zs = geo.visible_start(u, z0)
    if zs >= z1:
        return
    tops = np.interp(np.geomspace(zs, z1, len(tops)), np.geomspace(max(z0, NEAR), z1,
                                                                   len(tops)), tops)
    fog = float(np.sqrt(zs * z1))
    canvas.fill([_band(geo, u, zs, z1, y0, tops, len(tops))], colour, fog, label, tex)


def _draw_fence(canvas, geo, *, u, z0, z1, height, colour, post_spacing, rails):
    """Railing fence: posts and horizontal rails, with the background showing through."""
    zs = geo.visible_start(u, z0)
    if zs >= z1:
        return
    fog = float(np.sqrt(zs * z1))
    polys = [_band(geo, u, zs, z1, y - 0.04, y + 0.04) for y in np.linspace(0.3, height, rails)]
    polys += [_quad(geo, u - 0.05, u + 0.05, 0, height + 0.05, z)
              for z in np.arange(z0, z1, post_spacing) if z >= zs]
    canvas.fill(polys, colour, fog, FENCE, TEX_METAL)


def _draw_streetlight(canvas, geo, *, u, z, side, height, width, colour):
    """Pole with an arm reaching over the road and a lamp head."""
    arm = -side * min(1.8, geo.half_width * 0.5)
    polys = [_quad(geo, u - width / 2, u + width / 2, 0, height, z),
             _quad(geo, min(u, u + arm), max(u, u + arm), height - 0.12, height, z),
             _quad(geo, u + arm - 0.3, u + arm + 0.3, height - 0.25, height - 0.05, z)]
    canvas.fill(polys, colour, z, POLE, TEX_METAL)


def _draw_sign(canvas, geo, *, u, z, height, radius, shape, border, face, pole_colour):
    """Pole with a round, triangular, square or diamond plate."""
    canvas.fill([_quad(geo, u - 0.04, u + 0.04, 0, height, z)], pole_colour, z, POLE, TEX_METAL)
    cx, cy = geo.project(u, height + radius, z)[0]
    r = radius * geo.focal / z
    n = {'circle': 20, 'triangle': 3, 'square': 4, 'diamond': 4}[shape]
    turn = {'circle': 0, 'triangle': -np.pi / 2, 'square': np.pi / 4, 'diamond': 0}[shape]
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + turn
    plate = np.stack([np.cos(a), np.sin(a)], -1)
    canvas.fill([plate * r + (cx, cy)], border, z, TRAFFIC_SIGN, TEX_METAL)
    if face is not None:
        canvas.fill([plate * r * 0.72 + (cx, cy)], face, z, TRAFFIC_SIGN, TEX_METAL)


def _draw_traffic_light(canvas, geo, *, u, z, height, housing, lit):
    """Pole with a three-lamp housing; one lamp is lit."""
    canvas.fill([_quad(geo, u - 0.07, u + 0.07, 0, height, z)], (90, 90, 90), z, POLE,
                TEX_METAL)
    canvas.fill([_quad(geo, u - 0.17, u + 0.17, height, height + 0.95, z)], housing, z,
                TRAFFIC_LIGHT, TEX_METAL)
    r = 0.1 * geo.focal / z
    for i, colour in enumerate(((230, 40, 30), (240, 170, 20), (40, 220, 90))):
        cx, cy = geo.project(u, height + 0.78 - 0.3 * i, z)[0]
        lamp = colour if i == lit else _scaled(colour, 0.25)
        canvas.fill([_ellipse(cx, cy, r, r, 12)], lamp, z, TRAFFIC_LIGHT, TEX_METAL)


def _draw_person(canvas, geo, *, u, z, height, stride, clothes, skin, hair):
    """Front-facing pedestrian silhouette: legs, torso, arms and head."""
    s = height
    shade = canvas.shade_at(geo.project(u, 0, z)[0])
    trousers, shirt = (_scaled(c, shade) for c in clothes)
    hip = np.array([0, 0, 0.48, 0.48]) * s
    feet = np.array([1, 1, 0, 0]) * stride  # walking: feet apart, hips together
    legs = [geo.project(u + np.array([-0.11, -0.01, -0.02, -0.12]) * s - feet, hip, z),
            geo.project(u + np.array([0.01, 0.11, 0.12, 0.02]) * s + feet, hip, z)]
    canvas.fill(legs, trousers, z, PERSON, TEX_CLOTH)
    torso = geo.project(u + np.array([-0.12, 0.12, 0.13, -0.13]) * s,
                        np.array([0.46, 0.46, 0.82, 0.82]) * s, z)
    arms = [_quad(geo, u - 0.17 * s, u - 0.12 * s, 0.5 * s, 0.81 * s, z),
            _quad(geo, u + 0.12 * s, u + 0.17 * s, 0.5 * s, 0.81 * s, z)]
    canvas.fill([torso] + arms, shirt, z, PERSON, TEX_CLOTH)
    cx, cy = geo.project(u, 0.9 * s, z)[0]
    r = 0.065 * s * geo.focal / z
    canvas.fill([_ellipse(cx, cy, r * 0.85, r, 14)], _scaled(skin, shade), z, PERSON, TEX_CLOTH)
    canvas.fill([_ellipse(cx, cy - 0.45 * r, r * 0.9, r * 0.6, 14)], _scaled(hair, shade), z,
                PERSON, TEX_CLOTH)


# --- vehicles --------------------------------------------------------------------------------


def _vehicle_bbox(geo, v):
    us = v['u'] + np.array([-1, 1, -1, 1, -1, 1, -1, 1]) * v['w'] / 2
    ys = np.array([0, 0, 1, 1, 0, 0, 1, 1]) * v['h']
    zs = v['z'] + np.array([0, 0, 0, 0, 1, 1, 1, 1]) * v['length']
    pts = geo.project(us, ys, zs)
    return (*pts.min(0), *pts.max(0))


def _draw_vehicle(canvas, geo, *, u, z, w, h, length, colour, label, front, **_):
    """Car (lower body plus cabin) or boxy truck / bus, convex parts painted back to front."""
    shade = canvas.shade_at(geo.project(u, 0, z)[0])
    body, glass = _scaled(colour, shade), _scaled((40, 48, 58), shade)
    tyre = _scaled((25, 25, 25), shade)
    clear, boxy = 0.2, label != CAR
    waist = h if boxy else h * 0.55
    span = z + np.array([0, 0, 1, 1]) * length  # near edge, then far edge
    across = u + np.array([-1, 1, 1, -1]) * w / 2
    cam = -float(geo.centre(z))  # camera position in road coordinates at this depth
    side = -1 if u - w / 2 > cam else 1 if u + w / 2 < cam else 0  # visible flank, if any

    def fill(poly, paint, tex=TEX_METAL):
        canvas.fill([poly], paint, z, label, tex)

    # Top of the lower body (bonnet and boot; the roof of a truck), seen from above.
    fill(geo.project(across, waist, span), _scaled(body, 1.1))
    if side:
        flank = u + side * w / 2
        along = z + np.array([0, 1, 1, 0]) * length
        fill(geo.project(flank, np.array([clear, clear, waist, waist]), along),
             _scaled(body, 0.8))
        a = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        for hub in (z + 0.17 * length, z + 0.8 * length):
            fill(geo.project(flank, 0.33 + 0.33 * np.sin(a), hub + 0.33 * np.cos(a)), tyre,
                 TEX_RUBBER)
        if boxy:
            fill(geo.project(flank, np.array([0.55, 0.55, 0.8, 0.8]) * h,
                             z + np.array([0.1, 0.9, 0.9, 0.1]) * length), glass, TEX_GLASS)
    if not boxy:
        # Cabin: a prism whose slanted rear window runs from (bottom, waist) to (top, roof).
        cab = 0.42 * w
        bottom, top = z + 0.12 * length, z + 0.28 * length
        far_bottom, far_top = z + 0.85 * length, z + 0.72 * length
        if side:
            flank = u + side * cab
            fill(geo.project(flank, np.array([waist, waist, h, h]),
                             np.array([bottom, far_bottom, far_top, top])), _scaled(body, 0.8))
            inset = 0.06 * length
            fill(geo.project(flank, np.array([waist + 0.05, waist + 0.05, h - 0.06, h - 0.06]),
                             np.array([bottom + inset, far_bottom - inset, far_top - inset / 3,
                                       top + inset / 3])), glass, TEX_GLASS)
        roof = u + np.array([-1, 1, 1, -1]) * cab
        fill(geo.project(roof, h, np.array([top, top, far_top, far_top])), _scaled(body, 1.1))
        fill(geo.project(roof, np.array([waist, waist, h, h]),
                         np.array([bottom, bottom, top, top])), body)
        y0, y1 = waist + 0.06, h - 0.05
        zy = bottom + (top - bottom) * (np.array([y0, y0, y1, y1]) - waist) / (h - waist)
        fill(geo.project(u + np.array([-1, 1, 1, -1]) * cab * 0.88,
                         np.array([y0, y0, y1, y1]), zy), glass, TEX_GLASS)
    # Near face: tyres peeking out under the bumper, body, lights, plate (and a truck window).
    for x0 in (u - w / 2 + 0.05, u + w / 2 - 0.3):
        fill(_quad(geo, x0, x0 + 0.25, 0, clear + 0.1, z), tyre, TEX_RUBBER)
    fill(_quad(geo, u - w / 2, u + w / 2, clear, waist, z), body)
    if boxy:
        fill(_quad(geo, u - w * 0.4, u + w * 0.4, h * 0.6, h * 0.88, z), glass, TEX_GLASS)
    lamp = _scaled((235, 230, 200) if front else (200, 30, 30), shade)
    ly = min(waist - 0.08, 1.0)
    for x0 in (u - w / 2 + 0.05, u + w / 2 - 0.3):
        fill(_quad(geo, x0, x0 + 0.25, ly - 0.15, ly, z), lamp)
    fill(_quad(geo, u - 0.25, u + 0.25, clear + 0.12, clear + 0.24, z),
         _scaled((215, 215, 210), shade))


def _plan_vehicles(rng, geo):
    vehicles = []

    def add(lane_u, z, front, car=False):
        kind = 1.0 if car else rng.random()
        if kind < 0.06:
            label, w, h, length = TRUCK, rng.uniform(2.3, 2.5), rng.uniform(2.8, 3.6), 7.0
        elif kind < 0.12:
            label, w, h, length = BUS, 2.5, rng.uniform(3.0, 3.3), 11.0
        else:
            label, w, h, length = CAR, rng.uniform(1.65, 1.9), rng.uniform(1.35, 1.6), 4.5
        vehicles.append(dict(u=lane_u + rng.uniform(-0.25, 0.25), z=z, w=w, h=h, length=length,
                             colour=_pick(rng, _CAR_COLOURS, 15), label=label, front=front))
        return length

    ego = int(np.floor((geo.cam_u + geo.half_width) / geo.lane_width))
    for lane in range(geo.lanes):
        lane_u = -geo.half_width + (lane + 0.5) * geo.lane_width
        z = geo.bottom_depth * 1.1 + (4 if lane == ego else 0) + rng.uniform(0, 25)
        while z < 90 and rng.random() < 0.55:
            z += add(lane_u, z, lane < geo.lanes // 2) + rng.uniform(6, 30)
    if not any(v['label'] == CAR for v in vehicles):
        lane_u = -geo.half_width + (ego + 0.5) * geo.lane_width
        z = rng.uniform(8, 35) + geo.bottom_depth
        vehicles = [v for v in vehicles if abs(v['u'] - lane_u) > 1 or abs(v['z'] - z) > 12]
        add(lane_u, z, False, car=True)
    for v in vehicles:
        v['bbox'] = _vehicle_bbox(geo, v)
    return vehicles


# --- anomalies -------------------------------------------------------------------------------


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
            canvas.paint(mask, box_px[:2], pattern * _relief(style, light), z, VOID, tex,
                         inst)


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
    canvas.paint(_local_mask(polys, box), box[:2], np.clip(colours, 0, 255) * shade, z, VOID,
                 tex, inst)


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
        canvas.fill([geo.project(us, 0, zs)], _scaled(colour, _relief(style, 0.7)), pz, VOID,
                    tex, inst)
        canvas.fill([geo.project(us, height, zs)], colour, pz, VOID, tex, inst)


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
    canvas.paint(mask, box[:2], colours * shade, z, VOID, tex, inst)


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


# --- planning and rendering ------------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
    geo: _Geometry
    look: _Look
    markings: dict
    items: list  # (depth, draw function) painted far to near
    buildings: list
    trees: list
    vehicles: list
    shadow_reach: float
    shadow_shift: float


def _plan_side(rng, geo, look, side, items, buildings, trees):
    """Plan what stands beside the road on one side: buildings or open land, and street gear."""
    i = (side + 1) // 2
    edge, strip = geo.side_edge(side), geo.strip[i]
    urban = rng.random() < 0.82
    if urban:
        for b in _plan_buildings(rng, geo, side, strip):
            buildings.append(b)
            items.append((5000.0, functools.partial(_draw_building, **b)))
            if rng.random() < 0.25:
                tops = rng.uniform(0.8, 1.6) + 0.15 * rng.standard_normal(24)
                items.append((4000.0, functools.partial(
                    _draw_band, u=b['u'] - side * 0.5, z0=b['z0'], z1=b['z1'], y0=0, tops=tops,
                    colour=_scaled(look.foliage, 0.85), label=VEGETATION, tex=TEX_FOLIAGE)))
    else:
        u = side * (edge + strip + rng.uniform(3, 15))
        # Forest edge: a slowly wandering canopy height with bumps of single crowns.
        tops = rng.uniform(4, 12) + np.cumsum(rng.standard_normal(48)) * 0.4
        tops += rng.uniform(-1.2, 1.2, 48)
        items.append((5000.0, functools.partial(
            _draw_band, u=u, z0=-5.0, z1=300.0, y0=0, tops=np.clip(tops, 2, 25),
            colour=_scaled(look.foliage, 0.75), label=VEGETATION, tex=TEX_FOLIAGE)))
    barrier = rng.random()
    kerb_tree_u = side * (edge - 0.8) if geo.sidewalk[i] else side * (edge + 1.2)
    tree_u = side * (edge + strip / 2) if strip > 1 else kerb_tree_u
    if barrier < 0.3:
        # A wall or fence behind the sidewalk (or verge); trees then stand in front of it,
        # as they are painted after it.
        z0 = rng.uniform(0, 30)
        z1 = z0 + rng.uniform(15, 80)
        u = side * (edge + (0.05 if geo.sidewalk[i] else 2.5))
        tree_u = kerb_tree_u
        if barrier < 0.15:
            items.append((4000.0, functools.partial(
                _draw_band, u=u, z0=z0, z1=z1, y0=0, tops=np.full(4, rng.uniform(0.7, 2.5)),
                colour=_jitter(rng, (165, 160, 150), 25), label=WALL, tex=TEX_FACADE)))
        else:
            items.append((4000.0, functools.partial(
                _draw_fence, u=u, z0=z0, z1=z1, height=rng.uniform(1.0, 1.8),
                colour=_pick(rng, ((60, 70, 60), (120, 120, 125), (140, 100, 70))),
                post_spacing=rng.uniform(1.5, 2.5), rails=int(rng.integers(2, 4)))))
    if rng.random() < (0.6 if urban else 0.8):
        for t in _plan_trees(rng, geo, look, side, tree_u, rng.uniform(0, 10),
                             rng.uniform(40, 120), rng.uniform(6, 15)):
            trees.append(t)
            items.append((t['z'], functools.partial(_draw_tree, **{
                k: t[k] for k in ('u', 'z', 'trunk_h', 'trunk_w', 'blobs', 'trunk_colour',
                                  'leaves')})))
    pole_u = side * (geo.half_width + min(0.5, 0.3 * geo.sidewalk[i]) + 0.3)
    if rng.random() < 0.8:
        z, colour = rng.uniform(3, 20), _jitter(rng, (110, 112, 115), 25)
        while z < 120:
            items.append((z, functools.partial(
                _draw_streetlight, u=pole_u, z=z, side=side, height=rng.uniform(6, 9),
                width=rng.uniform(0.15, 0.25), colour=colour)))
            z += rng.uniform(18, 35)
    for _ in range(rng.integers(0, 3)):
        z = rng.uniform(6, 50)
        shape = rng.choice(['circle', 'triangle', 'square', 'diamond'])
        border, face = {'circle': ((200, 30, 30), (235, 235, 235)),
                        'triangle': ((200, 30, 30), (235, 235, 235)),
                        'square': ((30, 70, 160), (30, 70, 160)),
                        'diamond': ((235, 235, 235), (240, 200, 20))}[shape]
        if rng.random() < 0.2:
            border, face = (150, 150, 150), None  # seen from behind
        items.append((z, functools.partial(
            _draw_sign, u=pole_u + side * 0.2, z=z, height=rng.uniform(2.0, 2.6),
            radius=rng.uniform(0.3, 0.45), shape=str(shape), border=border, face=face,
            pole_colour=(120, 120, 125))))
    if geo.sidewalk[i] > 0:
        for _ in range(min(rng.poisson(0.8), 4)):
            z = float(np.exp(rng.uniform(np.log(geo.bottom_depth * 1.2), np.log(45))))
            items.append((z, functools.partial(
                _draw_person, u=side * (geo.half_width + rng.uniform(0.4, geo.sidewalk[i])),
                z=z, height=rng.uniform(1.55, 1.95), stride=rng.uniform(0, 0.12),
                clothes=(_pick(rng, _CLOTHES), _pick(rng, _CLOTHES)), skin=_pick(rng, _SKIN, 8),
                hair=_pick(rng, ((30, 25, 20), (90, 60, 35), (160, 130, 80), (120, 120, 120))))))
    return urban


def _plan_scene(rng, height, width):
    geo = _sample_geometry(rng, height, width)
    look = _sample_look(rng)
    markings = dict(width=rng.uniform(0.12, 0.2), period=rng.uniform(8, 13),
                    duty=rng.uniform(0.3, 0.5), phase=rng.uniform(0, 1),
                    centre_solid=rng.random() < 0.4, edge_lines=rng.random() < 0.5,
                    crosswalk=rng.uniform(8, 30) if rng.random() < 0.2 else None)
    items, buildings, trees = [], [], []
    urban = [_plan_side(rng, geo, look, side, items, buildings, trees) for side in (-1, 1)]
    if rng.random() < 0.25:
        z = rng.uniform(15, 45)
        lit = int(rng.integers(3))
        for side in (-1, 1):
            items.append((z, functools.partial(
                _draw_traffic_light, u=side * (geo.half_width + 0.6), z=z,
                height=rng.uniform(2.8, 3.5), housing=_pick(rng, ((40, 40, 40), (200, 170, 40))),
                lit=lit)))
    vehicles = _plan_vehicles(rng, geo)
    items.extend((v['z'], functools.partial(_draw_vehicle, **v)) for v in vehicles)
    segments = _plan_skyline(rng, geo, look, any(urban) or rng.random() < 0.5)
    items.append((1e4, functools.partial(_draw_skyline, segments=segments)))
    return _Plan(geo=geo, look=look, markings=markings, items=items, buildings=buildings,
                 trees=trees, vehicles=vehicles,
                 shadow_reach=rng.uniform(1.0, geo.half_width + 4.0),
                 shadow_shift=rng.uniform(-4, 4))


def _finish(canvas, look, rng):
    """Texture, fog, lighting, optics blur and sensor noise: albedo buffers to a uint8 image."""
    h, w = canvas.ids.shape[:2]
    amp = _TEXTURE_AMPLITUDE[canvas.ids[..., 1]]
    factor = 1 + amp[..., 0] * rng.standard_normal((h, w), dtype=np.float32)
    for i, step in ((1, 4), (2, 16)):
        small = rng.standard_normal((h // step + 2, w // step + 2), dtype=np.float32)
        field = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        factor += amp[..., i] * field * (1 / (float(field.std()) + 1e-6))
    fog = 1 - np.exp(canvas.rgbd[..., 3] * (-1 / look.fog_distance))
    image = canvas.rgbd[..., :3] * (factor * (1 - fog))[..., None]
    image += fog[..., None] * np.array(look.sky_horizon, np.float32)
    # Contrast about mid-grey, brightness and colour temperature: one affine map per channel.
    gains = look.brightness * np.array(look.gains, np.float32)
    image = image * (look.contrast * gains) + 128 * (1 - look.contrast) * gains
    image = cv2.GaussianBlur(image, (0, 0), look.blur_sigma)
    # Luminance-only sensor noise: a third of the cost of per-channel noise, looks the same.
    noise = rng.standard_normal((h, w, 1), dtype=np.float32)
    image += noise * look.noise_sigma + 0.5
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _render(plan, anomalies, seed, on_top=False):
    geo, look = plan.geo, plan.look
    rng = np.random.default_rng([seed, 2])  # textures: the same with and without anomalies
    canvas = _Canvas(geo.height, geo.width)
    _draw_sky(canvas, geo, look, rng)
    _draw_ground(canvas, geo, look, plan)
    items = list(plan.items)
    for inst, a in enumerate(anomalies, 1):
        depth = -1.0 if on_top else a['z']
        items.append((depth, functools.partial(_draw_anomaly, inst=inst, road=look.asphalt,
                                               **a)))
    for _, draw in sorted(items, key=operator.itemgetter(0), reverse=True):
        draw(canvas, geo)
    return canvas, _finish(canvas, look, rng)


def render_scene(seed, *, height=256, width=512, anomalies=False):
    """Render one street scene, deterministically from ``seed``.

    With ``anomalies`` the same scene gets 1..3 road anomalies (``ANOMALY_KINDS``) painted in
    at their depth; everything else stays as without them.
    """
    seed = operator.index(seed)
    if seed < 0:
        raise ValueError(f'seed must be non-negative, got {seed}')
    if height < 32 or width < 32:
        raise ValueError(f'scene must be at least 32x32, got {height}x{width}')
    plan = _plan_scene(np.random.default_rng(seed), height, width)
    placed = []
    for attempt in range(16):
        if anomalies:
            rng = np.random.default_rng([seed, 1, attempt])
            placed = _plan_anomalies(rng, plan.geo, plan.vehicles, relaxed=attempt == 15)
        # The last attempt paints anomalies over everything, so one is always visible.
        canvas, image = _render(plan, placed, seed, on_top=attempt == 15)
        counts = np.bincount(canvas.ids[..., 2].ravel(), minlength=len(placed) + 1)
        if not anomalies or (placed and counts[1:].max() >= 10):
            break
    semantic = canvas.ids[..., 0].copy()
    visible = [k for k in range(1, len(placed) + 1) if counts[k] > 0]
    lut = np.zeros(256, np.uint8)
    lut[visible] = np.arange(1, len(visible) + 1)
    anomaly_ids = lut[canvas.ids[..., 2]]
    ood = np.full(semantic.shape, 255, np.uint8)
    ood[semantic == ROAD] = 0
    ood[anomaly_ids > 0] = 1
    return Scene(image=image, semantic=semantic, ood=ood,
                 anomalies=[placed[k - 1]['kind'] for k in visible], anomaly_ids=anomaly_ids)


def image_seed(seed, split, index):
    """Return the scene seed of image ``index`` of ``split``; splits never share a seed."""
    code = SPLITS.index(split)
    state = np.random.SeedSequence([seed, code, index]).generate_state(2, np.uint32)
    # The split code sits in the two low bits, so seeds of different splits cannot coincide.
    return ((int(state[0]) << 29 | int(state[1]) >> 3) << 2) | code  # < 2**63


class SyntheticStreetWorld:
    """Map-style dataset of rendered street scenes; only the 'test' split has anomalies.

    Torch-free, but usable as a ``torch.utils.data.Dataset``: ``world[i]`` is a ``Scene``.
    """

    def __init__(self, split, *, num_images, height=256, width=512, seed=0):
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if num_images < 0 or seed < 0:
            raise ValueError('num_images and seed must be non-negative')
        self.split, self.num_images = split, int(num_images)
        self.height, self.width, self.seed = int(height), int(width), int(seed)

    def __len__(self):
        return self.num_images

    def seed_of(self, index):
        """Return the scene seed of an image index (negative indices count from the end)."""
        index = operator.index(index)
        if index < 0:
            index += self.num_images
        if not 0 <= index < self.num_images:
            raise IndexError(f'index {index} out of range for {self.num_images} images')
        return image_seed(self.seed, self.split, index)

    def __getitem__(self, index):
        return render_scene(self.seed_of(index), height=self.height, width=self.width,
                            anomalies=self.split == 'test')


def _write_png(path, array):
    if not cv2.imwrite(str(path), array):
        raise OSError(f'could not write {path}')


def write_lf_layout(root, *, num_images, height=256, width=512, seed=0, split='test'):
    """Write a split in the Fishyscapes Lost & Found layout and return the root path.

    ``root/images/synthetic_NNNN.png`` (RGB), ``root/labels_masks/`` (0 road, 1 anomaly,
    255 void) and ``root/semantic/`` (trainIds, 255 void). Each directory is written into a
    temporary sibling and renamed into place, so readers never see a partial directory.
    """
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    world = SyntheticStreetWorld(split, num_images=num_images, height=height, width=width,
                                 seed=seed)
    digits = max(4, len(str(max(num_images - 1, 0))))
    temp = {}
    try:
        for name in LF_DIRS:
            temp[name] = pathlib.Path(tempfile.mkdtemp(prefix=f'.{name}.', dir=root))
            temp[name].chmod(0o755)
        for i in range(num_images):
            scene = world[i]
            file = f'synthetic_{i:0{digits}d}.png'
            _write_png(temp['images'] / file, cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
            _write_png(temp['labels_masks'] / file, scene.ood)
            _write_png(temp['semantic'] / file, scene.semantic)
        for name in LF_DIRS:
            replace_dir(temp[name], root / name)
    finally:
        for path in temp.values():
            shutil.rmtree(path, ignore_errors=True)
    return root


def _positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be positive, got {value}')
    return value


def main(argv=None):
    """Write a synthetic split to disk in the Fishyscapes Lost & Found layout."""
    parser = argparse.ArgumentParser(prog='python -m train.data.synthetic',
                                     description=main.__doc__)
    parser.add_argument('--out', required=True, type=pathlib.Path, help='output root')
    parser.add_argument('--num-images', required=True, type=_positive)
    parser.add_argument('--height', type=_positive, default=256)
    parser.add_argument('--width', type=_positive, default=512)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--split', choices=SPLITS, default='test')
    args = parser.parse_args(argv)
    root = write_lf_layout(args.out, num_images=args.num_images, height=args.height,
                           width=args.width, seed=args.seed, split=args.split)
    print(f'wrote {args.num_images} {args.split} scenes ({args.height}x{args.width}, '
          f'seed {args.seed}) to {root}: {", ".join(d + "/" for d in LF_DIRS)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
