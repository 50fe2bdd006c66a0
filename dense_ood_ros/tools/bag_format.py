"""The rosbag2 layout our tools share: topic names, ROS distributions, reading a bag back.

A bag written by ``dataset_to_bag`` holds one frame per stamp on every topic, and each
message's storage timestamp equals its header stamp, so ``--clock`` replay, ``use_sim_time``
and matching the node's outputs to the ground truth by stamp all agree.
"""

import dataclasses
import pathlib

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime
from rosbags.rosbag2 import Reader, StoragePlugin
from rosbags.typesys import get_typestore, Stores

IMAGE_TOPIC = '/camera/image_raw'
CAMERA_INFO_TOPIC = '/camera/camera_info'
OOD_TOPIC = '/ood/ground_truth'
SEMANTIC_TOPIC = '/semantic/ground_truth'

IMAGE_TYPE = 'sensor_msgs/msg/Image'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'


@dataclasses.dataclass(frozen=True)
class Distro:
    """What a ROS 2 distribution's ``ros2 bag play`` reads: metadata version and type store."""

    version: int
    store: Stores
    default_storage: str


# Humble's rosbag2 reads QoS profiles as a YAML string of integers (metadata version 8);
# Jazzy and later switched to a list of named enums (version 9) that Humble cannot parse.
# Humble defaults to sqlite3 storage (mcap needs an extra plugin there), later ones to mcap.
DISTROS = {
    'humble': Distro(8, Stores.ROS2_HUMBLE, 'sqlite3'),
    'jazzy': Distro(9, Stores.ROS2_JAZZY, 'mcap'),
    'kilted': Distro(9, Stores.ROS2_KILTED, 'mcap'),
}
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}

_UNSPECIFIED = QosTime(sec=0, nsec=0)
# What a camera driver offers: reliable, volatile, a short history. Players take reliability
# and durability from here.
CAMERA_QOS = Qos(history=QosHistory.KEEP_LAST, depth=10, reliability=QosReliability.RELIABLE,
                 durability=QosDurability.VOLATILE, deadline=_UNSPECIFIED,
                 lifespan=_UNSPECIFIED, liveliness=QosLiveliness.AUTOMATIC,
                 liveliness_lease_duration=_UNSPECIFIED, avoid_ros_namespace_conventions=False)


def typestore_for(distro):
    """Return the rosbags type store of a distribution name (a key of DISTROS)."""
    return get_typestore(DISTROS[distro].store)


def stamp_to_ns(stamp):
    """Return a builtin_interfaces/Time (rclpy or rosbags) as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def open_bag(path):
    """Open a rosbag2 directory for reading; a missing or foreign path is one clear error."""
    path = pathlib.Path(path)
    if not (path / 'metadata.yaml').is_file():
        raise FileNotFoundError(f'{path} is not a rosbag2 directory (no metadata.yaml)')
    reader = Reader(path)
    reader.open()
    return reader


def read_topics(reader, topics, *, timestamps=None):
    """Yield ``(topic, storage timestamp ns, message)`` for ``topics``, deserialised.

    ``timestamps`` (a set) skips every other message before decoding it. Messages are rosbags
    dataclasses (numpy ``data`` fields) decoded with the newest type store, which reads every
    distribution's sensor_msgs since those definitions never changed.
    """
    typestore = get_typestore(Stores.LATEST)
    connections = [c for c in reader.connections if c.topic in topics]
    for connection, timestamp, raw in reader.messages(connections=connections):
        if timestamps is None or timestamp in timestamps:
            yield (connection.topic, timestamp,
                   typestore.deserialize_cdr(raw, connection.msgtype))
