"""eval_stream: score what perception_node publishes against the ground truth in a bag.

Subscribes to the node's ``~/anomaly_score`` (and ``~/semantic`` where the bag has semantic
ground truth), looks each output's header stamp up in the bag's ``/ood/ground_truth`` and
``/semantic/ground_truth``, and reports AP, FPR95, AUROC, mIoU, frames sent / processed /
dropped and latency once every frame is matched or no output came for ``--timeout`` seconds.
Where vision_msgs is importable it also takes ``~/anomaly_detections`` and ``~/anomaly_mask``
and scores the node's regions at component level (sIoU, PPV, mean F1; component_metrics).

Latency is measured on the evaluator's own steady clock, per frame: arrival of the node's
anomaly score minus arrival of the same frame (same stamp) on the camera topic, to which the
evaluator subscribes too. Bag stamps are in the past, so "now minus header stamp" would measure
when the bag was made; this is transport to the node, processing and transport back.
"""

import argparse
import pathlib
import sys
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from dense_ood_ros import detection_msgs
from dense_ood_ros.atomic_file import write_json
from dense_ood_ros.image_codec import image_to_array, image_to_rgb
from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from dense_ood_ros.tools.bag_format import (IMAGE_TOPIC, OOD_TOPIC, open_bag, read_topics,
                                            SEMANTIC_TOPIC, stamp_to_ns)
from dense_ood_ros.tools.frame_panels import frame_panel, score_range, write_panel
from dense_ood_ros.tools.stream_scoring import (PackedLabel, REQUIRED_DETECTIONS,
                                                REQUIRED_MASK, REQUIRED_SCORE,
                                                REQUIRED_SEMANTIC, StreamScorer, Truth)
from dense_ood_ros.visualize import palette_lut

DEFAULT_SCORE_TOPIC = '/perception_node/anomaly_score'
# The node's outputs are RELIABLE; a deep history rides out a slow evaluator callback.
OUTPUT_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# Best effort matches a reliable and a best-effort player alike; only arrival times are used.
INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
LATENCY_SOURCE = ('evaluator steady clock: arrival of anomaly_score minus arrival of the same '
                  'stamp on the camera topic')
# The node's own frame counters, read from its /diagnostics (published once a period).
NODE_COUNTERS = ('received', 'processed', 'dropped', 'rejected')
DIAGNOSTICS_WAIT_S = 3.0


def sibling_topic(topic, name):
    """Return the topic ``name`` in the namespace of ``topic`` ('/n/anomaly_score' -> '/n/x')."""
    return topic.rpartition('/')[0] + '/' + name


def load_truth(reader):
    """Return ({stamp ns: Truth}, frames sent) from a bag written by dataset_to_bag."""
    topics = {c.topic: c for c in reader.connections}
    if OOD_TOPIC not in topics:
        raise ValueError(f'{reader.path} has no {OOD_TOPIC} (a bag of a plain image folder?): '
                         f'there is nothing to score against')
    labels = {OOD_TOPIC: {}, SEMANTIC_TOPIC: {}}
    for topic, _, msg in read_topics(reader, set(labels)):
        labels[topic][stamp_to_ns(msg.header.stamp)] = PackedLabel.pack(image_to_array(msg))
    truth = {stamp: Truth(ood=ood, semantic=labels[SEMANTIC_TOPIC].get(stamp))
             for stamp, ood in labels[OOD_TOPIC].items()}
    sent = topics[IMAGE_TOPIC].msgcount if IMAGE_TOPIC in topics else len(truth)
    return truth, sent


def describes(status_name, namespace):
    """Tell whether a node's diagnostic status is about the outputs under `namespace`.

    The node names each camera's status '<node>: <camera>'; a named camera publishes under
    '<node>/<camera>', the single unnamed one (status 'camera') directly under '<node>'.
    """
    node, _, camera = status_name.partition(': ')
    return namespace in (f'{node}/{camera}', node)


def node_counters(status):
    """Return the node's frame counters from one DiagnosticStatus (ints)."""
    values = {item.key: item.value for item in status.values}
    return {key: int(values[key]) for key in NODE_COUNTERS if key in values}


def _output_type(kind):
    """Return (message type, conversion to what the scorer takes) of one output kind."""
    if kind == REQUIRED_DETECTIONS:
        return detection_msgs.Detection2DArray, detection_msgs.detection_boxes
    return Image, image_to_array


