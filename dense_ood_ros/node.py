"""perception_node: camera images in; semantic, anomaly score and anomaly masks out.

Thin glue between ROS and DenseOODPipeline. Subscription callbacks only keep the newest
message of each camera; a worker thread runs the newest frames of all cameras through one
batched forward pass and publishes, so a slow model never builds a queue of stale frames.
"""

import dataclasses
import gc
import signal
import sys
import threading
import time

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header, String
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.serialization import deserialize_message
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from dense_ood_ros import detection_msgs, node_params
from dense_ood_ros.model_loading import load_pipeline
from dense_ood_ros.model_metadata import CheckpointError
from dense_ood_ros.onnx_pipeline import DEFAULT_PROVIDERS
from dense_ood_ros.frame_stats import FrameStats
from dense_ood_ros.health import assess, HealthLimits
from dense_ood_ros.image_codec import ImageDecodeError, array_to_image, image_to_rgb
from dense_ood_ros.label_metadata import label_metadata, to_json
from dense_ood_ros.pipeline_common import pipeline_values, resolve_settings
from dense_ood_ros.regions import (DEFAULT_DRIVABLE_CLASSES, default_drivable_ids,
                                   drivable_ids, find_regions, RegionPersistence)
from dense_ood_ros.visualize import colorize, overlay, palette_lut

# REP-2003: camera input with the sensor-data profile (best effort, matches reliable and
# best-effort publishers), outputs reliable with a short history. Both can be changed with
# the standard qos_overrides./<topic>.<publisher|subscription>.<policy> parameters.
INPUT_QOS = qos_profile_sensor_data
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
OVERRIDABLE = QoSOverridingOptions.with_default_policies()  # history, depth, reliability
# Class metadata is latched: a subscriber that joins late still gets the current one.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
WARN_THROTTLE_S = 5.0
_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}

_PARAMETER_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                    float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
                    list: ParameterType.PARAMETER_STRING_ARRAY}
IMAGE_OUTPUTS = ('semantic', 'anomaly_score', 'anomaly_mask', 'open_set', 'semantic_color',
                 'overlay')
DETECTIONS = 'anomaly_detections'
CAMERA_INFO = 'camera_info'


@dataclasses.dataclass(frozen=True)
class RegionSettings:
    """How ~/anomaly_detections turns a frame into regions (swapped whole on a change)."""

    drivable: tuple
    min_area: int
    min_road_share: float
    score: str
    persistence: int
    window: int

    @classmethod
    def from_params(cls, params, class_names):
        """Validate the region parameters against the model; raise ValueError naming one."""
        reason = node_params.check_persistence(params)
        if reason:
            raise ValueError(reason)
        names = node_params.drivable_names(params['drivable_classes'])
        try:
            # The default names what a model may lack (no road class: every region counts).
            drivable = (default_drivable_ids(class_names)
                        if names == list(DEFAULT_DRIVABLE_CLASSES)
                        else drivable_ids(class_names, names))
        except ValueError as error:
            raise ValueError(f'parameter drivable_classes={names!r}: {error}') from None
        return cls(drivable=drivable, min_area=params['region_min_area'],
                   min_road_share=params['region_min_road_share'],
                   score=params['region_score'], persistence=params['region_persistence'],
                   window=params['region_window'])


