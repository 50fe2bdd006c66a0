"""``python -m train.data.synthetic``: write a split in the Fishyscapes Lost & Found layout."""

import argparse
import pathlib
import sys

from train.data.synthetic.dataset import SPLITS
from train.data.synthetic.export import LF_DIRS, write_lf_layout


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
