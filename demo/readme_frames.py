"""Cut make demo's frame panels to camera | anomaly heat map for demo/README.md.

    python demo/readme_frames.py demo_out/frames/frame_0003.png ... --out demo/frames

make demo's panels are camera (with the node's obstacle boxes) | semantic colours | heat map
(with the mask outline), side by side at the camera's width; this keeps the first and the
last third.
"""

import argparse
import os
import sys

import cv2
import numpy as np


def camera_and_heat_map(panel):
    """Return the camera and heat-map thirds of a three-panel image, side by side."""
    width = panel.shape[1] // 3
    if panel.shape[1] != 3 * width:
        raise ValueError(f'a panel is three images side by side; width {panel.shape[1]} is '
                         'not a multiple of 3')
    return np.hstack([panel[:, :width], panel[:, 2 * width:]])


def main(argv=None):
    """Write one camera | heat map PNG per panel given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('panels', nargs='+')
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for path in args.panels:
        panel = cv2.imread(path, cv2.IMREAD_COLOR)
        if panel is None:
            print(f'readme_frames: cannot read {path}', file=sys.stderr)
            return 2
        out = os.path.join(args.out, os.path.basename(path))
        if not cv2.imwrite(out, camera_and_heat_map(panel)):
            print(f'readme_frames: cannot write {out}', file=sys.stderr)
            return 2
        print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
