"""Training memory: peak of one joint step with gradient checkpointing over the same without.

One step of Algorithm 2 (LDN-121 + RealNVP from a training config, outliers at the largest
size, as the paper measures) runs twice per variant, each variant in a fresh subprocess
started by this script, so that neither inherits the other's allocator state. The first
step is a warm-up (Adam state, library caches); the second is measured:

- CUDA: ``torch.cuda.reset_peak_memory_stats`` before it, ``max_memory_allocated`` after
  (the paper's measure: weights, gradients, optimizer state and activations).
- CPU: glibc malloc is told to serve every block of 64 KiB or more with mmap
  (``MALLOC_MMAP_THRESHOLD_``, which also stops it from raising that threshold), so a freed
  tensor leaves the resident set at once and RSS follows live tensor memory. The kernel's
  peak-RSS mark is reset (``5 > /proc/self/clear_refs``) before the step and read from
  VmHWM after; the RSS measured before any model was built (Python, torch's code) is
  subtracted, so the figure again counts weights, gradients, optimizer state and activations.

The paper reports 5.55 GB with checkpointing vs 9.61 GB without (0.58), training at batch 6
with 512x512 crops, the shape of config/train_cityscapes.yaml. On CUDA this script runs at
that shape by default, and falls back to batch 2 with 256x256 crops only if it does not fit
in GPU memory; on the CPU it runs at batch 2, 256x256 by default (the paper's shape takes
minutes per step and about 10 GB there). The printed line says whenever the shape is not the
paper's. Goal: checkpointing/plain <= 0.6.
"""

import argparse
import json
import os
import subprocess
import sys

GOAL = 0.6
# Batch and crop side where the paper's shape does not fit or is too slow (the CPU).
SMALL_SHAPE = (2, 256)
# glibc: blocks >= 64 KiB via mmap, so freeing one returns it to the OS immediately.
MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '65536', 'MALLOC_TRIM_THRESHOLD_': '65536'}


def _status_kb(field):
    with open('/proc/self/status', encoding='ascii') as stream:
        for line in stream:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _reset_peak_rss():
    with open('/proc/self/clear_refs', 'w', encoding='ascii') as stream:
        stream.write('5')


def measure(config_path, *, checkpointing, batch, crop, device_name):
    """Return (peak MB of the measured step, device string) for one variant."""
    import torch

    from dense_ood_ros.devices import resolve_device
    from dense_ood_ros.labels import IMAGENET_MEAN, IMAGENET_STD
    from dense_ood_ros.normalization import Normalizer
    from train.build import build_flow, build_optimizers, build_task, outlier_settings
    from train.config import load_config
    from train.outliers import OutlierSettings
    from train.paste import fit_size
    from train.step import step_randomness, train_step

    flag = str(checkpointing).lower()
    config = load_config(config_path, overrides=[
        f'model.checkpointing={flag}', f'flow.checkpointing={flag}', 'outliers.mode=rnvp',
        'model.backbone_weights=null',  # weights do not change memory; nothing to download
        f'optim.batch_size={batch}', f'data.crop_size={crop}', f'device={device_name}'])
    device = resolve_device(device_name)
    baseline_kb = _status_kb('VmRSS') if device.type == 'cpu' else 0
    torch.manual_seed(0)
    task = build_task(config)
    segmenter = task.make_model(19).to(device).train()
    flow = build_flow(config).to(device).train()
    optimizers, _ = build_optimizers(config, segmenter, flow, device=device,
                                     param_groups=task.param_groups(segmenter))
    settings = outlier_settings(config)
    largest = fit_size(max(settings.sizes), crop, crop, divisor=flow.size_divisor)
    settings = OutlierSettings(mode='rnvp', sizes=(largest,), lam=settings.lam)
    normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, device=device)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand((batch, 3, crop, crop), generator=gen).to(device)
    labels = torch.randint(0, 19, (batch, crop, crop), generator=gen).to(device)

    def step(iteration):
        return train_step(segmenter, flow, images, labels, outliers=settings,
                          randomness=step_randomness(0, iteration, device=device),
                          optimizers=optimizers, normalize=normalize)

    step(0)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(1)
        torch.cuda.synchronize(device)
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
        where = torch.cuda.get_device_name(device)
    else:
        _reset_peak_rss()
        step(1)
        peak_mb = (_status_kb('VmHWM') - baseline_kb) / 1024
        where = 'cpu, peak RSS'
    return peak_mb, where, largest


