"""`make demo`: the whole story on the synthetic street world, as separate ROS 2 processes.

1. the demo checkpoint: ``demo/ldn121_demo.pt`` (shipped; see demo/README.md for the exact
   training command and commit), or, when it is missing, trained here with
   ``python -m train.joint --config config/train_demo.yaml`` (about 4 minutes);
2. a synthetic-world test split whose road anomalies never occur in training, written in the
   Fishyscapes Lost & Found layout and converted to a rosbag2 by ``dataset_to_bag``;
3. ``perception_node`` on that checkpoint, ``eval_stream`` listening to it, and ``play_bag``
   replaying the camera topic at the recorded rate;
4. ``demo_out/report.json``, ``demo_out/frames/*.png`` (camera with the node's obstacle
   boxes | semantic colours | anomaly heat map with the mask outline) and the table printed
   at the end: pixel metrics (AP, FPR95, ...) beside the component-level sIoU, PPV and mean
   F1 of the node's ``~/anomaly_detections``.

Every process gets this run's own ROS domain and localhost-only discovery, so the demo neither
sees nor disturbs other ROS 2 traffic on the machine.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHIPPED_CHECKPOINT = os.path.join(ROOT, 'demo', 'ldn121_demo.pt')
DEMO_CONFIG = os.path.join('config', 'train_demo.yaml')
REPORT_KEYS = ('ap', 'fpr95', 'auroc', 'miou', 'anomaly_pixel_share', 'siou', 'ppv',
               'f1_mean', 'truth_components', 'predicted_components', 'frames_sent',
               'frames_processed', 'frames_dropped', 'latency_ms_p50', 'latency_ms_p95',
               'node_frames')
# vision_msgs is not on PyPI: without a ROS install the prebuilt copy beside the checkout
# gives ~/anomaly_detections (make exports the same paths).
SHARED_VISION_MSGS = os.path.join(os.path.dirname(ROOT), 'shared', 'vision_msgs', 'tree')
CAMERA_TOPIC = '/camera/image_raw'


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='demo_out', help='output directory')
    parser.add_argument('--checkpoint', help=f'default: {os.path.relpath(SHIPPED_CHECKPOINT)}, '
                                             'or trained here when that is missing')
    parser.add_argument('--images', type=int, default=40, help='frames in the bag')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=512)
    parser.add_argument('--seed', type=int, default=0,
                        help="world seed; the test split's scenes never occur in training")
    parser.add_argument('--fps', type=float, default=2.0,
                        help='replay rate; slow enough that a CPU node drops nothing')
    parser.add_argument('--panels', type=int, default=4, help='frames drawn into frames/')
    return parser.parse_args(argv)


def ros_environment():
    """Return the environment of every demo process: its own domain, localhost only."""
    env = dict(os.environ)
    # A caller's domain wins (the tests isolate theirs); otherwise one of ROS's safe 1..100.
    env.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    site = os.path.join(SHARED_VISION_MSGS, 'lib', 'python3.11', 'site-packages')
    if os.path.isdir(site) and site not in env['PYTHONPATH']:
        for name, path in (('PYTHONPATH', site),
                           ('LD_LIBRARY_PATH', os.path.join(SHARED_VISION_MSGS, 'lib')),
                           ('AMENT_PREFIX_PATH', SHARED_VISION_MSGS)):
            env[name] = os.pathsep.join(p for p in (env.get(name), path) if p)
    return env


def step(title):
    """Print a step header."""
    print(f'\n== {title}', flush=True)


def run(command, env):
    """Run a command to completion, streaming its output; stop the demo if it fails."""
    print('$ ' + ' '.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def module(name, *args):
    """Return the command line of ``python -m name args``."""
    return [sys.executable, '-m', name, *map(str, args)]


def get_checkpoint(args, out, env):
    """Return the checkpoint to run: the given one, the shipped one, or one trained now."""
    if args.checkpoint:
        return args.checkpoint
    if os.path.exists(SHIPPED_CHECKPOINT):
        return SHIPPED_CHECKPOINT
    print(f'{os.path.relpath(SHIPPED_CHECKPOINT)} is missing: training the demo model now',
          flush=True)
    train_dir = os.path.join(out, 'train')
    command = module('train.joint', '--config', DEMO_CONFIG, '--out', train_dir)
    if os.path.exists(os.path.join(train_dir, 'resume.pt')):
        command.append('--resume')
    run(command, env)
    return os.path.join(train_dir, 'model.pt')


class Background:
    """A child process whose output is echoed with a prefix and searched for a line."""

    def __init__(self, name, command, env):
        print(f'$ {" ".join(command)} &', flush=True)
        self.name = name
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            print(f'[{self.name}] {line}', end='', flush=True)
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for_line(self, text, timeout):
        """Return once a line containing `text` was printed; raise if the process ended."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while not any(text in line for line in self.lines):
                if self.process.poll() is not None:
                    raise RuntimeError(f'{self.name} exited ({self.process.returncode}) before '
                                       f'printing {text!r}')
                if not self._seen.wait(timeout=max(deadline - time.monotonic(), 0.0)):
                    raise RuntimeError(f'{self.name} did not print {text!r} within {timeout} s')

    def wait(self, timeout):
        """Wait for the process to end; return its exit code."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5.0)
        return code

    def interrupt(self, timeout=20.0):
        """Stop it as Ctrl-C would; kill it if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.wait(timeout)


