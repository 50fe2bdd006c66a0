r"""Pack a trained checkpoint for shipping in the repository: float16 weights, provenance.

    python demo/pack_checkpoint.py --checkpoint runs/table3/rnvp/model.pt \
        --out demo/ldn121_demo.pt --command "python -m train.joint --config ..."

Floating-point tensors (segmenter and flow) are stored as float16, which halves the file
(LDN-121's 11M parameters: 22 MB instead of 44 MB); the node and the pipeline load them into
float32 modules, so nothing else changes. Integer buffers (BatchNorm's batch counters) keep
their type. The training command is recorded in the checkpoint's ``train`` metadata beside
the resolved config, iteration and commit that training wrote there.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dense_ood_ros.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

MAX_MB = 25.0


def half_state_dict(state_dict):
    """Return a copy with every floating-point tensor in float16."""
    return {key: value.half() if value.is_floating_point() else value
            for key, value in state_dict.items()}


def pack(source, out, *, command):
    """Write `source` as a float16 checkpoint with `command` recorded; return its size in MB."""
    ckpt = load_checkpoint(source)
    ckpt.state_dict = half_state_dict(ckpt.state_dict)
    if ckpt.flow_state_dict is not None:
        ckpt.flow_state_dict = half_state_dict(ckpt.flow_state_dict)
    ckpt.train = {**ckpt.train, 'command': command, 'packed_from': os.path.basename(source),
                  'weights_dtype': 'float16'}
    save_checkpoint(out, ckpt)
    return os.path.getsize(out) / 2 ** 20


def main(argv=None):
    """Pack and report the size; exit 1 if it exceeds the repository's budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True, help='model.pt written by training')
    parser.add_argument('--out', required=True)
    parser.add_argument('--command', required=True, help='the training command, verbatim')
    args = parser.parse_args(argv)
    size = pack(args.checkpoint, args.out, command=args.command)
    print(f'wrote {args.out}: {size:.1f} MB (float16)')
    if size > MAX_MB:
        print(f'{args.out} exceeds {MAX_MB:g} MB', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
