"""Launch perception_node with the installed parameter file and a camera remapping."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    """Declare the arguments and the node."""
    default_params = os.path.join(get_package_share_directory('dense_ood_ros'), 'config',
                                  'perception.yaml')
    arguments = [
        DeclareLaunchArgument('checkpoint',
                              description='model: a .pt checkpoint or an exported .onnx'),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description='camera topic remapped onto the node input'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS 2 parameters YAML for the node'),
        DeclareLaunchArgument('device', default_value='auto',
                              description='auto, cpu, cuda or cuda:N'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (bag replay with --clock)'),
        DeclareLaunchArgument('namespace', default_value='', description='node namespace'),
        DeclareLaunchArgument('node_name', default_value='perception_node',
                              description='node name'),
        DeclareLaunchArgument('managed', default_value='false',
                              description='true: the lifecycle node, which waits for a '
                                          'supervisor to configure and activate it'),
    ]
    managed = LaunchConfiguration('managed')
    return LaunchDescription(arguments + [
        _node('perception_node', UnlessCondition(managed)),
        _node('managed_perception_node', IfCondition(managed)),
    ])


def _node(executable, condition):
    return Node(
        package='dense_ood_ros',
        executable=executable,
        condition=condition,
        name=LaunchConfiguration('node_name'),
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'checkpoint': LaunchConfiguration('checkpoint'),
                'device': LaunchConfiguration('device'),
                'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                               value_type=bool),
            },
        ],
        # With input_transport: compressed the node subscribes <image_topic>/compressed.
        remappings=[('image', LaunchConfiguration('image_topic'))],
    )
