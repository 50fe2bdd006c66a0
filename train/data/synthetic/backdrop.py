"""The backdrop of a scene: sky, the ground with its markings and cast shadows, the skyline."""

import cv2
import numpy as np

from train.data.synthetic.materials import (
    BUILDING, ROAD, SIDEWALK, SKY, TERRAIN, TEX_ASPHALT, TEX_FACADE, TEX_FOLIAGE, TEX_GRASS,
    TEX_PAINT, TEX_PAVING, TEX_SKY, VEGETATION, _jitter, _scaled)


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
