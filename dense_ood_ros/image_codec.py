"""Convert sensor_msgs/Image messages to and from numpy arrays without cv_bridge."""

import array as arraylib
import dataclasses

import cv2
import numpy as np

__all__ = ['ImageDecodeError', 'SUPPORTED_ENCODINGS', 'array_to_image', 'image_to_array',
           'image_to_rgb']


class ImageDecodeError(ValueError):
    """Raise when an Image message cannot be decoded; the message says why."""


# encoding -> (channels, numpy dtype code without byte order).
_LAYOUTS = {
    'rgb8': (3, 'u1'),
    'bgr8': (3, 'u1'),
    'rgba8': (4, 'u1'),
    'bgra8': (4, 'u1'),
    'mono8': (1, 'u1'),
    'mono16': (1, 'u2'),
    '16UC1': (1, 'u2'),
    'rgb16': (3, 'u2'),
    'bgr16': (3, 'u2'),
    'bayer_rggb8': (1, 'u1'),
    'bayer_bggr8': (1, 'u1'),
    'bayer_gbrg8': (1, 'u1'),
    'bayer_grbg8': (1, 'u1'),
    'yuv422': (2, 'u1'),
    'uyvy': (2, 'u1'),
    'yuv422_yuy2': (2, 'u1'),
    'yuyv': (2, 'u1'),
    '32FC1': (1, 'f4'),
}

# OpenCV's 2-letter Bayer names describe pixels (1, 1) and (1, 2), ROS names start at
# (0, 0), so ROS rggb is OpenCV BG, bggr is RG, gbrg is GR and grbg is GB. The tests
# check this by mosaicking flat colours. The ROS-style aliases (COLOR_BayerRGGB2RGB)
# only exist in newer OpenCV, hence the 2-letter constants.
_BAYER_CODES = {
    'bayer_rggb8': cv2.COLOR_BayerBG2RGB,
    'bayer_bggr8': cv2.COLOR_BayerRG2RGB,
    'bayer_gbrg8': cv2.COLOR_BayerGR2RGB,
    'bayer_grbg8': cv2.COLOR_BayerGB2RGB,
}

# ROS 'yuv422' is UYVY byte order, 'yuv422_yuy2' is YUYV; 'uyvy'/'yuyv' are newer aliases.
_YUV_CODES = {
    'yuv422': cv2.COLOR_YUV2RGB_UYVY,
    'uyvy': cv2.COLOR_YUV2RGB_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2,
    'yuyv': cv2.COLOR_YUV2RGB_YUY2,
}

SUPPORTED_ENCODINGS = tuple(enc for enc in _LAYOUTS if enc != '32FC1')
_ARRAY_ENCODINGS = ('mono8', '32FC1', 'rgb8')

# Output encoding -> (dtype, ndim).
_OUTPUT_LAYOUTS = {
    'mono8': (np.dtype(np.uint8), 2),
    '32FC1': (np.dtype(np.float32), 2),
    'rgb8': (np.dtype(np.uint8), 3),
}


