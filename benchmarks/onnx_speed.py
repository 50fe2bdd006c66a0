"""ONNX Runtime against PyTorch on the CPU: the whole pipeline, and the node under load.

Measured in one run on the same 1024x2048 frame, with a randomly initialised 19-class
LDN-121 (network input 512x1024) exported by export_onnx:
1. the pipeline (resize, normalise, forward, logits upsampled to the frame, argmax, score):
   median ``infer()`` time of the PyTorch backend over that of the ONNX Runtime backend,
   the two interleaved. Goal: at least 1.3 (ONNX Runtime faster);
2. the node's processed frame rate under saturating input (frames published at twice its
   rate), once with the ``.pt`` and once with the ``.onnx``, each node in its own process.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from dense_ood_ros.onnx_pipeline import OnnxPipeline
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.tools.export_onnx import export

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_overhead import Harness, write_checkpoint  # noqa: E402

GOAL = 1.3


def pipeline_seconds(pipelines, rgb, repeats):
    """Return {name: median infer() seconds}, the pipelines interleaved."""
    times = {name: [] for name in pipelines}
    for pipeline in pipelines.values():
        pipeline.infer(rgb)  # warm-up
    for _ in range(repeats):
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            pipeline.infer(rgb)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def node_rate(model, rgb, seconds_per_frame, frames):
    """Return the node's processed frames per second on `model` under saturating input."""
    node = subprocess.Popen(
        [sys.executable, '-m', 'dense_ood_ros.node', '--ros-args',
         '-p', f'checkpoint:={model}', '-p', 'device:=cpu',
         '-p', 'qos_overrides./bench/image.subscription.reliability:=reliable',
         '-p', f'max_input_pixels:={rgb.size}', '-r', 'image:=/bench/image'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    harness = Harness(rgb)
    try:
        if not harness.spin_until(lambda: harness.publisher.get_subscription_count() > 0, 120):
            raise RuntimeError(f'perception_node on {model} did not subscribe within 120 s')
        while not harness.outputs:
            harness.publish()
            harness.spin_until(lambda: bool(harness.outputs), 5.0)
        harness.outputs.clear()
        deadline = time.monotonic() + frames * seconds_per_frame
        while time.monotonic() < deadline:
            harness.publish()
            harness.spin_until(lambda: False, seconds_per_frame / 2)
    finally:
        harness.close()
        node.send_signal(2)
        node.wait(timeout=30)
    stamps = harness.outputs[1:]
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else float('nan')


def main():
    """Run both measurements and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--short-edge', type=int, default=512)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--frames', type=int, default=6, help='node frames per backend')
    args = parser.parse_args()
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100 // 10))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    rgb = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3),
                                            dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, model = os.path.join(tmp, 'bench.pt'), os.path.join(tmp, 'bench.onnx')
        write_checkpoint(checkpoint, args.short_edge)
        export(checkpoint, model, height=args.height, width=args.width, image=rgb,
               log=lambda line: print(line, flush=True))
        pipelines = {'pytorch': DenseOODPipeline.from_checkpoint(checkpoint, device='cpu'),
                     'onnxruntime': OnnxPipeline(model, providers=['CPUExecutionProvider'])}
        seconds = pipeline_seconds(pipelines, rgb, args.repeats)
        del pipelines  # the nodes get the cores to themselves
        rates = {name: node_rate(path, rgb, seconds[name], args.frames)
                 for name, path in (('pytorch', checkpoint), ('onnxruntime', model))}
    ratio = seconds['pytorch'] / seconds['onnxruntime']
    verdict = 'meets' if ratio >= GOAL else 'MISSES'
    print(f'onnx_speed: pytorch/onnxruntime pipeline time = {ratio:.3f} (pytorch '
          f'{seconds["pytorch"] * 1e3:.0f} ms, onnxruntime {seconds["onnxruntime"] * 1e3:.0f} ms '
          f'per {args.height}x{args.width} frame, cpu); node under saturating input: '
          f'{rates["pytorch"]:.3f} fps (.pt), {rates["onnxruntime"]:.3f} fps (.onnx); '
          f'goal >= {GOAL}: {verdict}')


if __name__ == '__main__':
    main()
