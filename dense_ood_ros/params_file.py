"""Read a ROS 2 parameters YAML file (`/**: ros__parameters:`) without ROS."""

import yaml


def read_ros_params(path, node_name='perception_node'):
    """Return the parameters that apply to `node_name`: wildcard block first, then its own."""
    try:
        with open(path, encoding='utf-8') as stream:
            document = yaml.safe_load(stream) or {}
    except OSError as error:
        raise ValueError(f'parameters file {path}: {error.strerror}') from None
    except yaml.YAMLError as error:
        raise ValueError(f'parameters file {path}: not valid YAML ({error})') from None
    if not isinstance(document, dict):
        raise ValueError(f'parameters file {path}: expected a mapping of node names')
    params = {}
    for key in ('/**', node_name, '/' + node_name):
        block = document.get(key)
        if block is None:
            continue
        if not isinstance(block, dict) or not isinstance(block.get('ros__parameters'), dict):
            raise ValueError(f'parameters file {path}: {key!r} has no ros__parameters mapping')
        params.update(block['ros__parameters'])
    return params