class CameraChannel:
    """One camera: its newest unprocessed message, its publishers and its counters.

    The subscription takes messages serialised (``raw``): the callback only keeps the
    newest one's bytes, and the worker deserialises the frame it actually processes. A
    frame that a newer one replaces is never turned into a Python message, which under
    saturating input would cost the executor thread a multi-megabyte conversion per dropped
    frame, on the cores the forward pass needs.
    """

    def __init__(self, node, name, *, compressed, qos, persistence):
        self.name = name or 'camera'
        self.stats = FrameStats()
        self.persistence = persistence
        self._node = node
        self._lock = threading.Lock()
        self._latest = None
        prefix = f'{name}/' if name else ''
        image_topic = node.resolve_topic_name(prefix + 'image')
        if compressed:
            # As image_transport does: <remapped image topic>/compressed, so one remapping
            # of `image` serves both transports.
            self.topic = image_topic + '/compressed'
            self.msg_type = CompressedImage
        else:
            self.topic, self.msg_type = image_topic, Image
        self._qos = qos
        self._subscriptions = []
        # camera_info beside the image, as image_transport names it (/cam/image_raw ->
        # /cam/camera_info); the newest one is republished with each output frame's header.
        self.camera_info_topic = image_topic.rpartition('/')[0] + '/camera_info'
        self._camera_info = None
        self.publishers = {
            output: node.create_publisher(Image, f'~/{prefix}{output}', OUTPUT_QOS,
                                          qos_overriding_options=OVERRIDABLE)
            for output in IMAGE_OUTPUTS}
        self.publishers[CAMERA_INFO] = node.create_publisher(
            CameraInfo, f'~/{prefix}{CAMERA_INFO}', OUTPUT_QOS,
            qos_overriding_options=OVERRIDABLE)
        if detection_msgs.AVAILABLE:
            self.publishers[DETECTIONS] = node.create_publisher(
                detection_msgs.Detection2DArray, f'~/{prefix}{DETECTIONS}', OUTPUT_QOS,
                qos_overriding_options=OVERRIDABLE)

    def subscribe(self):
        """Start taking frames and camera_info (activation)."""
        node = self._node
        self._subscriptions = [
            node.create_subscription(self.msg_type, self.topic, self.store, self._qos, raw=True,
                                     qos_overriding_options=OVERRIDABLE),
            node.create_subscription(CameraInfo, self.camera_info_topic, self._store_info,
                                     self._qos, qos_overriding_options=OVERRIDABLE)]

    def unsubscribe(self):
        """Stop taking frames (deactivation); a frame still waiting is forgotten."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []
        with self._lock:
            self._latest = None

    def destroy(self):
        """Remove the subscriptions and the publishers (cleanup)."""
        self.unsubscribe()
        for publisher in self.publishers.values():
            self._node.destroy_publisher(publisher)
        self.publishers = {}

    def store(self, msg):
        """Keep only the newest (serialised) message; an older unprocessed one is dropped."""
        arrival_ns = time.monotonic_ns()
        self.stats.note_input(arrival_ns / 1e9)
        with self._lock:
            if self._latest is not None:
                self.stats.count('dropped')
            self._latest = msg, arrival_ns
        self.stats.count('received')
        self._node.wake_worker()

    def _store_info(self, msg):
        with self._lock:
            self._camera_info = msg

    def camera_info(self, header):
        """Return the newest CameraInfo with `header` (an output frame's), or None."""
        with self._lock:
            info = self._camera_info
        if info is None:
            return None
        return CameraInfo(header=header, height=info.height, width=info.width,
                          distortion_model=info.distortion_model, d=info.d, k=info.k,
                          r=info.r, p=info.p, binning_x=info.binning_x,
                          binning_y=info.binning_y, roi=info.roi)

    def has_camera_info(self):
        """Tell whether any camera_info message has arrived."""
        with self._lock:
            return self._camera_info is not None

    def take(self):
        """Return and clear (message, arrival ns) of the newest frame, or None."""
        with self._lock:
            latest, self._latest = self._latest, None
        if latest is None:
            return None
        raw, arrival_ns = latest
        return deserialize_message(raw, self.msg_type), arrival_ns

    def wants(self, output):
        """Tell whether anyone subscribes to an output (unsubscribed outputs are skipped)."""
        publisher = self.publishers.get(output)
        return publisher is not None and publisher.get_subscription_count() > 0


class PerceptionCore:
    """Dense open-set segmentation of one or more cameras, in the steps of a managed node.

    ``_configure`` loads and checks the model (one warm-up inference) and creates the
    publishers; ``_activate`` subscribes and starts the worker; ``_deactivate`` stops both and
    keeps the model; ``_cleanup`` releases the model and the publishers. PerceptionNode runs
    the first two at construction, ManagedPerceptionNode on lifecycle transitions.
    """

    def _init_state(self):
        # Set before anything can fail: rclpy destroys a half-built node on shutdown too.
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker = None
        self._diagnostics_timer = None
        self.pipeline = self.checkpoint = None
        self.cameras = []
        self._output_publishers = []

    def _read_parameters(self):
        """Return the validated parameters; raise ValueError naming the first bad one."""
        params = {name: node_params.coerce(name, self.get_parameter(name).value)
                  for name in node_params.PARAMETERS}
        for name, value in params.items():
            reason = node_params.validate(name, value)
            if reason:
                raise ValueError(f'parameter {name}={value!r}: {reason}')
        return params

    def _configure(self):
        """Load and check the model, warm it up, create the publishers (no subscriptions)."""
        params = self._params = self._read_parameters()
        self.checkpoint_path = params['checkpoint']
        self.checkpoint, self.pipeline = load_pipeline(self.checkpoint_path, params,
                                                       providers=params['providers'])
        missing = getattr(self.pipeline, 'missing_providers', [])
        if missing:
            # Said once: expected on a CPU-only build with the default list, so only a
            # list the user chose makes it a warning.
            log = (self.get_logger().info if params['providers'] == list(DEFAULT_PROVIDERS)
                   else self.get_logger().warning)
            log(f'ONNX Runtime providers not in this build, skipped: {", ".join(missing)}')
        self._lut = palette_lut(self.checkpoint.palette)
        self._max_pixels = params['max_input_pixels']
        self._compressed = params['input_transport'] == 'compressed'
        self._regions = RegionSettings.from_params(params, self.checkpoint.class_names)
        # Detections carry the open-set id of unknown pixels, as ~/open_set does.
        self._unknown_id = str(self.pipeline.num_classes)
        self._warm_up()
        names = node_params.camera_names(self._declared_cameras())
        self.cameras = [CameraChannel(self, name, compressed=self._compressed, qos=INPUT_QOS,
                                      persistence=self._new_persistence())
                        for name in names]
        if not detection_msgs.AVAILABLE:
            self.get_logger().warning(
                f'~/{DETECTIONS} and ~/label_info are not published: '
                f'{detection_msgs.UNAVAILABLE_REASON}; install ros-<distro>-vision-msgs '
                '(every other output works; ~/labels has the class metadata as JSON)',
                once=True)
        self._labels = self.create_publisher(String, '~/labels', LATCHED_QOS)
        self._label_info = (self.create_publisher(detection_msgs.LabelInfo, '~/label_info',
                                                  LATCHED_QOS)
                            if detection_msgs.AVAILABLE else None)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._output_publishers = [p for p in (self._labels, self._label_info,
                                               self._diagnostics) if p is not None]
        # A steady clock keeps diagnostics flowing under use_sim_time before /clock arrives.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)

    def _warm_up(self):
        """Run one inference, so a broken model fails now and the first frame is not slow."""
        fixed = getattr(self.pipeline, 'fixed_size', None)
        edge = self.pipeline.input_short_edge
        height, width = fixed if fixed else (edge, 2 * edge)
        self.pipeline.infer(np.zeros((height, width, 3), np.uint8))

    def _activate(self):
        """Subscribe, publish the class metadata, start diagnostics and the worker."""
        self._publish_labels()
        self._started_s = time.monotonic()  # a camera silent since activation is stale too
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name='perception_worker',
                                        daemon=True)
        self._worker.start()
        for camera in self.cameras:
            camera.subscribe()
        self._diagnostics_timer = self.create_timer(
            self._params['diagnostics_period'], self._publish_diagnostics, clock=self._steady)
        self.get_logger().info(
            f'serving {len(self.cameras)} camera(s) {[c.name for c in self.cameras]} on '
            f'{self.pipeline.device} with {self.checkpoint_path} '
            f'({self.pipeline.score}, T={self.pipeline.temperature:g}, '
            f'threshold={self.pipeline.threshold:g})')

    def _deactivate(self):
        """Stop taking frames and processing; the model stays loaded."""
        for camera in self.cameras:
            camera.unsubscribe()
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        self._stop_worker()

    def _stop_worker(self):
        self._stop.set()
        self._wake.set()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)
        self._worker = None

    def _cleanup(self):
        """Release the model (and its GPU memory) and the publishers."""
        for camera in self.cameras:
            camera.destroy()
        for publisher in self._output_publishers:
            self.destroy_publisher(publisher)
        self.cameras, self._output_publishers = [], []
        self.pipeline = self.checkpoint = None
        gc.collect()
        torch = sys.modules.get('torch')  # loaded only by a .pt model
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _declare_parameters(self):
        for name, spec in node_params.PARAMETERS.items():
            # Dynamic typing: rclpy would refuse `threshold:=1` with a traceback; coerce()
            # takes compatible values and refuses the rest with one line naming the parameter.
            self.declare_parameter(name, spec.default, ParameterDescriptor(
                description=spec.description, read_only=not spec.dynamic,
                type=_PARAMETER_TYPES[type(spec.default)], dynamic_typing=True))
        self.declare_parameter('cameras', Parameter.Type.STRING_ARRAY, ParameterDescriptor(
            description='Camera names; each gets <name>/image in and ~/<name>/... out. '
                        'Unset: one camera on image.', read_only=True))

    def _declared_cameras(self):
        try:
            return self.get_parameter('cameras').value
        except ParameterUninitializedException:
            return None

    def _on_set_parameters(self, parameters):
        try:
            values = _checked_values(parameters)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if self.pipeline is None:
            # Not configured (a managed node): checked; configure reads them all.
            return SetParametersResult(successful=True)
        updated = {**self._params, **values}
        unset_as_none = pipeline_values(updated)
        try:
            score, temperature, threshold = resolve_settings(
                self.checkpoint, score=unset_as_none['score'],
                temperature=unset_as_none['temperature'], threshold=unset_as_none['threshold'])
            regions = RegionSettings.from_params(updated, self.checkpoint.class_names)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        with self.pipeline.settings_lock:
            changed = (score, temperature, threshold) != (
                self.pipeline.score, self.pipeline.temperature, self.pipeline.threshold)
            self.pipeline.score = score
            self.pipeline.temperature = temperature
            self.pipeline.threshold = threshold
        if changed:
            self._publish_labels()
        if regions != self._regions:
            # Regions seen under other settings say nothing about persistence under these.
            self._regions = regions
            for camera in self.cameras:
                camera.persistence = self._new_persistence()
        self._params = updated
        return SetParametersResult(successful=True)

    def _publish_labels(self):
        """Publish (latched) what the ids mean and the anomaly settings now in force."""
        pipeline = self.pipeline
        metadata = label_metadata(pipeline.class_names, self.checkpoint.palette,
                                  score=pipeline.score, temperature=pipeline.temperature,
                                  threshold=pipeline.threshold)
        self._labels.publish(String(data=to_json(metadata)))
        if self._label_info is not None:
            header = Header(stamp=self.get_clock().now().to_msg())
            self._label_info.publish(detection_msgs.label_info(
                header, pipeline.class_names, metadata['unknown']['id'], pipeline.threshold))

    def _new_persistence(self):
        return RegionPersistence(self._regions.persistence, self._regions.window)

    def wake_worker(self):
        """Tell the worker that a new frame is waiting."""
        self._wake.set()

    def _work(self):
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.2):
                continue
            self._wake.clear()
            try:
                self._process_newest()
            except Exception as error:  # noqa: B902 - keep serving whatever goes wrong
                self.get_logger().error(f'frame processing failed: {error!r}',
                                        throttle_duration_sec=WARN_THROTTLE_S)

    def _process_newest(self):
        batch = []
        for camera in self.cameras:
            latest = camera.take()
            if latest is None:
                continue
            rgb = self._decode(camera, latest[0])
            if rgb is not None:
                batch.append((camera, *latest, rgb))
        if not batch:
            return
        start_ns = time.monotonic_ns()
        try:
            results = self.pipeline.infer_batch([rgb for *_, rgb in batch])
        except Exception as error:  # noqa: B902 - counted for health, and the node goes on
            for camera, *_ in batch:
                camera.stats.count('failed')
            self.get_logger().error(f'inference failed: {error}',
                                    throttle_duration_sec=WARN_THROTTLE_S)
            return
        inference_ms = (time.monotonic_ns() - start_ns) / 1e6
        for (camera, msg, arrival_ns, rgb), result in zip(batch, results):
            if result.batch > 1:
                camera.stats.count('batched')
            # One float64 sum, no frame-sized boolean array: NaN or inf anywhere shows in it.
            if not np.isfinite(result.score.sum(dtype=np.float64)):
                camera.stats.count('non_finite')
            self._publish(camera, msg.header, rgb, result)
            now = self.get_clock().now()
            stamp = Time.from_msg(msg.header.stamp, clock_type=now.clock_type)
            camera.stats.add_latency(
                since_stamp_ms=(now - stamp).nanoseconds / 1e6,
                since_arrival_ms=(time.monotonic_ns() - arrival_ns) / 1e6,
                inference_ms=inference_ms)

    def _decode(self, camera, msg):
        try:
            if self._compressed:
                return self._decode_compressed(msg)
            return image_to_rgb(msg, max_pixels=self._max_pixels)
        except ImageDecodeError as error:
            camera.stats.count('rejected')
            self.get_logger().warning(f'{camera.name}: dropped a frame: {error}',
                                      throttle_duration_sec=WARN_THROTTLE_S)
            return None

    def _decode_compressed(self, msg):
        bgr = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageDecodeError(f'compressed image (format {msg.format!r}) did not decode')
        if bgr.shape[0] * bgr.shape[1] > self._max_pixels:
            raise ImageDecodeError(f'{bgr.shape[1]}x{bgr.shape[0]} exceeds max_input_pixels '
                                   f'{self._max_pixels}')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _publish(self, camera, header, rgb, result):
        # An output nobody subscribes to is not even built: at 2048x1024 each one is a
        # multi-megabyte copy into a message (image_transport's lazy publishing, for all).
        publish = camera.publishers
        if camera.wants('semantic'):
            publish['semantic'].publish(array_to_image(result.labels, encoding='mono8',
                                                       header=header))
        if camera.wants('anomaly_score'):
            publish['anomaly_score'].publish(array_to_image(result.score, encoding='32FC1',
                                                            header=header))
        if camera.wants('anomaly_mask'):
            mask = result.mask.view(np.uint8) * np.uint8(255)
            publish['anomaly_mask'].publish(array_to_image(mask, encoding='mono8',
                                                           header=header))
        if camera.wants('open_set'):
            publish['open_set'].publish(array_to_image(result.open_set, encoding='mono8',
                                                       header=header))
        wants_color, wants_overlay = camera.wants('semantic_color'), camera.wants('overlay')
        if camera.wants(DETECTIONS):
            self._publish_detections(camera, header, result)
        if camera.wants(CAMERA_INFO):
            info = camera.camera_info(header)
            if info is not None:
                publish[CAMERA_INFO].publish(info)
        if wants_color or wants_overlay:
            color = colorize(result.open_set, self._lut)
            if wants_color:
                publish['semantic_color'].publish(array_to_image(color, encoding='rgb8',
                                                                 header=header))
            if wants_overlay:
                blended = overlay(rgb, color, self._params['overlay_alpha'])
                publish['overlay'].publish(array_to_image(blended, encoding='rgb8',
                                                          header=header))
        camera.stats.count('processed')

    def _publish_detections(self, camera, header, result):
        settings = self._regions
        regions = find_regions(result.score, result.labels, threshold=result.threshold,
                               drivable=settings.drivable, min_area=settings.min_area,
                               min_road_share=settings.min_road_share,
                               region_score=settings.score)
        reported = camera.persistence.update(regions)
        camera.publishers[DETECTIONS].publish(
            detection_msgs.detection_array(header, reported, self._unknown_id))
        camera.stats.count('detections', len(reported))

    def _publish_diagnostics(self):
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        now_s = time.monotonic()
        limits = HealthLimits(stale_input_s=self._params['stale_input_s'],
                              max_drop_share=self._params['max_drop_share'],
                              latency_budget_ms=self._params['latency_budget_ms'])
        for camera in self.cameras:
            values = camera.stats.snapshot(now_s)
            last_input = camera.stats.last_input_s
            level, message = assess(
                values, limits=limits, topic=camera.topic,
                input_age_s=now_s - (self._started_s if last_input is None else last_input))
            status = DiagnosticStatus(
                name=f'{self.get_fully_qualified_name()}: {camera.name}',
                hardware_id=str(self.pipeline.device), level=_LEVELS[level],
                message=message)
            values['camera_info'] = ('received' if camera.has_camera_info() else
                                     f'missing: nothing on {camera.camera_info_topic}')
            values.update(device=str(self.pipeline.device), checkpoint=self.checkpoint_path,
                          anomaly_detections=('published' if detection_msgs.AVAILABLE else
                                              detection_msgs.UNAVAILABLE_REASON))
            status.values = [KeyValue(key=key, value=_format(value))
                             for key, value in values.items()]
            array.status.append(status)
        self._diagnostics.publish(array)

    def destroy_node(self):
        """Stop the worker before the publishers it uses go away."""
        self._stop_worker()
        super().destroy_node()


