"""GPU figures: LDN-121 inference as the node runs it, and joint training as train.joint does.

Only meaningful with CUDA; without it the script says so and exits 0, so `make bench` runs
everywhere. These are absolute figures for the record, with no pass/fail goal: nothing here
is compared against a machine we do not have. Each figure is measured on what actually runs,
and the printed lines say what that is:

- Inference: the node's DenseOODPipeline around LDN-121 (random weights) on one 1024x2048
  uint8 frame (the paper's evaluation resolution, so no resize). Two rates per precision:
  the network alone on the tensor pipeline.preprocess makes, in the layout it makes
  (channels_last, as it permutes HWC frames; a convolution given channels_last input
  returns channels_last, so the network runs in that layout), and the whole pipeline.infer
  (upload, network, logits upsampled, score, argmax, copies back). The layout is read
  from the tensor and printed, not assumed. cudnn.benchmark stays off, as the node never
  turns it on. "fp32" is PyTorch's default, which the node keeps: on GPUs with tensor
  cores cuDNN convolutions run in TF32 (torch.backends.cudnn.allow_tf32), so the line
  reports both TF32 flags, and also the network's rate in strict fp32 (both flags off).
  fp16 is the node's half=True: weights and input in float16.
- Training: the joint step of Algorithm 2 from config/train_cityscapes.yaml (batch 6 of
  512x512 crops, its checkpointing and amp settings) with cudnn.benchmark set as the
  trainer sets it (train.build.set_determinism) and the batch collated and moved to the
  GPU by the trainer's own functions (NCHW). The trainer draws one outlier size per step;
  here the steps cycle through every size evenly (each one first as warm-up, so cuDNN's
  tuning for each new flow shape is not timed), so the rate is the trainer's average over
  sizes, not one random draw.
"""

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dense_ood_ros.labels import CITYSCAPES_CLASSES, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from dense_ood_ros.models import ldn121  # noqa: E402
from dense_ood_ros.pipeline import DenseOODPipeline, network_size  # noqa: E402

CONFIG = os.path.join(ROOT, 'config', 'train_cityscapes.yaml')


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _rate(fn, *, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return repeats / (time.perf_counter() - start)


def fp32_label(device):
    """Return what "fp32" means on `device` under the current TF32 flags."""
    if device.type != 'cuda' or torch.cuda.get_device_capability(device)[0] < 8:
        return 'fp32 (no TF32 on this device)'
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if conv and matmul:
        return 'fp32 (TF32 conv and matmul)'
    if conv or matmul:
        return f'fp32 (TF32 {"conv" if conv else "matmul"}, {"matmul" if conv else "conv"} fp32)'
    return 'fp32 (strict: TF32 off)'


@contextlib.contextmanager
def strict_fp32():
    """Turn TF32 off for convolutions and matmuls inside the block, then restore the flags."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@dataclasses.dataclass
class InferenceRates:
    """Frames per second of one precision: network alone, whole pipeline.infer."""

    network: float
    pipeline: float
    layout: str


def _layout(tensor):
    if tensor.is_contiguous(memory_format=torch.channels_last):
        return 'channels_last'
    return 'NCHW' if tensor.is_contiguous() else 'strided'


def inference_rates(*, device, half, height=1024, width=2048, repeats=20, strict=False):
    """Return the InferenceRates of the node's pipeline on one height x width frame.

    `strict` times the network only, with TF32 off (the pipeline rate is then NaN).
    """
    torch.manual_seed(0)
    pipeline = DenseOODPipeline(ldn121(len(CITYSCAPES_CLASSES)), class_names=CITYSCAPES_CLASSES,
                                mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                input_short_edge=min(height, width), device=device, half=half)
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    batch = pipeline.preprocess([frame], network_size(height, width, min(height, width)))

    def forward():
        with torch.inference_mode():
            pipeline.model(batch)

    def infer():
        pipeline.infer(frame)

    # The node never sets cudnn.benchmark, so its convolutions use cuDNN's heuristics.
    torch.backends.cudnn.benchmark = False
    with strict_fp32() if strict else contextlib.nullcontext():
        network = _rate(forward, device=device, warmup=3, repeats=repeats)
    full = math.nan if strict else _rate(infer, device=device, warmup=3, repeats=repeats)
    return InferenceRates(network=network, pipeline=full, layout=_layout(batch))


@dataclasses.dataclass
class TrainingRate:
    """Joint training iterations per second and what they ran."""

    its: float
    batch: int
    crop: int
    sizes: tuple
    steps: int
    layout: str
    cudnn_benchmark: bool
    precision: str
    checkpointing: bool


def _training_batch(batch, crop, device):
    """Return (images, labels) made as train.joint makes them: collate, then to_device."""
    from torch.utils.data import default_collate

    from train.loader import to_device

    rng = np.random.default_rng(0)
    # train.loader's samples: HWC uint8 images permuted to CHW views, int labels.
    samples = [(torch.from_numpy(rng.integers(0, 256, (crop, crop, 3), dtype=np.uint8))
                .permute(2, 0, 1),
                torch.from_numpy(rng.integers(0, len(CITYSCAPES_CLASSES), (crop, crop),
                                              dtype=np.uint8)))
               for _ in range(batch)]
    return to_device(default_collate(samples), device)


def training_rate(*, device, config_path=CONFIG, rounds=2, overrides=()):
    """Return the TrainingRate of train.joint's step, every outlier size `rounds` times."""
    from dense_ood_ros.normalization import Normalizer
    from train.build import (
        build_amp, build_flow, build_optimizers, build_task, loop_settings, outlier_settings,
        set_determinism)
    from train.config import load_config
    from train.step import step_randomness, train_step

    # Weights do not change the speed, and nothing needs downloading.
    config = load_config(config_path, overrides=['model.backbone_weights=null', *overrides])
    set_determinism(config, device)
    torch.manual_seed(0)
    task, loop = build_task(config), loop_settings(config)
    segmenter = task.make_model(len(CITYSCAPES_CLASSES)).to(device).train()
    flow = build_flow(config).to(device).train()
    optimizers, _ = build_optimizers(config, segmenter, flow, device=device,
                                     param_groups=task.param_groups(segmenter))
    amp = build_amp(config, device)
    batch, crop = loop.batch_size, loop.crop_size
    images, labels = _training_batch(batch, crop, device)
    drawn = outlier_settings(config)
    normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, device=device)
    # One settings object per size: step i pastes sizes[i % len(sizes)].
    per_size = [dataclasses.replace(drawn, sizes=(size,)) for size in drawn.sizes]
    iteration = iter(range(10 ** 9))

    def step():
        index = next(iteration)
        train_step(segmenter, flow, images, labels, outliers=per_size[index % len(per_size)],
                   randomness=step_randomness(0, index, device=device),
                   optimizers=optimizers, normalize=normalize, amp=amp)

    its = _rate(step, device=device, warmup=len(per_size), repeats=rounds * len(per_size))
    precision = fp32_label(device) if amp.dtype is None else str(amp.dtype).split('.')[-1]
    return TrainingRate(its=its, batch=batch, crop=crop, sizes=drawn.sizes,
                        steps=rounds * len(per_size), layout=_layout(images),
                        cudnn_benchmark=torch.backends.cudnn.benchmark, precision=precision,
                        checkpointing=task.checkpointing)


