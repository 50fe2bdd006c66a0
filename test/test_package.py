"""The ament_python package builds with colcon and installs what `ros2 run` expects."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from ros_harness import Client, frame_message, NodeProcess

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONSOLE_SCRIPTS = ['dataset_to_bag', 'eval_stream', 'export_onnx', 'infer_image',
                   'perception_node', 'play_bag']


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
