"""Real-process ROS 2 test harness: the node in a subprocess, a client node in this one."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dense_ood_ros.image_codec import array_to_image
from dense_ood_ros.tools.bag_format import stamp_to_ns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every output the node publishes is RELIABLE; a matching client sees each message.
OUTPUT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
INPUT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def ros_environment(*, import_checkout=True, vision_msgs=True, shadow=None):
    """Return os.environ with DDS traffic confined to this machine and this test run.

    `import_checkout` puts this checkout first on PYTHONPATH; an installed package is
    tested without it. `vision_msgs=False` takes a vision_msgs install off the search
    paths (the node without it). `shadow` is a directory put first on PYTHONPATH, whose
    packages hide the real ones (see `unimportable`).
    """
    env = dict(os.environ)
    if not vision_msgs:
        for name in ('PYTHONPATH', 'LD_LIBRARY_PATH', 'AMENT_PREFIX_PATH'):
            env[name] = os.pathsep.join(p for p in env.get(name, '').split(os.pathsep)
                                        if p and 'vision_msgs' not in p)
    assert 'ROS_DOMAIN_ID' in env, 'conftest sets a domain per test run'
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONUNBUFFERED'] = '1'
    if import_checkout:
        env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    if shadow is not None:
        env['PYTHONPATH'] = str(shadow) + os.pathsep + env.get('PYTHONPATH', '')
    return env


class ChildProcess:
    """A command in its own process with the test run's ROS environment, output collected."""

    def __init__(self, command, *, import_checkout=True, cwd=ROOT, vision_msgs=True,
                 shadow=None):
        """Start `command`; `import_checkout` puts this checkout first on PYTHONPATH."""
        env = ros_environment(import_checkout=import_checkout, vision_msgs=vision_msgs,
                              shadow=shadow)
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self._output = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self._output.append(line)

    @property
    def output(self):
        """Everything the process printed so far."""
        return ''.join(self._output)

    def alive(self):
        """Tell whether the process is still running."""
        return self.process.poll() is None

    def wait_for_line(self, text, timeout):
        """Return whether a line containing `text` appeared within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if text in self.output:
                return True
            time.sleep(0.05)
        return text in self.output

    def interrupt(self, timeout=20.0):
        """Send SIGINT as Ctrl-C would and return the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout=60.0):
        """Wait for the process to exit by itself and return the exit code."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5.0)
        return code

    def kill(self):
        """Stop the process if it still runs."""
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class NodeProcess(ChildProcess):
    """perception_node running in its own process with the given ROS arguments."""

    def __init__(self, *ros_args, command=None, cwd=ROOT, vision_msgs=True, shadow=None):
        """Start `command` (default: this checkout's node module) with `ros_args`."""
        base = command or [sys.executable, '-m', 'dense_ood_ros.node']
        super().__init__([*base, '--ros-args', *ros_args], import_checkout=command is None,
                         cwd=cwd, vision_msgs=vision_msgs, shadow=shadow)


class ToolProcess(ChildProcess):
    """One of our console tools as `python -m dense_ood_ros.tools.<module>`."""

    def __init__(self, module, *args):
        """Start the tool with `args` (converted to strings)."""
        super().__init__([sys.executable, '-m', f'dense_ood_ros.tools.{module}',
                          *map(str, args)])


class Client:
    """A node in this process that publishes frames and records what comes back."""

    def __init__(self, name='test_client'):
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received = {}
        self._lock = threading.Lock()

    def publisher(self, topic, msg_type=Image, qos=INPUT_QOS):
        """Create a publisher on `topic`."""
        return self.node.create_publisher(msg_type, topic, qos)

    def record(self, topic, msg_type=Image, qos=OUTPUT_QOS):
        """Start recording every message on `topic` into self.received[topic]."""
        self.received[topic] = []

        def store(msg):
            with self._lock:
                self.received[topic].append(msg)
        self.node.create_subscription(msg_type, topic, store, qos)

    def messages(self, topic):
        """Return a copy of what arrived on `topic` so far."""
        with self._lock:
            return list(self.received[topic])

    def spin_until(self, condition, timeout, step=0.05):
        """Spin until condition() is true; return whether it became true in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=step)
            if condition():
                return True
        return condition()

    def spin_for(self, seconds):
        """Spin for a fixed time."""
        self.spin_until(lambda: False, seconds)

    def wait_for_subscriber(self, publisher, timeout=30.0):
        """Spin until `publisher` is matched by a subscription (discovery done)."""
        return self.spin_until(lambda: publisher.get_subscription_count() > 0, timeout)

    def wait_until_connected(self, publishers, timeout=30.0):
        """Spin until every publisher has a subscriber and every recorded topic a publisher.

        Discovery runs both ways: a frame sent before the node's output publishers are
        matched to our recorders would be processed and its outputs lost.
        """
        return self.spin_until(lambda: all(
            p.get_subscription_count() > 0 for p in publishers) and all(
            self.node.count_publishers(topic) > 0 for topic in self.received), timeout)

    def handshake(self, publisher, msg, topics, timeout=60.0, period=0.5, before=()):
        """Publish `msg` every `period` s until each of `topics` got a message; return success.

        Matching is asynchronous on both ends, so the first frames after start-up can be lost;
        tests that count frames begin after this. `before` holds (publisher, message) pairs
        published ahead of `msg` each time, for what the node needs first (a CameraInfo):
        published once, it can be lost the same way.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for first, message in before:
                first.publish(message)
            publisher.publish(msg)
            if self.spin_until(lambda: all(self.received[t] for t in topics), period):
                return True
        return False

    def close(self):
        """Destroy the node and shut this context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def unimportable(directory, *packages):
    """Write packages into `directory` whose import fails; return it (for `shadow`)."""
    for package in packages:
        (directory / package).mkdir(parents=True, exist_ok=True)
        (directory / package / '__init__.py').write_text(
            f'raise ImportError({package!r} + " is made unimportable for this test")\n')
    return directory


def frame_message(rgb, *, stamp_ns, frame_id='camera'):
    """Return an rgb8 sensor_msgs/Image of `rgb` with the given stamp and frame_id."""
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return array_to_image(np.ascontiguousarray(rgb), encoding='rgb8', header=header)


def stamp_ns(msg):
    """Return a message header's stamp in nanoseconds."""
    return stamp_to_ns(msg.header.stamp)
