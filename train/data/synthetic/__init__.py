"""Procedural street scenes with Cityscapes trainIds and Lost & Found style road anomalies.

A scene is planned from its seed (``scene``: camera ``geometry``, ``look``, the ``backdrop``,
``street`` furniture, ``anomalies``), painted far to near on a ``canvas`` and finished like a
photograph. ``dataset`` serves the splits as Samples, ``export`` writes one in the Fishyscapes
Lost & Found layout, and ``python -m train.data.synthetic`` does that from the command line.
"""

from train.data.synthetic.anomalies import ANOMALY_KINDS
from train.data.synthetic.dataset import image_seed, SPLITS, SyntheticStreetWorld
from train.data.synthetic.export import LF_DIRS, write_lf_layout
from train.data.synthetic.scene import render_scene, Scene

__all__ = ['ANOMALY_KINDS', 'LF_DIRS', 'SPLITS', 'Scene', 'SyntheticStreetWorld', 'image_seed',
           'render_scene', 'write_lf_layout']
