"""Network architectures: LDN-121 segmenter and RealNVP outlier generator (pure torch)."""

from dense_ood_ros.models.ldn import ldn121
from dense_ood_ros.models.realnvp import RealNVP

# Architecture names as stored in checkpoints; a new segmenter registers here.
SEGMENTERS = {'ldn121': ldn121}


def build_segmenter(arch, num_classes, **kwargs):
    """Build the segmenter registered as `arch` with `num_classes` outputs."""
    if arch not in SEGMENTERS:
        raise ValueError(f'unknown architecture {arch!r}; known: {sorted(SEGMENTERS)}')
    return SEGMENTERS[arch](num_classes, **kwargs)


__all__ = ['RealNVP', 'SEGMENTERS', 'build_segmenter', 'ldn121']
