"""A scene's appearance (sky, weather, light, material colours) and its photographic finish."""

import dataclasses

import cv2
import numpy as np

from train.data.synthetic.materials import _TEXTURE_AMPLITUDE, _jitter


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
