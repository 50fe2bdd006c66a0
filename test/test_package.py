"""The ament_python package builds with colcon and installs what `ros2 run` expects."""

import importlib.util
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters

from dense_ood_ros.image_codec import image_to_array
from ros_harness import Client, frame_message, NodeProcess, ros_environment
from test_node_lifecycle import transition

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONSOLE_SCRIPTS = ['dataset_to_bag', 'eval_stream', 'export_onnx', 'infer_image',
                   'managed_perception_node', 'perception_node', 'play_bag']


@pytest.fixture(scope='module')
def install_tree(tmp_path_factory):
    work = tmp_path_factory.mktemp('colcon')
    colcon = pathlib.Path(sys.executable).with_name('colcon')
    result = subprocess.run(
        [str(colcon), '--log-base', str(work / 'log'), 'build', '--base-paths', str(ROOT),
         '--build-base', str(work / 'build'), '--install-base', str(work / 'install'),
         '--packages-select', 'dense_ood_ros'],
        cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return work / 'install'


def test_install_tree_has_what_ros2_tools_look_up(install_tree):
    prefix = install_tree / 'dense_ood_ros'
    marker = prefix / 'share/ament_index/resource_index/packages/dense_ood_ros'
    assert marker.is_file()
    assert (prefix / 'share/dense_ood_ros/package.xml').read_text() == \
        (ROOT / 'package.xml').read_text()
    configs = sorted(p.name for p in (prefix / 'share/dense_ood_ros/config').glob('*.yaml'))
    assert configs == sorted(p.name for p in (ROOT / 'config').glob('*.yaml'))
    assert 'perception.yaml' in configs
    for script in CONSOLE_SCRIPTS:
        path = prefix / 'lib/dense_ood_ros' / script
        assert path.is_file() and os.access(path, os.X_OK), script
    # train/ runs from the repository root and must not reach the vehicle.
    site = next(prefix.glob('lib/python3*/site-packages'))
    assert (site / 'dense_ood_ros/pipeline.py').is_file()
    assert not (site / 'train').exists()


def test_installed_console_script_runs_from_a_sourced_workspace(install_tree, tmp_path):
    script = install_tree / 'dense_ood_ros/lib/dense_ood_ros/infer_image'
    command = f'source {install_tree}/setup.bash && {script} --help'
    # Run outside the repository so only the installed copy can be imported.
    result = subprocess.run(['bash', '-c', command], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'infer_image' in result.stdout and '--checkpoint' in result.stdout


@pytest.mark.slow
def test_installed_node_starts_from_a_sourced_workspace_and_publishes(
        install_tree, tiny_checkpoint_path, tmp_path):
    script = install_tree / 'dense_ood_ros/lib/dense_ood_ros/perception_node'
    # exec keeps the node as the shell's process, so it gets the signals directly.
    command = ['bash', '-c', f'source {install_tree}/setup.bash && exec {script} "$@"', 'node']
    client = Client()
    try:
        client.record('/perception_node/anomaly_mask')
        publisher = client.publisher('/installed/image')
        args = ('-p', f'checkpoint:={tiny_checkpoint_path}', '-p', 'device:=cpu',
                '-r', 'image:=/installed/image')
        with NodeProcess(*args, command=command, cwd=tmp_path) as node:
            rgb = np.zeros((40, 60, 3), dtype=np.uint8)
            assert client.handshake(publisher, frame_message(rgb, stamp_ns=5),
                                    ['/perception_node/anomaly_mask']), node.output
            assert node.interrupt() == 0, node.output
    finally:
        client.close()


SHARED_LAUNCH_TOOLS = ROOT.parent / 'shared' / 'ros2-launch' / 'install.sh'


@pytest.fixture(scope='module')
def ros2_command(tmp_path_factory):
    """The `ros2` command line: an installed ROS 2's, else ../shared/ros2-launch's wheels."""
    if importlib.util.find_spec('launch_ros') and shutil.which('ros2'):
        return 'ros2'
    if not SHARED_LAUNCH_TOOLS.is_file():
        pytest.skip('neither an installed launch_ros nor ../shared/ros2-launch')
    tools = tmp_path_factory.mktemp('ros2_launch_tools')
    result = subprocess.run(['bash', str(SHARED_LAUNCH_TOOLS), sys.executable, str(tools)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return f'env PYTHONPATH={tools}:"$PYTHONPATH" {sys.executable} {tools}/bin/ros2'


@pytest.mark.slow
@pytest.mark.parametrize('managed', [False, True])
def test_ros2_launch_runs_the_installed_node_and_stops_cleanly_on_ctrl_c(
        install_tree, ros2_command, tiny_checkpoint_path, tmp_path, managed):
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    threshold: 0.0\n    device: cpu\n')
    launch = (f'source {install_tree}/setup.bash && exec {ros2_command} launch dense_ood_ros '
              f'perception.launch.py checkpoint:={tiny_checkpoint_path} device:=cpu '
              f'image_topic:=/launched/image namespace:=robot node_name:=seg '
              f'use_sim_time:=true params_file:={params} managed:={str(managed).lower()}')
    client = Client()
    # Its own session: Ctrl-C reaches launch and the node as a terminal's would.
    process = subprocess.Popen(['bash', '-c', launch], cwd=tmp_path, env=ros_environment(
        import_checkout=False), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    try:
        client.record('/robot/seg/anomaly_mask')
        publisher = client.publisher('/launched/image')
        rgb = np.zeros((40, 60, 3), dtype=np.uint8)
        if managed:  # what a lifecycle manager does
            for step in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                assert transition(client, step, node='/robot/seg'), ''.join(output)
        # Namespace, node name and the image remapping: the mask comes back where expected.
        assert client.handshake(publisher, frame_message(rgb, stamp_ns=5),
                                ['/robot/seg/anomaly_mask'], timeout=120), ''.join(output)
        # The params file's threshold 0 marks every pixel (MSP is positive).
        mask = image_to_array(client.messages('/robot/seg/anomaly_mask')[-1])
        assert mask.min() == 255
        assert _parameter(client, '/robot/seg', 'use_sim_time') is True
        # Ctrl-C in a terminal: SIGINT to the whole group, then launch forwards another.
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, ''.join(output)
    finally:
        client.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    reader.join(timeout=5)
    text = ''.join(output)
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text
    assert 'process has finished cleanly' in text, text


def _parameter(client, node, name):
    service = client.node.create_client(GetParameters, f'{node}/get_parameters')
    assert service.wait_for_service(timeout_sec=20.0)
    future = service.call_async(GetParameters.Request(names=[name]))
    assert client.spin_until(future.done, timeout=20.0)
    value = future.result().values[0]
    return value.bool_value if value.type == ParameterType.PARAMETER_BOOL else None