def summary(name, fp32, strict, fp16, train, *, fp32_name):
    """Return the lines to print, the `gpu_throughput:` summary line last."""
    train_sizes = f'{min(train.sizes)}-{max(train.sizes)}'
    return [
        f'inference as the node runs it: {fp32.layout} input, cudnn.benchmark off; '
        f'"{fp32_name}" is PyTorch\'s default (cudnn.allow_tf32='
        f'{torch.backends.cudnn.allow_tf32}, cuda.matmul.allow_tf32='
        f'{torch.backends.cuda.matmul.allow_tf32})',
        f'training as train.joint runs it: {train.layout} input, cudnn.benchmark '
        f'{"on" if train.cudnn_benchmark else "off"}, {train.precision}, checkpointing '
        f'{"on" if train.checkpointing else "off"}, outlier sizes {train_sizes} cycled evenly '
        f'over {train.steps} timed steps',
        f'gpu_throughput: LDN-121 at 1024x2048 on {name}, network / whole pipeline.infer: '
        f'{fp32.network:.1f} / {fp32.pipeline:.1f} fps {fp32_name}, {strict.network:.1f} fps '
        f'network in strict fp32, {fp16.network:.1f} / {fp16.pipeline:.1f} fps fp16; joint '
        f'training at batch {train.batch}, {train.crop}x{train.crop} crops: {train.its:.2f} '
        'it/s (figures for the record, no goal)',
    ]


def main(argv=None):
    """Print the GPU figures, or one line saying there is no GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--train-rounds', type=int, default=2,
                        help='timed passes over every outlier size (default 2)')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print('gpu_throughput: skipped, CUDA is not available on this machine')
        return 0
    device = torch.device('cuda')
    fp32_name = fp32_label(device)
    fp32 = inference_rates(device=device, half=False)
    strict = inference_rates(device=device, half=False, strict=True)
    fp16 = inference_rates(device=device, half=True)
    train = training_rate(device=device, rounds=args.train_rounds)
    for line in summary(torch.cuda.get_device_name(device), fp32, strict, fp16, train,
                        fp32_name=fp32_name):
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
