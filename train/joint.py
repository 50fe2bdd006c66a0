"""python -m train.joint: joint training of LDN-121 and RealNVP (Algorithm 2 of the paper).

With ``task: classify`` in the config the same loop trains VGG-13 and RealNVP on CIFAR-10
(Algorithm 1, train.classify). This module is the command line only: train.build turns the
config into a run's parts, train.trainer runs them. Usage, from the repository root::

    python -m train.joint --config config/train_cityscapes.yaml [--set key=value ...]
        [--out DIR] [--resume] [--report-memory] [--stop-after ITERATION]
    torchrun --nproc_per_node=N -m train.joint --config ...

A run writes into DIR (default ``runs/<config name>``): ``resume.pt`` every
``log.checkpoint_interval`` iterations and at the end (``--resume`` continues from it
exactly), ``model.pt`` at the end in the node's checkpoint format, ``scalars.csv``,
``config.yaml``, ``samples/*.png`` grids of RealNVP samples and TensorBoard events when
tensorboard is installed. Only rank 0 writes.
"""

import argparse
import os
import shlex
import sys

from dense_ood_ros.checkpoint import CheckpointError
from train import state
from train.build import build_trainer, init_process
from train.config import ConfigError, load_config
from train.distributed import shutdown
from train.logging_utils import peak_memory_report
from train.trainer import TrainingError


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog='python -m train.joint',
        description='Jointly train LDN-121 and RealNVP synthetic outliers (Algorithm 2), or '
                    'VGG-13 and RealNVP on CIFAR-10 with task: classify (Algorithm 1).')
    parser.add_argument('--config', required=True, help='YAML training config')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE',
                        help='override a config key, e.g. --set optim.iterations=100')
    parser.add_argument('--out', help='output directory (default: runs/<config name>)')
    parser.add_argument('--resume', action='store_true',
                        help='continue exactly from OUT/resume.pt')
    parser.add_argument('--report-memory', action='store_true',
                        help='print the peak memory when done (after a warm-up step on CUDA)')
    parser.add_argument('--stop-after', type=int, metavar='ITERATION',
                        help='stop (writing resume.pt) once this iteration is reached')
    return parser, parser.parse_args(argv)


def default_out_dir(config_path):
    """Return runs/<config file name without extension>."""
    return os.path.join('runs', os.path.splitext(os.path.basename(config_path))[0])


def command_line(argv):
    """Return the command that was run, as a user would type it again."""
    return ' '.join(['python -m train.joint', *map(shlex.quote, argv)])


def main(argv=None):
    """Run training from the command line; return the exit status."""
    parser, args = parse_args(argv)
    try:
        config = load_config(args.config, overrides=args.overrides)
        out_dir = args.out or default_out_dir(args.config)
        env = init_process(config)
    except (ConfigError, ValueError) as error:
        parser.error(str(error))
    try:
        try:
            # Dataset readers report a missing root or an empty split as OSError/ValueError.
            trainer = build_trainer(config, out_dir=out_dir, env=env, resuming=args.resume)
        except (OSError, ValueError) as error:
            raise TrainingError(f'cannot set up training: {error}') from error
        trainer.command = command_line(sys.argv[1:] if argv is None else argv)
        trainer.report_memory = args.report_memory
        if args.resume:
            trainer.load_resume(os.path.join(out_dir, state.RESUME_FILE))
        trainer.run(stop_after=args.stop_after)
    except (ConfigError, CheckpointError, TrainingError) as error:
        print(f'train.joint: error: {error}', file=sys.stderr)
        return 1
    finally:
        shutdown(env)
    if env.is_main:
        if args.report_memory:
            print(peak_memory_report(env.device, since_iteration=trainer.peak_memory_since))
        print(f'iteration {trainer.iteration}/{trainer.loop.iterations}; '
              f'skipped steps: {trainer.skipped_steps}; outputs in {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
