"""What the node's class ids mean, as one dict: names, colours, the unknown id, the score.

Published latched as JSON on ``~/labels`` (std_msgs/String) always, and as the standard
``vision_msgs/LabelInfo`` on ``~/label_info`` where vision_msgs is importable; LabelInfo has
no place for colours, the score or its temperature, so those are found in the JSON.
"""

import json

from dense_ood_ros.labels import UNKNOWN_COLOR


def label_metadata(class_names, palette, *, score, temperature, threshold):
    """Return the dict describing ~/semantic and ~/open_set ids and the anomaly settings."""
    unknown_id = len(class_names)
    return {
        'classes': [{'id': index, 'name': name, 'color': list(color)}
                    for index, (name, color) in enumerate(zip(class_names, palette))],
        'unknown': {'id': unknown_id, 'name': 'unknown', 'color': list(UNKNOWN_COLOR)},
        'score': score, 'temperature': float(temperature), 'threshold': float(threshold),
    }


def to_json(metadata):
    """Return the metadata as the compact JSON string published on ~/labels."""
    return json.dumps(metadata, separators=(',', ':'))
