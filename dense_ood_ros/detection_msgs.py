"""vision_msgs outputs, when vision_msgs is importable: detections and class metadata.

vision_msgs is not on PyPI: a ROS 2 install has it as ``ros-<distro>-vision-msgs``, tests
use the prebuilt copy in ``../shared/vision_msgs``. Without it ``AVAILABLE`` is False and
``UNAVAILABLE_REASON`` says why; the caller reports that once and skips the output.

Boxes are in camera pixels with pixel centres at integer coordinates (as image_geometry
projects): a region covering columns x .. x + w - 1 has ``center.position.x = x + (w - 1) / 2``
and ``size_x = w``.
"""

try:
    from vision_msgs.msg import (Detection2D, Detection2DArray, LabelInfo,
                                 ObjectHypothesisWithPose, VisionClass)
except ImportError as error:  # a plain rclpy install: the output is absent, nothing else
    AVAILABLE, UNAVAILABLE_REASON = False, f'vision_msgs is not importable ({error})'
else:
    AVAILABLE, UNAVAILABLE_REASON = True, None


def detection_array(header, regions, class_id):
    """Return a Detection2DArray with ``header``: one Detection2D per region.

    Each detection carries the same header, one hypothesis (``class_id``, the region's
    score) and the region's box; ``id`` numbers the regions of the frame, largest first.
    """
    array = Detection2DArray(header=header)
    for index, region in enumerate(regions):
        detection = Detection2D(header=header, id=str(index))
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = class_id
        hypothesis.hypothesis.score = float(region.score)
        detection.results.append(hypothesis)
        detection.bbox.center.position.x = region.x + (region.width - 1) / 2.0
        detection.bbox.center.position.y = region.y + (region.height - 1) / 2.0
        detection.bbox.size_x = float(region.width)
        detection.bbox.size_y = float(region.height)
        array.detections.append(detection)
    return array


def detection_boxes(array):
    """Return the (x, y, width, height) pixel box of each detection of a Detection2DArray."""
    boxes = []
    for detection in array.detections:
        bbox = detection.bbox
        width, height = round(bbox.size_x), round(bbox.size_y)
        boxes.append((round(bbox.center.position.x - (width - 1) / 2.0),
                      round(bbox.center.position.y - (height - 1) / 2.0), width, height))
    return boxes


def label_info(header, class_names, unknown_id, threshold):
    """Return a LabelInfo: every class id with its name, the unknown id, the threshold."""
    info = LabelInfo(header=header, threshold=float(threshold))
    info.class_map = [VisionClass(class_id=index, class_name=name)
                      for index, name in enumerate(class_names)]
    info.class_map.append(VisionClass(class_id=unknown_id, class_name='unknown'))
    return info