def _child(args):
    import torch

    try:
        peak_mb, where, largest = measure(
            args.config, checkpointing=args.child == 'checkpointing', batch=args.batch,
            crop=args.crop, device_name=args.device)
    except torch.cuda.OutOfMemoryError:
        print(json.dumps({'oom': True}))
        return
    print(json.dumps({'peak_mb': peak_mb, 'device': where, 'outlier': largest}))


def _run_variant(args, variant, shape):
    """Return the variant's measurement, or None if it ran out of GPU memory."""
    batch, crop = shape
    command = [sys.executable, os.path.abspath(__file__), '--child', variant,
               '--config', args.config, '--batch', str(batch), '--crop', str(crop),
               '--device', args.device]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            env={**os.environ, **MALLOC_ENV})
    if result.returncode != 0:
        raise SystemExit(f'train_memory: the {variant} run failed:\n{result.stderr}')
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return None if measured.get('oom') else measured


def paper_shape(config_path):
    """Return (batch, crop) of the training config: the paper's batch 6 of 512x512 crops."""
    from train.build import loop_settings
    from train.config import load_config

    loop = loop_settings(load_config(config_path))
    return loop.batch_size, loop.crop_size


def _uses_cuda(device_name):
    from dense_ood_ros.devices import resolve_device

    return resolve_device(device_name).type == 'cuda'


def shapes_to_try(args, paper):
    """Return [(batch, crop, why it is not the paper's shape or None)], tried in order."""
    if args.batch or args.crop:
        shape = (args.batch or paper[0], args.crop or paper[1])
        return [(*shape, None if shape == paper else 'set by --batch/--crop')]
    if not _uses_cuda(args.device):
        return [(*SMALL_SHAPE, "smaller on the CPU, where the paper's is too slow")]
    return [(*paper, None), (*SMALL_SHAPE, "the paper's ran out of GPU memory")]


def measure_both(args, paper):
    """Return (checkpointed, plain, batch, crop, note) at the first shape that fits."""
    for batch, crop, why in shapes_to_try(args, paper):
        checkpointed = _run_variant(args, 'checkpointing', (batch, crop))
        plain = _run_variant(args, 'plain', (batch, crop)) if checkpointed else None
        if plain is not None:
            note = '' if why is None else (
                f"; NOT the paper's shape (batch {paper[0]}, crop {paper[1]}): {why}")
            return checkpointed, plain, batch, crop, note
    raise SystemExit(f'train_memory: out of GPU memory even at batch {batch}, crop {crop}; '
                     'pass a smaller --batch/--crop')


def main():
    """Measure both variants in fresh subprocesses and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='config/train_cityscapes.yaml')
    parser.add_argument('--batch', type=int,
                        help="batch size (default: the config's on CUDA, 2 on the CPU)")
    parser.add_argument('--crop', type=int,
                        help="crop side (default: the config's on CUDA, 256 on the CPU)")
    parser.add_argument('--device', default='auto')
    parser.add_argument('--child', choices=('checkpointing', 'plain'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    checkpointed, plain, batch, crop, note = measure_both(args, paper_shape(args.config))
    ratio = checkpointed['peak_mb'] / plain['peak_mb']
    verdict = 'meets' if ratio <= GOAL else 'MISSES'
    print(f'train_memory: checkpointing/plain peak = {ratio:.2f} '
          f'({checkpointed["peak_mb"]:.0f} MB vs {plain["peak_mb"]:.0f} MB, batch {batch}, '
          f'crop {crop}, outlier {plain["outlier"]}, {plain["device"]}{note}); '
          f'goal <= {GOAL:g}: {verdict}')


if __name__ == '__main__':
    main()
