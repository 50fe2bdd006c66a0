"""Install the dense_ood_ros runtime package (ament_python; also pip-installable)."""

from glob import glob

from setuptools import find_packages, setup

package_name = 'dense_ood_ros'

setup(
    name=package_name,
    version='0.1.0',
    # train/ runs from the repository root and never ships to the vehicle.
    packages=find_packages(include=[package_name, package_name + '.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dense_ood_ros developers',
    maintainer_email='dev@dense-ood-ros.invalid',
    description='Dense open-set recognition (LDN-121 + RealNVP outliers) for ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'dataset_to_bag = dense_ood_ros.tools.dataset_to_bag:main',
            'eval_stream = dense_ood_ros.tools.eval_stream:main',
            'export_onnx = dense_ood_ros.tools.export_onnx:main',
            'infer_image = dense_ood_ros.tools.infer_image:main',
            'managed_perception_node = dense_ood_ros.node:main_managed',
            'perception_node = dense_ood_ros.node:main',
            'play_bag = dense_ood_ros.tools.play_bag:main',
        ],
    },
)