class PerceptionNode(PerceptionCore, Node):
    """The unmanaged node: configures and activates itself at construction."""

    def __init__(self, **kwargs):
        self._init_state()
        super().__init__('perception_node', **kwargs)
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._configure()
        self._activate()


class ManagedPerceptionNode(PerceptionCore, LifecycleNode):
    """The managed (lifecycle) node: a supervisor drives it through its transitions.

    configure loads and checks the model with one warm-up inference and creates the
    publishers (a bad model or parameter fails the transition, naming the cause, and the
    node stays unconfigured); activate subscribes and starts processing; deactivate stops
    processing and keeps the model; cleanup releases the model (and GPU memory); shutdown
    from any state undoes what is up. Nothing is published unless active.
    """

    def __init__(self, **kwargs):
        self._init_state()
        super().__init__('perception_node', **kwargs)
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def on_configure(self, state):
        """Load, check and warm up the model; create the publishers."""
        try:
            self._configure()
        except (CheckpointError, ValueError) as error:
            self.get_logger().error(f'configure failed: {error}')
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        """Subscribe and start processing."""
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state):
        """Stop processing; the model stays loaded."""
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        """Release the model and the publishers."""
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        """Undo whatever is up, from any state."""
        if self._worker is not None:
            self._deactivate()
        if self.pipeline is not None:
            self._cleanup()
        return TransitionCallbackReturn.SUCCESS


