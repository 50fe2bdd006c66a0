"""Street furniture: buildings, trees, walls, fences, poles, signs, lights, people, vehicles."""

import numpy as np

from train.data.synthetic.canvas import _ellipse
from train.data.synthetic.geometry import NEAR, _band, _quad
from train.data.synthetic.materials import (
    _BUILDING_COLOURS, _CAR_COLOURS, BUILDING, BUS, CAR, FENCE, PERSON, POLE, TEX_CLOTH,
    TEX_FACADE, TEX_FOLIAGE, TEX_GLASS, TEX_METAL, TEX_RUBBER, TRAFFIC_LIGHT, TRAFFIC_SIGN, TRUCK,
    VEGETATION, _jitter, _pick, _scaled)


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