def replay(checkpoint, bag, out, args, env):
    """Run node, evaluator and player; return (the evaluator's report, camera frames sent).

    Fails (RuntimeError) when the evaluator or the player fails, when the node exits before
    the replay is over, or when it does not stop cleanly (exit 0) on Ctrl-C afterwards.
    """
    stream_json = os.path.join(out, 'stream.json')
    frames_dir = os.path.join(out, 'frames')
    shutil.rmtree(frames_dir, ignore_errors=True)
    node = Background('node', module('dense_ood_ros.node', '--ros-args',
                                     '-p', f'checkpoint:={checkpoint}', '-p', 'device:=cpu',
                                     # Replay for evaluation: lose no frame in transport.
                                     '-p', 'qos_overrides./camera/image_raw.subscription.'
                                           'reliability:=reliable',
                                     '-p', 'qos_overrides./camera/image_raw.subscription.'
                                           'depth:=10',
                                     '-r', f'image:={CAMERA_TOPIC}'), env)
    evaluator = None
    try:
        evaluator = Background('eval_stream', module(
            'dense_ood_ros.tools.eval_stream', '--bag', bag, '--json', stream_json,
            '--frames-dir', frames_dir, '--frames', args.panels, '--timeout', 20), env)
        evaluator.wait_for_line('eval_stream: ready', timeout=180)
        player = Background('play_bag', module(
            'dense_ood_ros.tools.play_bag', bag, '--topics', CAMERA_TOPIC,
            '/camera/camera_info', '--wait-for-subscribers', 2, '--delay', 1), env)
        if player.wait(timeout=600) != 0:
            raise RuntimeError(f'play_bag exited with {player.process.returncode}')
        code = evaluator.wait(timeout=300)
        if code != 0:
            raise RuntimeError(f'eval_stream exited with {code}')
        if node.process.poll() is not None:
            raise RuntimeError(f'the node exited with {node.process.returncode} during the '
                               'replay')
    finally:
        if evaluator is not None:
            evaluator.interrupt()
        node_code = node.interrupt()
    if node_code != 0:
        raise RuntimeError(f'the node exited with {node_code} when stopped (expected 0)')
    with open(stream_json, encoding='utf-8') as stream:
        return json.load(stream), camera_frames_sent(player.lines)


def camera_frames_sent(lines):
    """Return how many camera frames play_bag says it published."""
    from dense_ood_ros.tools.play_bag import sent_per_topic  # after sys.path has the checkout

    try:
        return sent_per_topic(''.join(lines)).get(CAMERA_TOPIC, 0)
    except ValueError as error:
        raise RuntimeError(str(error)) from error


def write_report(out, report, extra):
    """Write report.json (the keys a person compares) and return it."""
    from dense_ood_ros.atomic_file import write_json  # after sys.path has the checkout

    summary = {key: report[key] for key in REPORT_KEYS}
    summary.update(extra)
    write_json(os.path.join(out, 'report.json'), summary)
    return summary


def format_table(summary):
    """Return the final table: metrics in percent and the frame accounting."""
    def pct(key):
        return f'{"-":>6}' if summary[key] is None else f'{100 * summary[key]:6.2f}'

    def ms(key):
        return 'n/a' if summary[key] is None else f'{summary[key]:.1f} ms'

    return '\n'.join([
        f'{"":<18} {"mIoU":>6} {"AP":>6} {"FPR95":>6} {"AUROC":>6} {"sIoU":>6} {"PPV":>6} '
        f'{"F1":>6}   random AP',
        f'{"node (bag replay)":<18} {pct("miou")} {pct("ap")} {pct("fpr95")} {pct("auroc")} '
        f'{pct("siou")} {pct("ppv")} {pct("f1_mean")}   {pct("anomaly_pixel_share")}',
        f'components (~/anomaly_detections): {summary["truth_components"]} obstacles, '
        f'{summary["predicted_components"]} regions reported',
        f'frames: {summary["frames_sent"]} sent, {summary["frames_processed"]} processed, '
        f'{summary["frames_dropped"]} dropped; latency p50 {ms("latency_ms_p50")}, '
        f'p95 {ms("latency_ms_p95")}',
    ])


def main(argv=None):
    """Run the demo; return the exit status."""
    args = parse_args(argv)
    started = time.perf_counter()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    env = ros_environment()
    step('1/4 demo checkpoint')
    checkpoint = os.path.abspath(get_checkpoint(args, out, env))
    print(f'checkpoint: {checkpoint}', flush=True)
    step('2/4 synthetic test world (held-out anomaly types) -> rosbag2')
    world, bag = os.path.join(out, 'world'), os.path.join(out, 'bag')
    run(module('train.data.synthetic', '--out', world, '--split', 'test', '--num-images',
               args.images, '--height', args.height, '--width', args.width, '--seed',
               args.seed), env)
    run(module('dense_ood_ros.tools.dataset_to_bag', '--dataset', 'synthetic_lf', '--root', world,
               '--out', bag, '--fps', args.fps, '--force'), env)
    step('3/4 play_bag -> perception_node -> eval_stream')
    try:
        report, camera_sent = replay(checkpoint, bag, out, args, env)
    except (RuntimeError, subprocess.SubprocessError) as error:
        print(f'demo: {error}', file=sys.stderr)
        return 1
    step('4/4 report')
    summary = write_report(out, report, {
        'checkpoint': checkpoint, 'bag': bag, 'player_frames_sent': camera_sent,
        'frames': report.get('frames_written', []),
        'seconds': round(time.perf_counter() - started, 1)})
    print(f'wrote {os.path.join(args.out, "report.json")} and '
          f'{len(summary["frames"])} frames in {os.path.join(args.out, "frames")}')
    print(format_table(summary))
    return 0


if __name__ == '__main__':
    sys.exit(main())
