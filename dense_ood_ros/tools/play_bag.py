"""play_bag: publish a rosbag2 with rclpy at its recorded timing, optionally with /clock.

Messages are published as the serialised bytes stored in the bag (rclpy's raw publishing),
so nothing is decoded on the way and every topic whose message type rclpy can import plays.
"""

import argparse
import collections
import importlib
import sys
import time

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from dense_ood_ros.tools.bag_format import IMAGE_TOPIC, open_bag

CLOCK_PERIOD_S = 0.05  # /clock between messages, so sim-time timers keep ticking
PROGRESS_PERIOD_S = 1.0
ACK_TIMEOUT_S = 5.0


def message_class(msgtype):
    """Return the rclpy message class of a 'pkg/msg/Name' type, or raise a clear error."""
    package, _, name = msgtype.rpartition('/')
    module = package.replace('/', '.')
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ValueError(f'message type {msgtype} is not installed for rclpy; leave its topic '
                         f'out with --topics') from None


class BagPlayer:
    """One node with a publisher per bag topic; play() replays the bag once."""

    def __init__(self, bag, *, topics=None, reliability='reliable', clock=False, depth=10):
        self.reader = open_bag(bag)
        known = {c.topic for c in self.reader.connections}
        unknown = sorted(set(topics or ()) - known)
        if unknown:
            raise ValueError(f'{bag} has no topic {", ".join(unknown)}; it has '
                             f'{", ".join(sorted(known))}')
        self.connections = [c for c in self.reader.connections
                            if topics is None or c.topic in topics]
        qos = QoSProfile(depth=depth, reliability=(
            ReliabilityPolicy.RELIABLE if reliability == 'reliable'
            else ReliabilityPolicy.BEST_EFFORT))
        types = {c.topic: message_class(c.msgtype) for c in self.connections}
        self.node = rclpy.create_node('play_bag')
        self.sent = collections.Counter()  # messages published per topic
        self.publishers = {topic: self.node.create_publisher(msg_type, topic, qos)
                           for topic, msg_type in types.items()}
        self.clock = None
        if clock:
            from rosgraph_msgs.msg import Clock
            self.clock = self.node.create_publisher(Clock, '/clock', 10)
            self._clock_msg = Clock()

    def wait_for_subscribers(self, topic, count, timeout):
        """Wait until ``topic`` has ``count`` subscriptions; return whether it happened."""
        publisher = self.publishers[topic]
        deadline = time.monotonic() + timeout
        while publisher.get_subscription_count() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _publish_clock(self, stamp_ns):
        if self.clock is not None:
            self._clock_msg.clock.sec, self._clock_msg.clock.nanosec = divmod(
                int(stamp_ns), 1_000_000_000)
            self.clock.publish(self._clock_msg)

    def _sleep_until(self, wall_target, bag_start, wall_start, rate):
        """Sleep until ``wall_target`` (monotonic s), publishing /clock on the way."""
        while True:
            now = time.monotonic()
            if now >= wall_target:
                return
            if self.clock is not None:
                self._publish_clock(bag_start + (now - wall_start) * rate * 1e9)
            time.sleep(min(wall_target - now, CLOCK_PERIOD_S))

    def play(self, *, rate=1.0, progress=None):
        """Publish every message once at its recorded time divided by ``rate``; return count."""
        total = sum(c.msgcount for c in self.connections)
        wall_start = bag_start = None
        last_report = time.monotonic()
        count = 0
        for connection, timestamp, raw in self.reader.messages(connections=self.connections):
            if wall_start is None:
                wall_start, bag_start = time.monotonic(), timestamp
            self._sleep_until(wall_start + (timestamp - bag_start) / 1e9 / rate, bag_start,
                              wall_start, rate)
            self._publish_clock(timestamp)
            self.publishers[connection.topic].publish(bytes(raw))
            self.sent[connection.topic] += 1
            count += 1
            if progress and (time.monotonic() - last_report >= PROGRESS_PERIOD_S
                             or count == total):
                last_report = time.monotonic()
                progress(count, total, (timestamp - bag_start) / 1e9)
        return count

    def wait_for_acks(self, timeout=ACK_TIMEOUT_S):
        """Give reliable subscribers time to receive the last messages before we go away."""
        for publisher in self.publishers.values():
            publisher.wait_for_all_acked(Duration(seconds=timeout))

    def close(self):
        """Destroy the node and close the bag."""
        self.node.destroy_node()
        self.reader.close()


