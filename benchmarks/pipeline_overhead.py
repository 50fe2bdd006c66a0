"""Pipeline overhead: infer() time over the bare LDN-121 forward on the same resized tensor.

Both are timed in one run, interleaved, so machine noise hits them alike; the figure is the
ratio of medians. Goal: at most 1.15 for a 1024x2048 camera frame.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from dense_ood_ros.labels import CITYSCAPES_CLASSES, IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.models import ldn121
from dense_ood_ros.pipeline import DenseOODPipeline, network_size

GOAL = 1.15


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(*, height, width, short_edge, device, half, repeats):
    """Return (median infer seconds, median bare forward seconds)."""
    torch.manual_seed(0)
    model = ldn121(len(CITYSCAPES_CLASSES))
    pipeline = DenseOODPipeline(model, class_names=CITYSCAPES_CLASSES, mean=IMAGENET_MEAN,
                                std=IMAGENET_STD, input_short_edge=short_edge, device=device,
                                half=half)
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    size = network_size(height, width, short_edge)
    tensor = pipeline.preprocess([rgb], size)

    def bare():
        with torch.inference_mode():
            pipeline.model(tensor)

    def infer():
        pipeline.infer(rgb)

    bare()  # warm-up: allocator, cudnn autotuning, lazy init
    infer()
    infer_times, bare_times = [], []
    for _ in range(repeats):
        bare_times.append(_timed(bare, pipeline.device))
        infer_times.append(_timed(infer, pipeline.device))
    return statistics.median(infer_times), statistics.median(bare_times)


def main():
    """Run the benchmark and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--short-edge', type=int, default=512,
                        help='network input short side (the paper trains at 512)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--half', action='store_true')
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    infer_s, bare_s = measure(height=args.height, width=args.width, short_edge=args.short_edge,
                              device=args.device, half=args.half, repeats=args.repeats)
    ratio = infer_s / bare_s
    verdict = 'meets' if ratio <= GOAL else 'MISSES'
    print(f'pipeline_overhead: infer/forward = {ratio:.3f} (infer {infer_s * 1e3:.1f} ms, '
          f'forward {bare_s * 1e3:.1f} ms, {args.height}x{args.width} -> short edge '
          f'{args.short_edge}, {args.device}{" fp16" if args.half else ""}); '
          f'goal <= {GOAL}: {verdict}')


if __name__ == '__main__':
    main()
