"""Launch perception_node with the installed parameter file and a camera remapping."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    """Declare the arguments and the node."""
    default_params = os.path.join(get_package_share_directory('dense_ood_ros'), 'config',
                                  'perception.yaml')
    arguments = [
        DeclareLaunchArgument('checkpoint', description='dense_ood_ros checkpoint (.pt)'),
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
    ]
    node = Node(
        package='dense_ood_ros',
        executable='perception_node',
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
    return LaunchDescription(arguments + [node])