def _checked_values(parameters):
    """Return {name: coerced value} of our parameters; raise ValueError naming a bad one."""
    values = {}
    for parameter in parameters:
        if parameter.name not in node_params.PARAMETERS:
            continue  # rclpy's own (use_sim_time, qos_overrides...)
        value = node_params.coerce(parameter.name, parameter.value)
        reason = node_params.validate(parameter.name, value)
        if reason:
            raise ValueError(f'{parameter.name}={value!r}: {reason}')
        values[parameter.name] = value
    return values


def _format(value):
    if value is None:
        return 'n/a'
    if isinstance(value, float):
        return f'{value:.3f}'
    return str(value)


def main(args=None, node_class=None):
    """Run the node until SIGINT or external shutdown; exit non-zero on a bad configuration."""
    rclpy.init(args=args)
    try:
        node = (node_class or PerceptionNode)()
    except (CheckpointError, ValueError) as error:
        get_logger('perception_node').fatal(str(error))
        rclpy.try_shutdown()
        return 1
    except KeyboardInterrupt:
        # Ctrl-C while the model loads is a normal stop, not a crash.
        _ignore_further_interrupts()
        rclpy.try_shutdown()
        return 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # SIGINT shuts the context down from the signal handler; an executor caught between
        # two waits then raises rclpy's RCLError ("context is not valid"). That is the stop
        # we were asked for, not a failure; anything while the context is up is.
        if rclpy.ok():
            raise
    finally:
        _ignore_further_interrupts()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main_managed(args=None):
    """Entry point of managed_perception_node: the lifecycle node, waiting to be configured."""
    return main(args, node_class=ManagedPerceptionNode)


def _ignore_further_interrupts():
    """Let the clean-up finish: Ctrl-C in a terminal under `ros2 launch` delivers SIGINT twice.

    The terminal's SIGINT reaches the node and launch, which then forwards its own; the second
    would raise KeyboardInterrupt in the middle of destroy_node (or in an atexit handler) and
    turn a clean stop into a traceback and exit code -2. Clean-up is bounded (the worker is
    joined with a timeout), so ignoring SIGINT from here on cannot hang the process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == '__main__':
    sys.exit(main())
