"""The camera above the road: road coordinates to pixels, and strips and quads along it."""

import dataclasses

import numpy as np

CURVE_END = 120.0  # metres; beyond this the road goes on straight, so the horizon stays sane
NEAR = 0.3  # metres; nothing is projected closer than this


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


def _band(geo, u, z0, z1, y0, y1, n=12):
    """Return the image polygon of a vertical strip along the road from z0 to z1."""
    zs = np.geomspace(z0, z1, n)
    bottom = geo.project(u, np.broadcast_to(y0, zs.shape), zs)
    top = geo.project(u, np.broadcast_to(y1, zs.shape), zs)
    return np.concatenate([bottom, top[::-1]])


def _quad(geo, u0, u1, y0, y1, z):
    """Return the image polygon of an upright rectangle facing the camera at depth z."""
    return geo.project(np.array([u0, u1, u1, u0]), np.array([y0, y0, y1, y1]), z)