def _byte_buffer(data):
    """Return a flat uint8 view of a message's data, copying only if it is not a buffer."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        # A plain list of ints (or a non-contiguous array) cannot be viewed.
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _pixel_view(msg, allowed, max_pixels=None):
    """Validate msg and return an (H, W, C) view of its pixels plus the encoding."""
    encoding = msg.encoding
    if encoding not in allowed:
        raise ImageDecodeError(
            f'unsupported image encoding {encoding!r}; supported: {", ".join(allowed)}')
    channels, code = _LAYOUTS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f'image has zero size: height={height} width={width}')
    if max_pixels is not None and height * width > max_pixels:
        raise ImageDecodeError(
            f'image {height}x{width} has {height * width} pixels, more than '
            f'max_pixels={max_pixels}')
    if encoding in _YUV_CODES and width % 2:
        raise ImageDecodeError(
            f'{encoding} packs two pixels per 4 bytes, so width must be even, got {width}')
    dtype = np.dtype(code).newbyteorder('>' if msg.is_bigendian else '<')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            f'step {step} is smaller than width * bytes per pixel = {width} * '
            f'{channels * dtype.itemsize} = {row_bytes} for {encoding}')
    buf = _byte_buffer(msg.data)
    if buf.size != height * step:
        raise ImageDecodeError(
            f'data has {buf.size} bytes, expected height * step = {height} * {step} = '
            f'{height * step} bytes')
    # Explicit strides turn padded rows into a view instead of a copy.
    view = np.ndarray(shape=(height, width, channels), dtype=dtype, buffer=buf,
                      strides=(step, channels * dtype.itemsize, dtype.itemsize))
    return view, encoding


def image_to_rgb(msg, *, max_pixels=None):
    """Decode a sensor_msgs/Image-like message into an (H, W, 3) uint8 RGB array.

    ``msg`` may be an rclpy message (``data`` is an ``array.array``), a rosbags
    dataclass (``data`` is a numpy array) or anything with the same fields. For rgb8
    and rgba8 the result is a view of ``msg.data`` (possibly strided, and writable if
    the buffer is), so copy it before modifying or keeping it past the message's life.
    Raises ImageDecodeError for unsupported encodings and inconsistent messages.
    """
    view, encoding = _pixel_view(msg, SUPPORTED_ENCODINGS, max_pixels)
    if encoding in ('rgb8', 'rgba8'):
        return view[:, :, :3]
    if encoding in ('bgr8', 'bgra8'):
        return np.ascontiguousarray(view[:, :, 2::-1])
    if view.dtype.itemsize == 2:
        # Keep the high byte: the usual 16 -> 8 bit reduction for camera data.
        view8 = (view >> 8).astype(np.uint8)
        if encoding in ('mono16', '16UC1'):
            return np.repeat(view8, 3, axis=2)
        if encoding == 'bgr16':
            return np.ascontiguousarray(view8[:, :, ::-1])
        return view8
    if encoding == 'mono8':
        return np.repeat(view, 3, axis=2)
    if encoding in _BAYER_CODES:
        return cv2.cvtColor(np.ascontiguousarray(view[:, :, 0]), _BAYER_CODES[encoding])
    return cv2.cvtColor(np.ascontiguousarray(view), _YUV_CODES[encoding])


def image_to_array(msg):
    """Read a mono8, 32FC1 or rgb8 Image back into a numpy array (a view when possible).

    mono8 gives uint8 (H, W), 32FC1 float32 (H, W) in native byte order and rgb8
    uint8 (H, W, 3). Raises ImageDecodeError like image_to_rgb.
    """
    view, encoding = _pixel_view(msg, _ARRAY_ENCODINGS)
    if encoding == 'rgb8':
        return view
    plane = view[:, :, 0]
    if encoding == '32FC1':
        return plane.astype(np.float32, copy=False)
    return plane


def _is_rosbags_type(msg_type):
    # rosbags messages are dataclasses whose data field is a numpy array and whose
    # constructor takes every field; rclpy messages take keyword defaults instead.
    return dataclasses.is_dataclass(msg_type)


def array_to_image(array, *, encoding, header, msg_type=None):
    """Build an Image message (sensor_msgs.msg.Image unless msg_type is given) from an array.

    Supported encodings: mono8 (uint8 HxW), 32FC1 (float32 HxW) and rgb8 (uint8 HxWx3).
    The header object is assigned as is; data is little-endian and unpadded. Raises
    ValueError for an unsupported encoding or an array of the wrong dtype or shape.
    """
    if encoding not in _OUTPUT_LAYOUTS:
        raise ValueError(f'unsupported output encoding {encoding!r}; supported: '
                         f'{", ".join(_OUTPUT_LAYOUTS)}')
    arr = np.asarray(array)
    dtype, ndim = _OUTPUT_LAYOUTS[encoding]
    shape_ok = arr.ndim == ndim and (ndim == 2 or arr.shape[2] == 3) and arr.size > 0
    if arr.dtype.newbyteorder('=') != dtype or not shape_ok:
        want = 'HxW' if ndim == 2 else 'HxWx3'
        raise ValueError(f'encoding {encoding!r} needs a non-empty {dtype} {want} array, '
                         f'got {arr.dtype} with shape {arr.shape}')
    # One copy at most: to little-endian C order (a no-op for the usual native arrays).
    arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder('<'))
    height, width = arr.shape[:2]
    step = arr.strides[0]
    if msg_type is None:
        from sensor_msgs.msg import Image as msg_type
    if _is_rosbags_type(msg_type):
        return msg_type(header=header, height=height, width=width, encoding=encoding,
                        is_bigendian=0, step=step, data=arr.reshape(-1).view(np.uint8).copy())
    msg = msg_type()
    msg.header = header
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    # An array.array('B') is stored by rclpy's setter as is; bytes would be checked
    # element by element when ROS_PYTHON_CHECK_FIELDS=1. frombytes is a single memcpy.
    data = arraylib.array('B')
    data.frombytes(memoryview(arr).cast('B'))
    msg.data = data
    return msg
