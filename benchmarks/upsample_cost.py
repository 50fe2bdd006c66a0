"""Upsampling logits (the paper) against upsampling the final maps: time, memory and metrics.

The pipeline brings LDN-121's output to the camera's resolution either as logits, bilinearly,
before the argmax and the score (``upsample: logits``, the paper and the default), or by
computing labels and score at the network's resolution and resizing those
(``upsample: scores``). Timed in one run, interleaved, on a 1024x2048 frame with the
network at short edge 512; the figure is the ratio of medians. The extra memory is the
upsampled logits themselves (K x H x W float32) plus the one temporary of the score of the
same size, computed from the shapes. With ``--checkpoint`` both modes are also evaluated on a
synthetic test split rendered at twice the checkpoint's input size (so the upsampling
matters), giving the effect on mIoU and AP.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from dense_ood_ros.labels import CITYSCAPES_CLASSES, IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.models import ldn121
from dense_ood_ros.pipeline import DenseOODPipeline

# Goal: the paper's way costs at most this much more per frame than the shortcut.
GOAL = 1.25


def time_modes(*, height, width, short_edge, repeats):
    """Return {mode: median infer seconds} on one random frame, the modes interleaved."""
    torch.manual_seed(0)
    model = ldn121(len(CITYSCAPES_CLASSES))
    pipelines = {mode: DenseOODPipeline(model, class_names=CITYSCAPES_CLASSES,
                                        mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                        input_short_edge=short_edge, device='cpu',
                                        upsample=mode)
                 for mode in ('logits', 'scores')}
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    for pipeline in pipelines.values():
        pipeline.infer(rgb)  # warm-up
    times = {mode: [] for mode in pipelines}
    for _ in range(repeats):
        for mode, pipeline in pipelines.items():
            start = time.perf_counter()
            pipeline.infer(rgb)
            times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) for mode, values in times.items()}


def metrics_effect(checkpoint, images):
    """Return {mode: (mIoU, AP)} of MSP T=10 on synthetic scenes at twice the input size."""
    from dense_ood_ros.checkpoint import load_checkpoint
    from train.data.synthetic import SyntheticStreetWorld
    from train.evaluate import evaluate

    loaded = load_checkpoint(checkpoint)
    edge = loaded.input_short_edge
    samples = SyntheticStreetWorld('test', num_images=images, height=2 * edge, width=4 * edge,
                                   seed=1)
    out = {}
    for mode in ('logits', 'scores'):
        pipeline = DenseOODPipeline.from_checkpoint(loaded, device='cpu', upsample=mode)
        (row,) = evaluate(pipeline, samples, [('msp', 10.0)], progress=False).rows
        out[mode] = (row['miou'], row['ap'])
    return out


def main():
    """Run the comparison and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--short-edge', type=int, default=512)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--checkpoint', help='also measure the effect on mIoU and AP')
    parser.add_argument('--images', type=int, default=40)
    args = parser.parse_args()
    if args.checkpoint:
        for mode, (miou, ap) in metrics_effect(args.checkpoint, args.images).items():
            print(f'upsample {mode}: mIoU {100 * miou:.2f} %, AP {100 * ap:.2f} % (MSP T=10, '
                  f'{args.images} synthetic scenes at 2x the input size)')
    seconds = time_modes(height=args.height, width=args.width, short_edge=args.short_edge,
                         repeats=args.repeats)
    classes = len(CITYSCAPES_CLASSES)
    extra_mb = 2 * classes * args.height * args.width * 4 / 2 ** 20
    ratio = seconds['logits'] / seconds['scores']
    verdict = 'meets' if ratio <= GOAL else 'MISSES'
    print(f'upsample_cost: logits/scores = {ratio:.3f} (logits {seconds["logits"] * 1e3:.0f} '
          f'ms, scores {seconds["scores"] * 1e3:.0f} ms per {args.height}x{args.width} frame '
          f'at short edge {args.short_edge}, cpu; about {extra_mb:.0f} MB more for the '
          f'{classes}-class logits and score temporary); goal <= {GOAL}: {verdict}')


if __name__ == '__main__':
    main()
