"""Node overhead: perception_node against bare DenseOODPipeline.infer on 1024x2048 frames.

Measured in one run:
1. throughput: the node's processed frame rate under saturating input (frames published
   faster than it can serve them) divided by infer()'s rate on the same frames in this
   process. Goal: at least 0.9.
2. added latency, from the wire: with one frame in flight at a time, the time from the
   client's publish (the header stamp is set at publish, on this machine's clock, which the
   node's process shares) to the arrival of the frame's anomaly score back in the client,
   minus infer()'s time in this process. What remains is everything the node and DDS add:
   transport and deserialisation of the input, queueing for the worker, decoding, building
   and publishing the outputs, and their transport back. Goal: p50 at most 15 ms (CPU).
   Both parts are printed, and the node's own view beside them (arrival-to-publish minus its
   in-node pipeline time, from its /diagnostics), which leaves the transport out.
The client subscribes to semantic, anomaly_score and anomaly_mask, as a planner would; the
node runs in its own process, as on a vehicle. Large frames cross DDS much faster with
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (see docs/node.md); the line says which transport ran.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dense_ood_ros.checkpoint import Checkpoint, save_checkpoint
from dense_ood_ros.image_codec import array_to_image
from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from dense_ood_ros.models import ldn121
from dense_ood_ros.pipeline import DenseOODPipeline

THROUGHPUT_GOAL = 0.9
LATENCY_GOAL_MS = 15.0
CONSUMED_OUTPUTS = ('semantic', 'anomaly_mask')  # besides anomaly_score, which is timed
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def write_checkpoint(path, short_edge):
    """Write a randomly initialised 19-class LDN-121 checkpoint."""
    torch.manual_seed(0)
    model = ldn121(len(CITYSCAPES_CLASSES))
    save_checkpoint(path, Checkpoint(
        arch='ldn121', num_classes=len(CITYSCAPES_CLASSES), state_dict=model.state_dict(),
        class_names=list(CITYSCAPES_CLASSES), palette=[list(c) for c in CITYSCAPES_PALETTE],
        input_short_edge=short_edge))


def timed_infer(pipeline, rgb):
    """Return the seconds one infer() call takes."""
    start = time.perf_counter()
    pipeline.infer(rgb)
    return time.perf_counter() - start


class Harness:
    """A client node that feeds frames to perception_node and watches its outputs."""

    def __init__(self, rgb):
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('node_overhead_client', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.publisher = self.node.create_publisher(Image, '/bench/image', RELIABLE)
        self.outputs = []
        self.wire_ms = []  # publish (header stamp) to the score's arrival, per frame
        self.diagnostics = None
        self.node.create_subscription(Image, '/perception_node/anomaly_score', self._output,
                                      RELIABLE)
        # A planner's consumer also takes the labels and the mask; the node builds only the
        # outputs someone subscribes to, so this is the work a deployment pays for.
        for output in CONSUMED_OUTPUTS:
            self.node.create_subscription(Image, f'/perception_node/{output}',
                                          lambda msg: None, RELIABLE)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._diagnostics, 10)
        self.msg = array_to_image(rgb, encoding='rgb8', header=Header(frame_id='bench'))

    def _output(self, msg):
        self.outputs.append(time.monotonic())
        sent = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.wire_ms.append((self.node.get_clock().now().nanoseconds - sent) / 1e6)

    def _diagnostics(self, array):
        for status in array.status:
            self.diagnostics = {kv.key: kv.value for kv in status.values}

    def publish(self):
        """Publish the frame stamped with the current time."""
        self.msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publisher.publish(self.msg)

    def spin_until(self, condition, timeout):
        """Spin until condition() or timeout; return condition()."""
        # spin_once returns as soon as a message arrives; a short timeout would only wake
        # this process a hundred times a second and steal CPU from the node being measured.
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.executor.spin_once(timeout_sec=min(remaining, 0.5))
        return condition()

    def close(self):
        """Shut the client down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def node_figures(harness, pipeline, rgb, frames):
    """Measure in alternation; return (infer s, node frames/s saturated, node diagnostics).

    In-process infer() calls alternate with node frames so that both see the same load.
    """
    infer_times = [timed_infer(pipeline, rgb)]
    if not harness.spin_until(lambda: harness.publisher.get_subscription_count() > 0, 60):
        raise RuntimeError('perception_node did not subscribe within 60 s')
    # Warm-up until the first output: discovery both ways, lazy initialisation.
    while not harness.outputs:
        harness.publish()
        harness.spin_until(lambda: bool(harness.outputs), 5.0)
    # One frame in flight, alternating with infer(). Measured before the saturated phase so
    # that its waiting frames are not in the node's latency window.
    harness.wire_ms.clear()
    for _ in range(2 * frames):
        count = len(harness.outputs)
        harness.publish()
        harness.spin_until(lambda: len(harness.outputs) > count, 60.0)
        infer_times.append(timed_infer(pipeline, rgb))
    wire_ms = statistics.median(harness.wire_ms)
    harness.diagnostics = None
    harness.spin_until(lambda: harness.diagnostics is not None, 5.0)
    diagnostics = dict(harness.diagnostics)
    infer_s = statistics.median(infer_times)
    # Saturation: publish at twice the pipeline's rate for `frames` pipeline durations.
    harness.outputs.clear()
    deadline = time.monotonic() + frames * infer_s
    while time.monotonic() < deadline:
        harness.publish()
        harness.spin_until(lambda: False, infer_s / 2)
    stamps = harness.outputs[1:]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else float('nan')
    return infer_s, rate, diagnostics, wire_ms


