"""Tests for dense_ood_ros.image_codec against hand-built messages and rosbags-image."""

import array
import functools
import types

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dense_ood_ros.image_codec import (
    array_to_image, image_to_array, image_to_rgb, ImageDecodeError, SUPPORTED_ENCODINGS)

H, W = 6, 10
PAD_BYTE = 0xAB  # Garbage in row padding shows up if a decoder ignores step.

BAYER_CHANNELS = {  # ROS pattern name -> RGB channel index at (0,0), (0,1), (1,0), (1,1).
    'bayer_rggb8': (0, 1, 1, 2),
    'bayer_bggr8': (2, 1, 1, 0),
    'bayer_gbrg8': (1, 2, 0, 1),
    'bayer_grbg8': (1, 0, 2, 1),
}
YUV_ENCODINGS = ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')
UYVY_ORDER = ('yuv422', 'uyvy')


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rows_to_msg(rows, encoding, *, pad=0, is_bigendian=0):
    """Return a real sensor_msgs Image holding the (H, row_bytes) uint8 rows plus padding."""
    height, row_bytes = rows.shape
    padded = np.full((height, row_bytes + pad), PAD_BYTE, np.uint8)
    padded[:, :row_bytes] = rows
    msg = Image()
    msg.header = Header(stamp=Time(sec=12, nanosec=345), frame_id='camera')
    msg.height = height
    msg.width = int(rows.shape[1] // _BPP[encoding])
    msg.encoding = encoding
    msg.is_bigendian = is_bigendian
    msg.step = row_bytes + pad
    msg.data = array.array('B', padded.tobytes())
    return msg


_BPP = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 2, '16UC1': 2,
        'rgb16': 6, 'bgr16': 6, 'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2, 'yuyv': 2,
        '32FC1': 4, **{name: 1 for name in BAYER_CHANNELS}}


def _as_rows(values):
    """Flatten an (H, W[, C]) array of any dtype into (H, row_bytes) uint8 rows."""
    values = np.ascontiguousarray(values)
    return values.view(np.uint8).reshape(values.shape[0], -1)


