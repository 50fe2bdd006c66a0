"""Scenes: a seed is planned into a street, which is painted far to near and labelled."""

import dataclasses
import functools
import operator

import numpy as np

from train.data.synthetic.anomalies import _draw_anomaly, _plan_anomalies
from train.data.synthetic.backdrop import _draw_ground, _draw_sky, _draw_skyline, _plan_skyline
from train.data.synthetic.canvas import _Canvas
from train.data.synthetic.geometry import _Geometry, _sample_geometry
from train.data.synthetic.look import _finish, _Look, _sample_look
from train.data.synthetic.materials import (
    _CLOTHES, _SKIN, ROAD, TEX_FACADE, TEX_FOLIAGE, VEGETATION, WALL, _jitter, _pick, _scaled)
from train.data.synthetic.street import (
    _draw_band, _draw_building, _draw_fence, _draw_person, _draw_sign, _draw_streetlight,
    _draw_traffic_light, _draw_tree, _draw_vehicle, _plan_buildings, _plan_trees,
    _plan_vehicles)


@dataclasses.dataclass(frozen=True)
class Scene:
    """One rendered frame.

    ``image`` is uint8 HxWx3 RGB; ``semantic`` uint8 HxW Cityscapes trainIds with 255 on
    anomalies; ``ood`` uint8 HxW in the Fishyscapes Lost & Found convention (1 anomaly, 0 road,
    255 everything else); ``anomalies`` the kinds placed, ``anomaly_styles`` how each is painted
    ('vivid', 'grey' or 'roadlike'), and ``anomaly_ids`` uint8 HxW with ``k`` on the pixels of
    ``anomalies[k - 1]`` and 0 elsewhere.
    """

    image: np.ndarray
    semantic: np.ndarray
    ood: np.ndarray
    anomalies: list
    anomaly_styles: list
    anomaly_ids: np.ndarray


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
                 anomalies=[placed[k - 1]['kind'] for k in visible], anomaly_ids=anomaly_ids,
                 anomaly_styles=[placed[k - 1]['style'] for k in visible])