DONE_PREFIX = 'play_bag: done'


def sent_per_topic(output):
    """Return {topic: messages} from play_bag's printed output (its 'done' line).

    Raises ValueError when the output has no such line (the player did not finish).
    """
    for line in reversed(output.splitlines()):
        if line.startswith(DONE_PREFIX) and '(' in line:
            inside = line.split('(', 1)[1].rstrip(')')
            pairs = (part.rpartition(': ') for part in inside.split(', ') if part)
            return {topic: int(count) for topic, _, count in pairs}
    raise ValueError('play_bag printed no "done" line: it did not finish the bag')


def _report(count, total, bag_seconds):
    print(f'play_bag: {count}/{total} messages, bag time {bag_seconds:.2f} s', flush=True)


def parse_args(argv):
    """Parse the command line (ROS arguments are removed first)."""
    parser = argparse.ArgumentParser(prog='play_bag', description=__doc__.splitlines()[0])
    parser.add_argument('bag', help='rosbag2 directory')
    parser.add_argument('--rate', type=float, default=1.0,
                        help='playback speed factor (2 plays twice as fast)')
    parser.add_argument('--loop', action='store_true', help='play again and again until Ctrl-C')
    parser.add_argument('--clock', action='store_true',
                        help='publish /clock (rosgraph_msgs/Clock) with the bag time')
    parser.add_argument('--topics', nargs='+', help='play only these topics')
    parser.add_argument('--qos-reliability', choices=('reliable', 'best_effort'),
                        default='reliable')
    parser.add_argument('--wait-for-subscribers', type=int, default=0, metavar='N',
                        help='before playing, wait until the camera topic has N subscribers')
    parser.add_argument('--wait-topic', default=IMAGE_TOPIC,
                        help='topic --wait-for-subscribers watches (default %(default)s)')
    parser.add_argument('--wait-timeout', type=float, default=60.0,
                        help='give up waiting for subscribers after this many seconds')
    parser.add_argument('--delay', type=float, default=0.0,
                        help='seconds to sleep before the first message (after waiting)')
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error(f'--rate must be positive, got {args.rate}')
    return args


def _play(args):
    player = BagPlayer(args.bag, topics=args.topics, reliability=args.qos_reliability,
                       clock=args.clock)
    try:
        if args.wait_for_subscribers:
            if args.wait_topic not in player.publishers:
                raise ValueError(f'--wait-topic {args.wait_topic} is not played')
            print(f'play_bag: waiting for {args.wait_for_subscribers} subscriber(s) on '
                  f'{args.wait_topic}', flush=True)
            if not player.wait_for_subscribers(args.wait_topic, args.wait_for_subscribers,
                                               args.wait_timeout):
                raise TimeoutError(f'fewer than {args.wait_for_subscribers} subscriber(s) on '
                                   f'{args.wait_topic} after {args.wait_timeout:g} s')
        time.sleep(args.delay)
        while True:
            count = player.play(rate=args.rate, progress=_report)
            if not args.loop:
                break
        player.wait_for_acks()
        per_topic = ', '.join(f'{topic}: {n}' for topic, n in sorted(player.sent.items()))
        # Per topic, over every loop: what a test sets against the node's own counters.
        print(f'{DONE_PREFIX}, {count} messages ({per_topic})', flush=True)
    finally:
        player.close()


def main(args=None):
    """Entry point of `play_bag`: 0 at the end of the bag or on Ctrl-C, 2 on bad input.

    ``args`` is a full argv (program name first, ROS arguments allowed), as rclpy.init takes.
    """
    # Python's own SIGINT handling: Ctrl-C raises KeyboardInterrupt wherever we are (rclpy's
    # handler would instead invalidate the context under a publisher mid-publish).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        argv = remove_ros_args(sys.argv if args is None else args)[1:]
        _play(parse_args(argv))
    except (FileNotFoundError, ValueError, TimeoutError) as error:
        print(f'play_bag: {error}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        print('play_bag: interrupted', flush=True)
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
