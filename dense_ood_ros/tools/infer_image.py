"""infer_image: run the pipeline on image files and write its outputs as files.

The quickest check that a checkpoint works on a machine, without any ROS graph:
    infer_image --checkpoint ckpt.pt --out out/ frame1.png frame2.jpg
An exported ``model.onnx`` runs through ONNX Runtime instead (no PyTorch needed).
"""

import argparse
import os
import sys

import cv2
import numpy as np

from dense_ood_ros.model_loading import load_pipeline
from dense_ood_ros.model_metadata import CheckpointError
from dense_ood_ros.params_file import read_ros_params
from dense_ood_ros.datasets.sample import read_rgb
from dense_ood_ros.visualize import colorize, palette_lut


def parse_args(argv):
    """Parse the command line; parameter flags override the params file."""
    parser = argparse.ArgumentParser(prog='infer_image', description=__doc__.splitlines()[0])
    parser.add_argument('images', nargs='+', help='image files (any format OpenCV reads)')
    parser.add_argument('--checkpoint', help='checkpoint file (or set it in --params-file)')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--params-file', help='ROS 2 parameters YAML, e.g. '
                        'config/perception.yaml')
    parser.add_argument('--device')
    parser.add_argument('--score', choices=('msp', 'entropy'))
    parser.add_argument('--temperature', type=float)
    parser.add_argument('--threshold', type=float)
    return parser.parse_args(argv)


def resolve_params(args):
    """Merge the params file with the command-line overrides."""
    params = read_ros_params(args.params_file) if args.params_file else {}
    for name in ('checkpoint', 'device', 'score', 'temperature', 'threshold'):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    if not params.get('checkpoint'):
        raise ValueError('no checkpoint: pass --checkpoint or set it in --params-file')
    return params


def write_outputs(out_dir, stem, result, lut):
    """Write semantic ids, colour mask, anomaly mask (PNG) and the float score (.npy)."""
    color = cv2.cvtColor(colorize(result.open_set, lut), cv2.COLOR_RGB2BGR)
    for suffix, image in (('semantic', result.labels), ('open_set_color', color),
                          ('anomaly_mask', result.mask.astype(np.uint8) * 255)):
        path = os.path.join(out_dir, f'{stem}_{suffix}.png')
        if not cv2.imwrite(path, image):
            raise OSError(f'could not write {path}')
    np.save(os.path.join(out_dir, f'{stem}_anomaly_score.npy'), result.score)


def main(args=None):
    """Entry point of the infer_image console script."""
    args = parse_args(sys.argv[1:] if args is None else args)
    try:
        params = resolve_params(args)
        _, pipeline = load_pipeline(params['checkpoint'], params)
    except (CheckpointError, ValueError) as error:
        print(f'infer_image: {error}', file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    lut = palette_lut(pipeline.palette)
    failures = 0
    for path in args.images:
        try:
            rgb = read_rgb(path)
        except (FileNotFoundError, ValueError) as error:
            print(f'infer_image: cannot read image: {error}', file=sys.stderr)
            failures += 1
            continue
        try:
            result = pipeline.infer(rgb)
        except ValueError as error:  # e.g. a fixed-size ONNX model and another image size
            print(f'infer_image: {path}: {error}', file=sys.stderr)
            failures += 1
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        try:
            write_outputs(args.out, stem, result, lut)
        except OSError as error:
            print(f'infer_image: {error}', file=sys.stderr)
            failures += 1
            continue
        print(f'{path}: {result.mask.mean():.2%} anomalous pixels '
              f'({pipeline.score}, T={pipeline.temperature:g}, threshold={pipeline.threshold:g})')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