def main():
    """Run both measurements and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--short-edge', type=int, default=512)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--frames', type=int, default=8,
                        help='frames per phase (saturation, then one at a time)')
    args = parser.parse_args()
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100 // 10))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    rgb = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3),
                                            dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = os.path.join(tmp, 'bench.pt')
        write_checkpoint(checkpoint, args.short_edge)
        pipeline = DenseOODPipeline.from_checkpoint(checkpoint, device=args.device)
        node = subprocess.Popen(
            [sys.executable, '-m', 'dense_ood_ros.node', '--ros-args',
             '-p', f'checkpoint:={checkpoint}', '-p', f'device:={args.device}',
             '-p', 'qos_overrides./bench/image.subscription.reliability:=reliable',
             '-p', f'max_input_pixels:={rgb.size}',
             '-p', 'diagnostics_period:=0.5', '-r', 'image:=/bench/image'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness = Harness(rgb)
        try:
            infer_s, rate, diagnostics, wire_ms = node_figures(harness, pipeline, rgb,
                                                               args.frames)
        finally:
            harness.close()
            node.send_signal(2)
            node.wait(timeout=30)
    ratio = rate * infer_s
    processing_ms = float(diagnostics['processing_ms_p50'])
    inference_ms = float(diagnostics['inference_ms_p50'])
    # From the wire: publish to the output's arrival, minus the pipeline's own time.
    added_ms = wire_ms - infer_s * 1e3
    verdict = 'meets' if ratio >= THROUGHPUT_GOAL and added_ms <= LATENCY_GOAL_MS else 'MISSES'
    transport = os.environ.get('FASTDDS_BUILTIN_TRANSPORTS', 'DEFAULT')
    print(f'node_overhead: node/pipeline rate = {ratio:.3f} (goal >= {THROUGHPUT_GOAL}), '
          f'added latency p50 = {added_ms:.1f} ms (goal <= {LATENCY_GOAL_MS:g} ms): publish '
          f'-> score arrival {wire_ms:.0f} ms minus in-process infer {infer_s * 1e3:.0f} ms; '
          f'as the node sees it: arrival->publish {processing_ms:.0f} ms of which pipeline '
          f'{inference_ms:.0f} ms (in-node/in-process {inference_ms / (infer_s * 1e3):.3f}); '
          f'{args.height}x{args.width} -> short edge {args.short_edge}, {args.device}, '
          f'Fast DDS transports {transport}: {verdict}')


if __name__ == '__main__':
    main()
