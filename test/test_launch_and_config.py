"""The launch file and config/perception.yaml agree with the node and the package."""

import ast
import pathlib
import re

import pytest
import yaml

from dense_ood_ros import node_params

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch/perception.launch.py'
LAUNCH_ARGUMENTS = {'checkpoint', 'image_topic', 'params_file', 'device', 'use_sim_time',
                    'managed', 'namespace', 'node_name'}


def _calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and
            getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def _keywords(call):
    return {kw.arg: kw.value for kw in call.keywords}


def test_launch_file_names_what_the_package_installs():
    tree = ast.parse(LAUNCH_FILE.read_text())
    declared = {call.args[0].value for call in _calls(tree, 'DeclareLaunchArgument')}
    assert declared == LAUNCH_ARGUMENTS
    (node,) = _calls(tree, 'Node')
    keywords = _keywords(node)
    assert keywords['package'].value == 'dense_ood_ros'
    # managed:=false|true picks the plain or the lifecycle node's console script.
    executables = {call.args[0].value for call in _calls(tree, '_node')}
    scripts = re.findall(r"'(\w+) = dense_ood_ros\.[\w.]+:main\w*'",
                         (ROOT / 'setup.py').read_text())
    assert executables == {'perception_node', 'managed_perception_node'}
    assert executables <= set(scripts)
    remapped = {pair.elts[0].value for pair in keywords['remappings'].elts}
    assert 'image' in remapped
    # The default params file is the installed config/perception.yaml.
    joins = [[arg.value for arg in call.args if isinstance(arg, ast.Constant)]
             for call in _calls(tree, 'join')]
    assert ['config', 'perception.yaml'] in joins
    assert (ROOT / 'config/perception.yaml').is_file()
    assert "glob('launch/*.launch.py')" in (ROOT / 'setup.py').read_text()


def test_launch_file_runs_where_launch_ros_exists(tiny_checkpoint_path):
    launch = pytest.importorskip('launch', reason='ROS 2 launch is not installable from PyPI')
    pytest.importorskip('launch_ros', reason='launch_ros is not installable from PyPI')
    namespace = {}
    exec(compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), 'exec'), namespace)
    description = namespace['generate_launch_description']()
    assert isinstance(description, launch.LaunchDescription)


def test_config_lists_every_parameter_with_its_default_and_a_comment():
    text = (ROOT / 'config/perception.yaml').read_text()
    params = yaml.safe_load(text)['/**']['ros__parameters']
    assert set(params) == set(node_params.PARAMETERS)
    for name, spec in node_params.PARAMETERS.items():
        assert params[name] == spec.default, name
        assert node_params.validate(name, params[name]) in (None, 'a checkpoint path is required')
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r'\s{4}\w+:', line):
            assert lines[index - 1].strip().startswith('#'), f'no comment above {line!r}'
    assert '# cameras:' in text