def pick_stamps(stamps, count):
    """Return up to ``count`` stamps spread evenly over the sorted ``stamps``."""
    stamps = sorted(stamps)
    if count <= 0 or not stamps:
        return []
    indices = np.unique(np.linspace(0, len(stamps) - 1, min(count, len(stamps))).round())
    return [stamps[int(i)] for i in indices]


class _Subscriber:
    """The evaluator's node: output subscriptions feed the scorer, the camera topic times."""

    def __init__(self, scorer, context, *, output_topics, image_topic):
        self.scorer = scorer
        self.outputs_received = 0
        self.interrupted = False
        self.node = rclpy.create_node('eval_stream', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.output_topics = output_topics
        self.subscriptions = {
            topic: self.node.create_subscription(_output_type(kind)[0], topic,
                                                 self._on_output(kind), OUTPUT_QOS)
            for kind, topic in output_topics.items()}
        self.image_topic = image_topic
        # What the node itself counted, to set against what the player sent and we scored.
        self.namespace = output_topics[REQUIRED_SCORE].rpartition('/')[0]
        self.node_frames = None
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      OUTPUT_QOS)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if describes(status.name, self.namespace):
                self.node_frames = node_counters(status)

    def _on_output(self, kind):
        convert = _output_type(kind)[1]

        def store(msg):
            self.outputs_received += 1
            self.scorer.add_output(kind, stamp_to_ns(msg.header.stamp), convert(msg),
                                   time.monotonic())
        return store

    def _on_input(self, msg):
        self.scorer.add_input(stamp_to_ns(msg.header.stamp), time.monotonic())

    def wait_for_publishers(self, timeout):
        """Spin until every output topic has a publisher; then subscribe to the camera topic.

        Subscribing to the camera last means a player waiting for the camera topic's
        subscribers starts only after the evaluator has discovered the node's outputs.
        """
        deadline = time.monotonic() + timeout
        missing = list(self.output_topics.values())
        while missing:
            if time.monotonic() > deadline:
                raise TimeoutError(f'no publisher on {", ".join(missing)} after {timeout:g} s: '
                                   f'is perception_node running with these topics?')
            self.executor.spin_once(timeout_sec=0.05)
            # Matched, not merely listed in the graph: only a matched reader gets messages.
            missing = [t for t in missing if not self.subscriptions[t].get_publisher_count()]
        if self.image_topic:
            self.node.create_subscription(Image, self.image_topic, self._on_input, INPUT_QOS)

    def run(self, *, timeout, start_timeout):
        """Spin until every frame is matched or outputs stop for ``timeout`` seconds."""
        last_change, seen = time.monotonic(), 0
        while not self.scorer.done():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except (KeyboardInterrupt, ExternalShutdownException):
                # Ctrl-C ends the evaluation early; what was matched is still reported.
                self.interrupted = True
                return
            now = time.monotonic()
            if self.outputs_received != seen:
                last_change, seen = now, self.outputs_received
            elif now - last_change > (timeout if seen else start_timeout):
                return

    def wait_for_node_counters(self, timeout=DIAGNOSTICS_WAIT_S):
        """Spin until the node's diagnostics count every frame we scored, or `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self.node_frames or {}
            if frames.get('processed', -1) >= len(self.scorer.matched):
                return
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except (KeyboardInterrupt, ExternalShutdownException):
                return

    def close(self):
        """Destroy the node and its executor."""
        self.executor.shutdown()
        self.node.destroy_node()


def _write_frames(reader, scorer, frames_dir, image_topic_in_bag):
    frames_dir = pathlib.Path(frames_dir)
    frames_dir.mkdir(parents=True, exist_ok=True)
    lut = palette_lut(CITYSCAPES_PALETTE)
    order = {stamp: i for i, stamp in enumerate(sorted(scorer.truth))}
    complete = {stamp: outputs for stamp, outputs in scorer.kept.items()
                if {REQUIRED_SCORE, REQUIRED_SEMANTIC} <= outputs.keys()}
    written = []
    if not complete or not image_topic_in_bag:
        return written
    value_range = score_range([outputs[REQUIRED_SCORE] for outputs in complete.values()])
    for _, stamp, msg in read_topics(reader, {IMAGE_TOPIC}, timestamps=set(complete)):
        outputs = complete[stamp]
        panel = frame_panel(image_to_rgb(msg), outputs[REQUIRED_SEMANTIC],
                            outputs[REQUIRED_SCORE], outputs.get(REQUIRED_MASK), lut,
                            value_range, boxes=outputs.get(REQUIRED_DETECTIONS))
        path = frames_dir / f'frame_{order[stamp]:04d}.png'
        write_panel(path, panel)
        written.append(str(path))
    return sorted(written)


def evaluate_stream(bag, *, score_topic=DEFAULT_SCORE_TOPIC, semantic_topic=None,
                    mask_topic=None, image_topic=IMAGE_TOPIC, num_classes=len(CITYSCAPES_CLASSES),
                    timeout=10.0, start_timeout=120.0, frames_dir=None, frames=0, args=None,
                    on_ready=None, components=None, detections_topic=None):
    """Evaluate the node's stream against ``bag``; return the report dict.

    Keys: ap, fpr95, auroc, miou (None where undefined), anomaly_pixel_share, frames_sent,
    frames_processed, frames_dropped, latency_ms_p50, latency_ms_p95 and details. ``on_ready``
    is called once the evaluator has found the node's outputs and subscribed to the camera
    topic: start the player after it. Semantic and mask topics default to the score topic's
    namespace; ``frames_dir`` gets up to ``frames`` side-by-side PNGs. ``args`` are ROS
    arguments (remappings) for the evaluator's own rclpy context. ``components`` (default:
    whenever vision_msgs is importable) also scores the node's ``anomaly_detections`` with
    the component-level metrics (siou, ppv, f1_mean).
    """
    semantic_topic = semantic_topic or sibling_topic(score_topic, 'semantic')
    mask_topic = mask_topic or sibling_topic(score_topic, 'anomaly_mask')
    detections_topic = detections_topic or sibling_topic(score_topic, 'anomaly_detections')
    if components is None:
        components = detection_msgs.AVAILABLE
    elif components and not detection_msgs.AVAILABLE:
        raise ValueError(f'component metrics need vision_msgs: '
                         f'{detection_msgs.UNAVAILABLE_REASON}')
    reader = open_bag(bag)
    try:
        truth, sent = load_truth(reader)
        keep = pick_stamps(truth, frames if frames_dir else 0)
        scorer = StreamScorer(truth, frames_sent=sent, num_classes=num_classes, keep=keep,
                              components=components)
        output_topics = {REQUIRED_SCORE: score_topic}
        if scorer.needs_semantic or keep:
            output_topics[REQUIRED_SEMANTIC] = semantic_topic
        if keep or components:
            output_topics[REQUIRED_MASK] = mask_topic
        if components:
            output_topics[REQUIRED_DETECTIONS] = detections_topic
        context = Context()
        # No rclpy signal handler: Ctrl-C stays a KeyboardInterrupt, and a caller's own SIGINT
        # handling (make demo running this in-process) is left alone.
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            subscriber = _Subscriber(scorer, context, output_topics=output_topics,
                                     image_topic=image_topic)
            try:
                subscriber.wait_for_publishers(start_timeout)
                if on_ready is not None:
                    on_ready()
                subscriber.run(timeout=timeout, start_timeout=start_timeout)
                if not subscriber.interrupted:
                    subscriber.wait_for_node_counters()
            finally:
                subscriber.close()
        finally:
            rclpy.try_shutdown(context=context)
        report = scorer.result()
        report.update(interrupted=subscriber.interrupted, node_frames=subscriber.node_frames,
                      bag=str(bag), score_topic=score_topic,
                      semantic_topic=(semantic_topic if scorer.needs_semantic else None),
                      latency_source=LATENCY_SOURCE if image_topic else None)
        if frames_dir:
            in_bag = any(c.topic == IMAGE_TOPIC for c in reader.connections)
            report['frames_written'] = _write_frames(reader, scorer, frames_dir, in_bag)
        return report
    finally:
        reader.close()


def format_report(report):
    """Return the report as a few human-readable lines (metrics in percent)."""
    def pct(key):
        return '-' if report[key] is None else f'{100 * report[key]:.2f}%'

    def ms(key):
        return '-' if report[key] is None else f'{report[key]:.1f} ms'

    components = ('components: not measured' if report.get('f1_mean') is None
                  and report.get('truth_components') is None else
                  f'components: sIoU {pct("siou")}  PPV {pct("ppv")}  mean F1 {pct("f1_mean")} '
                  f'({report["truth_components"]} obstacles, '
                  f'{report["predicted_components"]} predicted)')

    return '\n'.join([
        f'frames: {report["frames_sent"]} sent, {report["frames_processed"]} processed, '
        f'{report["frames_dropped"]} dropped',
        f'AP {pct("ap")}  FPR95 {pct("fpr95")}  AUROC {pct("auroc")}  mIoU {pct("miou")}  '
        f'anomaly pixels {pct("anomaly_pixel_share")}',
        components,
        f'latency p50 {ms("latency_ms_p50")}  p95 {ms("latency_ms_p95")} '
        f'({report["latency_frames"]} frames; {report["latency_source"] or "not measured"})',
        'node diagnostics: ' + (', '.join(f'{k} {v}' for k, v in report['node_frames'].items())
                                if report.get('node_frames') else 'none received'),
        *report['notes'],
    ])


def parse_args(argv):
    """Parse the command line (ROS arguments are removed first)."""
    parser = argparse.ArgumentParser(prog='eval_stream', description=__doc__.splitlines()[0])
    parser.add_argument('--bag', required=True, help='the bag being played to the node')
    parser.add_argument('--score-topic', default=DEFAULT_SCORE_TOPIC)
    parser.add_argument('--semantic-topic',
                        help="default: 'semantic' beside the score topic")
    parser.add_argument('--mask-topic', help="default: 'anomaly_mask' beside the score topic "
                                             '(read only for --frames-dir)')
    parser.add_argument('--image-topic', default=IMAGE_TOPIC,
                        help="camera topic for latency; '' measures none")
    parser.add_argument('--num-classes', type=int, default=len(CITYSCAPES_CLASSES),
                        help='classes of the semantic ground truth (default: Cityscapes 19)')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='stop after this many seconds without a new output')
    parser.add_argument('--start-timeout', type=float, default=120.0,
                        help='wait this long for the node and for its first output')
    parser.add_argument('--max-dropped', type=float, default=0.0, metavar='SHARE',
                        help="share of the bag's frames that may go unscored before the exit "
                             'status is 1 (default 0: every frame; a node slower than the '
                             'replay drops frames by design, allow for it here)')
    parser.add_argument('--components', action=argparse.BooleanOptionalAction, default=None,
                        help='score ~/anomaly_detections with the component-level metrics '
                             '(default: when vision_msgs is importable)')
    parser.add_argument('--detections-topic',
                        help="default: 'anomaly_detections' beside the score topic")
    parser.add_argument('--json', help='write the report here (atomically)')
    parser.add_argument('--frames-dir', help='write side-by-side PNGs of a few frames here')
    parser.add_argument('--frames', type=int, default=4, help='how many for --frames-dir')
    return parser.parse_args(argv)


def verdict(report, max_dropped):
    """Return None when the stream passes, else why it fails (for exit status 1)."""
    sent, processed = report['frames_sent'], report['frames_processed']
    if not processed:
        return f'no frame of {sent} was scored'
    if report['frames_dropped'] > max_dropped * sent:
        return (f'{report["frames_dropped"]} of {sent} frames were never scored (allowed: '
                f'{max_dropped:.0%}); did the node stop or fall behind?')
    return None


def main(args=None):
    """Entry point of `eval_stream`: 0 when the stream passed, 1 when not, 2 on bad input.

    The stream passes when at least one frame and all but ``--max-dropped`` of the bag's
    frames were scored. Non-finite scores from the node are bad input (2), named as such.

    ``args`` is a full argv (program name first, ROS arguments allowed), as rclpy.init takes.
    """
    argv = sys.argv if args is None else args
    options = parse_args(remove_ros_args(argv)[1:])
    try:
        report = evaluate_stream(
            options.bag, score_topic=options.score_topic, semantic_topic=options.semantic_topic,
            mask_topic=options.mask_topic, image_topic=options.image_topic,
            num_classes=options.num_classes, timeout=options.timeout,
            start_timeout=options.start_timeout, frames_dir=options.frames_dir,
            frames=options.frames, args=argv, components=options.components,
            detections_topic=options.detections_topic,
            on_ready=lambda: print('eval_stream: ready', flush=True))
    except (FileNotFoundError, ValueError, TimeoutError) as error:
        print(f'eval_stream: {error}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        print('eval_stream: interrupted', file=sys.stderr)
        return 0
    print(format_report(report), flush=True)
    if options.json:
        write_json(options.json, report)
    failure = verdict(report, options.max_dropped)
    if failure:
        print(f'eval_stream: FAILED: {failure}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