def _encode_lossless(encoding, rng, is_bigendian):
    """Return (rows, expected RGB) for an encoding that stores RGB values directly."""
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (H, W, 1), dtype=np.uint8)
    order = '>' if is_bigendian else '<'
    if encoding == 'rgb8':
        return _as_rows(rgb), rgb
    if encoding == 'bgr8':
        return _as_rows(rgb[..., ::-1]), rgb
    if encoding == 'rgba8':
        return _as_rows(np.concatenate([rgb, alpha], axis=2)), rgb
    if encoding == 'bgra8':
        return _as_rows(np.concatenate([rgb[..., ::-1], alpha], axis=2)), rgb
    if encoding == 'mono8':
        gray = rgb[..., 0]
        return _as_rows(gray), np.stack([gray] * 3, axis=2)
    wide = rng.integers(0, 65536, (H, W, 3)).astype(order + 'u2')
    # The expected high byte is computed with Python ints, independent of numpy byte order.
    high = np.array([[[int(v) // 256 for v in px] for px in row] for row in wide], np.uint8)
    if encoding in ('mono16', '16UC1'):
        return _as_rows(wide[..., 0]), np.stack([high[..., 0]] * 3, axis=2)
    if encoding == 'rgb16':
        return _as_rows(wide), high
    assert encoding == 'bgr16'
    return _as_rows(wide[..., ::-1]), high


LOSSLESS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', '16UC1', 'rgb16', 'bgr16')


@pytest.mark.parametrize('is_bigendian', [0, 1])
@pytest.mark.parametrize('pad', [0, 5])
@pytest.mark.parametrize('encoding', LOSSLESS)
def test_lossless_encodings_decode_exactly(encoding, pad, is_bigendian):
    rows, expected = _encode_lossless(encoding, _rng(len(encoding) + pad), is_bigendian)
    out = image_to_rgb(_rows_to_msg(rows, encoding, pad=pad, is_bigendian=is_bigendian))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def _mosaic(rgb, encoding):
    """Sample an RGB image in the named ROS Bayer pattern."""
    raw = np.empty(rgb.shape[:2], np.uint8)
    for (dy, dx), channel in zip([(0, 0), (0, 1), (1, 0), (1, 1)], BAYER_CHANNELS[encoding]):
        raw[dy::2, dx::2] = rgb[dy::2, dx::2, channel]
    return raw


@pytest.mark.parametrize('pad', [0, 3])
@pytest.mark.parametrize('encoding', sorted(BAYER_CHANNELS))
def test_bayer_flat_regions_keep_their_colour(encoding, pad):
    colours = [(200, 100, 30), (20, 180, 90), (60, 40, 220), (250, 250, 10)]
    rgb = np.empty((16, 16, 3), np.uint8)
    for i, colour in enumerate(colours):
        rgb[(i // 2) * 8:(i // 2 + 1) * 8, (i % 2) * 8:(i % 2 + 1) * 8] = colour
    out = image_to_rgb(_rows_to_msg(_mosaic(rgb, encoding), encoding, pad=pad))
    for i, colour in enumerate(colours):
        top, left = (i // 2) * 8, (i % 2) * 8
        # Two pixels from every edge, demosaicing only sees the quadrant's own colour.
        interior = out[top + 2:top + 6, left + 2:left + 6].reshape(-1, 3)
        assert (interior == colour).all(), (encoding, colour, interior[0])


def _yuv_bytes(y, u, v, encoding):
    """Pack per-pixel Y and per-pair U, V planes into UYVY or YUYV rows."""
    packed = np.empty((y.shape[0], y.shape[1] // 2, 4), np.uint8)
    if encoding in UYVY_ORDER:
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = u, y[:, 0::2], v, \
            y[:, 1::2]
    else:
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = y[:, 0::2], u, \
            y[:, 1::2], v
    return packed.reshape(y.shape[0], -1)


@pytest.mark.parametrize('pad', [0, 4])
@pytest.mark.parametrize('encoding', YUV_ENCODINGS)
def test_yuv422_matches_bt601_formula(encoding, pad):
    rng = _rng(7)
    y = rng.integers(16, 236, (H, W)).astype(np.uint8)
    u = rng.integers(16, 241, (H, W // 2)).astype(np.uint8)
    v = rng.integers(16, 241, (H, W // 2)).astype(np.uint8)
    out = image_to_rgb(_rows_to_msg(_yuv_bytes(y, u, v, encoding), encoding, pad=pad))
    # Video-range ITU-R BT.601, written out here rather than taken from OpenCV.
    yy = 1.164 * (y.astype(float) - 16)
    uu = np.repeat(u.astype(float) - 128, 2, axis=1)
    vv = np.repeat(v.astype(float) - 128, 2, axis=1)
    expected = np.stack([yy + 1.596 * vv, yy - 0.813 * vv - 0.391 * uu, yy + 2.018 * uu], 2)
    np.testing.assert_allclose(out, np.clip(expected, 0, 255), atol=2)


# ---- rosbags-image as an independent decoder of the same bytes ----------------------

@pytest.fixture(scope='module')
def rosbags_types():
    """Rosbags' Image, Header and Time dataclasses plus its message_to_cvimage."""
    image_mod = pytest.importorskip('rosbags.image')
    typesys = pytest.importorskip('rosbags.typesys')
    store = getattr(typesys.Stores, 'ROS2_KILTED', typesys.Stores.LATEST)
    types_ = typesys.get_typestore(store).types
    return types.SimpleNamespace(
        Image=types_['sensor_msgs/msg/Image'], Header=types_['std_msgs/msg/Header'],
        Time=types_['builtin_interfaces/msg/Time'], to_cv=image_mod.message_to_cvimage)


def _rosbags_msg(rb, rows, encoding, is_bigendian=0):
    header = rb.Header(stamp=rb.Time(sec=1, nanosec=2), frame_id='camera')
    return rb.Image(header=header, height=rows.shape[0],
                    width=int(rows.shape[1] // _BPP[encoding]), encoding=encoding,
                    is_bigendian=is_bigendian, step=rows.shape[1], data=rows.reshape(-1).copy())


# rosbags scales 16 -> 8 bit by 255/65535 and truncates, so it may be one below >> 8.
ROSBAGS_CASES = [(enc, 0, 0) for enc in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')]
ROSBAGS_CASES += [(enc, 0, 0) for enc in sorted(BAYER_CHANNELS) + list(YUV_ENCODINGS)]
ROSBAGS_CASES += [(enc, big, 1) for enc in ('mono16', 'rgb16', 'bgr16') for big in (0, 1)]


@pytest.mark.parametrize('encoding,is_bigendian,atol', ROSBAGS_CASES)
def test_matches_rosbags_image(rosbags_types, encoding, is_bigendian, atol):
    rows = _rng(3).integers(0, 256, (8, 12 * _BPP[encoding]), dtype=np.uint8)
    rb_msg = _rosbags_msg(rosbags_types, rows, encoding, is_bigendian)
    reference = np.asarray(rosbags_types.to_cv(rb_msg, 'rgb8'))
    ours = image_to_rgb(_rows_to_msg(rows, encoding, is_bigendian=is_bigendian))
    assert ours.shape == reference.shape == (8, 12, 3)
    diff = np.abs(ours.astype(int) - reference.astype(int))
    assert diff.max() <= atol, (encoding, diff.max())
    # The rosbags dataclass (numpy data) decodes exactly like the rclpy message.
    np.testing.assert_array_equal(image_to_rgb(rb_msg), ours)


def test_16uc1_decodes_like_mono16():
    rows = _rng(4).integers(0, 256, (H, 2 * W), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(_rows_to_msg(rows, '16UC1', is_bigendian=1)),
                                  image_to_rgb(_rows_to_msg(rows, 'mono16', is_bigendian=1)))


# ---- ROS 2 cv_bridge, where installed ------------------------------------------------

@pytest.fixture(scope='module')
def ros2_cv_bridge():
    """A working ROS 2 CvBridge, or skip (the PyPI cv-bridge is ROS 1 and does not work)."""
    try:
        from cv_bridge import CvBridge
        bridge = CvBridge()
        probe = Image(height=1, width=1, encoding='rgb8', step=3, data=[1, 2, 3])
        decoded = bridge.imgmsg_to_cv2(probe, desired_encoding='rgb8')
    except Exception as exc:  # Any failure means there is no usable ROS 2 cv_bridge.
        pytest.skip(f'ROS 2 cv_bridge is not usable here: {exc!r}')
    if np.asarray(decoded).reshape(-1).tolist() != [1, 2, 3]:
        pytest.skip('cv_bridge does not decode a sensor_msgs/Image as ROS 2 cv_bridge does')
    return bridge


CV_BRIDGE_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', 'rgb16',
                       'bgr16', 'yuv422', 'yuv422_yuy2', *sorted(BAYER_CHANNELS))


@pytest.mark.parametrize('encoding', CV_BRIDGE_ENCODINGS)
def test_matches_ros2_cv_bridge(ros2_cv_bridge, encoding):
    rows = _rng(5).integers(0, 256, (8, 12 * _BPP[encoding]), dtype=np.uint8)
    msg = _rows_to_msg(rows, encoding, pad=4)
    reference = ros2_cv_bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8')
    atol = 1 if encoding.endswith('16') else 0
    assert np.abs(image_to_rgb(msg).astype(int) - reference.astype(int)).max() <= atol


# ---- zero copy ---------------------------------------------------------------------------

def test_rgb8_unpadded_shares_memory_with_rclpy_buffer():
    rows, _ = _encode_lossless('rgb8', _rng(), 0)
    msg = _rows_to_msg(rows, 'rgb8')
    out = image_to_rgb(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    msg.data[0] = (int(msg.data[0]) + 1) % 256  # A view sees writes to the message.
    assert out[0, 0, 0] == msg.data[0]


@pytest.mark.parametrize('encoding', ['rgb8', 'rgba8'])
def test_padded_rgb_is_a_strided_view(encoding):
    rows, expected = _encode_lossless(encoding, _rng(), 0)
    msg = _rows_to_msg(rows, encoding, pad=7)
    out = image_to_rgb(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    assert out.strides[0] == msg.step
    np.testing.assert_array_equal(out, expected)


def test_rosbags_dataclass_shares_memory(rosbags_types):
    rows, expected = _encode_lossless('rgb8', _rng(), 0)
    rb_msg = _rosbags_msg(rosbags_types, rows, 'rgb8')
    out = image_to_rgb(rb_msg)
    assert np.shares_memory(out, rb_msg.data)
    np.testing.assert_array_equal(out, expected)


def test_accepts_any_object_with_image_fields_and_bytes_data():
    rows, expected = _encode_lossless('bgr8', _rng(), 0)
    msg = types.SimpleNamespace(height=H, width=W, encoding='bgr8', is_bigendian=0,
                                step=3 * W, data=rows.tobytes(), header=None)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


# ---- errors --------------------------------------------------------------------------------

def _valid_msg(encoding='rgb8', height=H, width=W):
    rows = np.zeros((height, width * _BPP[encoding]), np.uint8)
    return _rows_to_msg(rows, encoding)


def _with(msg, **fields):
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


ERROR_CASES = [
    ('unknown', lambda: _with(_valid_msg(), encoding='jpeg'), {},
     r"unsupported image encoding 'jpeg'; supported: rgb8, bgr8"),
    ('32FC1 is not a camera image', lambda: _with(_valid_msg(), encoding='32FC1'), {},
     r"unsupported image encoding '32FC1'"),
    ('zero height', lambda: _with(_valid_msg(), height=0, data=array.array('B')), {},
     r'zero size: height=0 width=10'),
    ('zero width', lambda: _with(_valid_msg(), width=0), {}, r'zero size: height=6 width=0'),
    ('short step', lambda: _with(_valid_msg(), step=29), {},
     r'step 29 is smaller than width \* bytes per pixel = 10 \* 3 = 30'),
    ('short 16-bit step', lambda: _with(_valid_msg('mono16'), step=19), {},
     r'step 19 is smaller than .* = 20 for mono16'),
    ('data too short', lambda: _with(_valid_msg(), data=array.array('B', bytes(179))), {},
     r'data has 179 bytes, expected height \* step = 6 \* 30 = 180 bytes'),
    ('data too long', lambda: _with(_valid_msg(), data=array.array('B', bytes(181))), {},
     r'data has 181 bytes, expected .* = 180 bytes'),
    ('too many pixels', lambda: _valid_msg(), {'max_pixels': 59},
     r'image 6x10 has 60 pixels, more than max_pixels=59'),
    ('odd width yuv422', lambda: _valid_msg('yuv422', width=3), {},
     r'yuv422 .* width must be even, got 3'),
    ('odd width yuyv', lambda: _valid_msg('yuv422_yuy2', width=5), {},
     r'yuv422_yuy2 .* width must be even, got 5'),
]


@pytest.mark.parametrize('name,make_msg,kwargs,pattern', ERROR_CASES,
                         ids=[case[0] for case in ERROR_CASES])
def test_decode_errors_name_the_problem(name, make_msg, kwargs, pattern):
    with pytest.raises(ImageDecodeError, match=pattern):
        image_to_rgb(make_msg(), **kwargs)


def test_error_lists_every_supported_encoding_and_is_a_value_error():
    with pytest.raises(ValueError) as info:
        image_to_rgb(_with(_valid_msg(), encoding='bayer_rggb16'))
    assert isinstance(info.value, ImageDecodeError)
    assert all(enc in str(info.value) for enc in SUPPORTED_ENCODINGS)


def test_max_pixels_allows_exact_limit():
    assert image_to_rgb(_valid_msg(), max_pixels=H * W).shape == (H, W, 3)


# ---- array_to_image / image_to_array ----------------------------------------------------

def _header():
    return Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id='cam_optical')


ROUND_TRIP_ARRAYS = {
    'mono8': lambda rng: rng.integers(0, 256, (H, W), dtype=np.uint8),
    '32FC1': lambda rng: rng.standard_normal((H, W)).astype(np.float32),
    'rgb8': lambda rng: rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
}


@pytest.mark.parametrize('encoding', sorted(ROUND_TRIP_ARRAYS))
def test_array_to_image_round_trips(encoding):
    values = ROUND_TRIP_ARRAYS[encoding](_rng(11))
    header = _header()
    msg = array_to_image(values, encoding=encoding, header=header)
    assert isinstance(msg, Image) and isinstance(msg.data, array.array)
    assert msg.header is header
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1700000000, 123456789)
    assert msg.header.frame_id == 'cam_optical'
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (H, W, encoding, 0)
    assert msg.step == W * values.itemsize * (3 if values.ndim == 3 else 1)
    assert len(msg.data) == msg.height * msg.step
    back = image_to_array(msg)
    assert back.dtype == values.dtype and back.shape == values.shape
    np.testing.assert_array_equal(back, values)


def test_array_to_image_with_field_checks_on():
    # ROS_PYTHON_CHECK_FIELDS=1 makes every setter assert its type; all fields must pass.
    checked = functools.partial(Image, check_fields=True)
    values = ROUND_TRIP_ARRAYS['rgb8'](_rng(12))
    msg = array_to_image(values, encoding='rgb8', header=_header(), msg_type=checked)
    np.testing.assert_array_equal(image_to_array(msg), values)
    np.testing.assert_array_equal(image_to_rgb(msg), values)


def test_array_to_image_converts_big_endian_and_strided_input():
    values = ROUND_TRIP_ARRAYS['32FC1'](_rng(13))
    msg = array_to_image(values.astype('>f4'), encoding='32FC1', header=_header())
    assert msg.is_bigendian == 0
    np.testing.assert_array_equal(np.frombuffer(msg.data, '<f4').reshape(H, W), values)
    strided = ROUND_TRIP_ARRAYS['rgb8'](_rng(14))[:, ::2]
    msg = array_to_image(strided, encoding='rgb8', header=_header())
    np.testing.assert_array_equal(image_to_array(msg), strided)


def test_array_to_image_rosbags_type_is_readable_by_rosbags_image(rosbags_types):
    values = ROUND_TRIP_ARRAYS['32FC1'](_rng(15))
    header = rosbags_types.Header(stamp=rosbags_types.Time(sec=5, nanosec=6), frame_id='x')
    msg = array_to_image(values, encoding='32FC1', header=header,
                         msg_type=rosbags_types.Image)
    assert msg.header is header and msg.data.dtype == np.uint8
    np.testing.assert_array_equal(rosbags_types.to_cv(msg), values)
    np.testing.assert_array_equal(image_to_array(msg), values)


def test_image_to_array_respects_step_and_big_endian():
    values = ROUND_TRIP_ARRAYS['32FC1'](_rng(16))
    msg = _rows_to_msg(_as_rows(values.astype('>f4')), '32FC1', pad=6, is_bigendian=1)
    back = image_to_array(msg)
    assert back.dtype == np.float32 and back.dtype.isnative
    np.testing.assert_array_equal(back, values)
    gray = ROUND_TRIP_ARRAYS['mono8'](_rng(17))
    np.testing.assert_array_equal(image_to_array(_rows_to_msg(gray, 'mono8', pad=3)), gray)


def test_image_to_array_rejects_camera_encodings():
    with pytest.raises(ImageDecodeError, match=r"unsupported image encoding 'bgr8'"):
        image_to_array(_valid_msg('bgr8'))


@pytest.mark.parametrize('values,encoding,pattern', [
    (np.zeros((H, W), np.float64), 'mono8', r"'mono8' needs .* uint8 HxW .* got float64"),
    (np.zeros((H, W), np.uint8), '32FC1', r"'32FC1' needs .* float32 HxW .* got uint8"),
    (np.zeros((H, W), np.uint8), 'rgb8', r"'rgb8' needs .* uint8 HxWx3 .* \(6, 10\)"),
    (np.zeros((H, W, 4), np.uint8), 'rgb8', r'got uint8 with shape \(6, 10, 4\)'),
    (np.zeros((H, W, 3), np.uint8), 'mono8', r'got uint8 with shape \(6, 10, 3\)'),
    (np.zeros((0, W), np.uint8), 'mono8', r'non-empty .* shape \(0, 10\)'),
    (np.zeros((H, W), np.uint8), 'bgr8', r"unsupported output encoding 'bgr8'"),
])
def test_array_to_image_rejects_wrong_arrays(values, encoding, pattern):
    with pytest.raises(ValueError, match=pattern):
        array_to_image(values, encoding=encoding, header=_header())
