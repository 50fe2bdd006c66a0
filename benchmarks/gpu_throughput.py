"""GPU figures: LDN-121 frames per second at 1024x2048 (fp32, fp16) and training it/s.

Only meaningful with CUDA; without it the script says so and exits 0, so `make bench` runs
everywhere. Inference is the bare network on a full Cityscapes-size frame (the paper's
evaluation resolution), timed with CUDA synchronisation; training is one joint step of
Algorithm 2 (LDN-121 + RealNVP, outliers at the largest size) at the paper's batch 6 and
512x512 crops, from config/train_cityscapes.yaml. These are absolute figures for the record,
with no pass/fail goal: nothing here is compared against a machine we do not have.
"""

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dense_ood_ros.labels import CITYSCAPES_CLASSES, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from dense_ood_ros.models import ldn121  # noqa: E402


def _rate(fn, *, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return repeats / (time.perf_counter() - start)


def inference_fps(*, half, height=1024, width=2048, repeats=20):
    """Return LDN-121 forward passes per second on one height x width frame."""
    model = ldn121(len(CITYSCAPES_CLASSES)).cuda().eval()
    dtype = torch.float16 if half else torch.float32
    model = model.to(dtype)
    frame = torch.randn(1, 3, height, width, device='cuda', dtype=dtype)

    def forward():
        with torch.inference_mode():
            model(frame)
    return _rate(forward, warmup=3, repeats=repeats)


def training_rate(*, repeats=10):
    """Return joint training iterations per second at the paper's batch and crop."""
    from train.config import load_config
    from train.joint import build_flow_from_config, build_optimizers
    from train.outliers import OutlierSettings
    from train.step import Normalizer, step_randomness, train_step

    config = load_config(os.path.join(ROOT, 'config', 'train_cityscapes.yaml'))
    device = torch.device('cuda')
    segmenter = ldn121(len(CITYSCAPES_CLASSES),
                       checkpointing=config['model']['checkpointing']).to(device).train()
    flow = build_flow_from_config(config).to(device).train()
    optimizers, _ = build_optimizers(config, segmenter, flow, device=device)
    batch, crop = config['optim']['batch_size'], config['data']['crop_size']
    images = torch.rand(batch, 3, crop, crop, device=device)
    labels = torch.randint(0, len(CITYSCAPES_CLASSES), (batch, crop, crop), device=device)
    settings = OutlierSettings.from_config(config)
    normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, device=device)
    iteration = iter(range(10 ** 9))

    def step():
        train_step(segmenter, flow, images, labels, outliers=settings,
                   randomness=step_randomness(0, next(iteration), device=device),
                   optimizers=optimizers, normalize=normalize)
    return _rate(step, warmup=2, repeats=repeats)


def main(argv=None):
    """Print the GPU figures, or one line saying there is no GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    if not torch.cuda.is_available():
        print('gpu_throughput: skipped, CUDA is not available on this machine')
        return 0
    name = torch.cuda.get_device_name()
    fp32, fp16 = inference_fps(half=False), inference_fps(half=True)
    train_its = training_rate()
    print(f'gpu_throughput: LDN-121 at 1024x2048 on {name}: {fp32:.1f} fps fp32, '
          f'{fp16:.1f} fps fp16; joint training at batch 6, 512x512 crops: '
          f'{train_its:.2f} it/s (figures for the record, no goal)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
