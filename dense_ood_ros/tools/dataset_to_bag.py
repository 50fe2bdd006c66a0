"""dataset_to_bag: write a dataset's frames and ground truth as a rosbag2 for replay.

Topics (one header stamp per frame, shared by every topic and used as storage timestamp):
``/camera/image_raw`` (rgb8 or bgr8), ``/camera/camera_info`` (size only: the datasets ship
no intrinsics here, so K is zero, which sensor_msgs/CameraInfo defines as uncalibrated),
``/ood/ground_truth`` (mono8: 0 inlier, 1 outlier, 255 void) and, where the dataset has it,
``/semantic/ground_truth`` (mono8 trainIds, 255 ignore). A ``folder`` of plain images has no
ground truth, so its bag has only the camera topics and eval_stream cannot score it.
"""

import argparse
import pathlib
import shutil
import sys
import tempfile

import numpy as np
from rosbags.rosbag2 import Writer
from tqdm import tqdm

from dense_ood_ros.atomic_file import replace_dir
from dense_ood_ros.datasets import registry
from dense_ood_ros.datasets.sample import FileDataset, natural_key, read_rgb, Sample
from dense_ood_ros.tools.bag_format import (CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE, CAMERA_QOS,
                                            DISTROS, IMAGE_TOPIC, IMAGE_TYPE, OOD_TOPIC,
                                            SEMANTIC_TOPIC, STORAGES, typestore_for)

# The registered datasets (each read at its evaluation split), and a folder of plain images.
DATASETS = registry.known_names() + ('folder',)
FOLDER_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff')
ENCODINGS = ('rgb8', 'bgr8')
# A fixed default start keeps bags of the same data byte-identical between runs
# (2023-11-14T22:13:20Z); --start-stamp changes it.
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000


class ImageFolder(FileDataset):
    """The images of one directory in natural name order ('f2' before 'f10'), no labels."""

    def __init__(self, root, *, limit=None):
        root = pathlib.Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f'folder: {root} is not a directory')
        paths = sorted((p for p in root.iterdir() if p.suffix.lower() in FOLDER_SUFFIXES),
                       key=lambda p: natural_key(p.name))[:limit]
        if not paths:
            raise ValueError(f'folder: {root} holds no images ({", ".join(FOLDER_SUFFIXES)})')
        super().__init__(paths)

    def load(self, path):
        """Read one image; a folder has no ground truth."""
        return Sample(name=path.stem, image=read_rgb(path))


def load_dataset(name, root, *, limit=None):
    """Return a map-style dataset of samples (image, semantic, ood) for a DATASETS name."""
    if name == 'folder':
        return ImageFolder(root, limit=limit)
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; known: {", ".join(DATASETS)}')
    return registry.build_dataset(name, root, limit=limit)


def _header(types, stamp_ns, frame_id):
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec),
        frame_id=frame_id)


def _image(types, header, array, encoding):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    height, width = array.shape[:2]
    return types[IMAGE_TYPE](header=header, height=height, width=width, encoding=encoding,
                             is_bigendian=0, step=array.strides[0], data=array.reshape(-1))


def _camera_info(types, header, height, width):
    roi = types['sensor_msgs/msg/RegionOfInterest'](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[CAMERA_INFO_TYPE](
        header=header, height=height, width=width, distortion_model='plumb_bob',
        d=np.zeros(5), k=np.zeros(9), r=np.eye(3).reshape(-1), p=np.zeros(12),
        binning_x=0, binning_y=0, roi=roi)


class _FrameWriter:
    """Serialises frames into an open rosbags Writer, adding connections on the first one."""

    def __init__(self, writer, typestore, *, encoding, frame_id):
        self.writer, self.typestore = writer, typestore
        self.types = typestore.types
        self.encoding, self.frame_id = encoding, frame_id
        self.connections = None
        self.shape = None

    def _connect(self, sample):
        topics = [(IMAGE_TOPIC, IMAGE_TYPE), (CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE)]
        if sample.ood is not None:
            topics.append((OOD_TOPIC, IMAGE_TYPE))
        if sample.semantic is not None:
            topics.append((SEMANTIC_TOPIC, IMAGE_TYPE))
        self.connections = {topic: self.writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=[CAMERA_QOS])
            for topic, msgtype in topics}

    def write(self, sample, stamp_ns):
        if self.connections is None:
            self._connect(sample)
        header = _header(self.types, stamp_ns, self.frame_id)
        height, width = sample.image.shape[:2]
        pixels = sample.image if self.encoding == 'rgb8' else sample.image[:, :, ::-1]
        messages = {IMAGE_TOPIC: _image(self.types, header, pixels, self.encoding),
                    CAMERA_INFO_TOPIC: _camera_info(self.types, header, height, width)}
        for topic, label in ((OOD_TOPIC, sample.ood), (SEMANTIC_TOPIC, sample.semantic)):
            # A dataset either has a kind of ground truth for every frame or for none.
            if (topic in self.connections) != (label is not None):
                raise ValueError(f'{sample.name}: ground truth on {topic} is present for some '
                                 f'frames only')
            if label is not None:
                messages[topic] = _image(self.types, header, label, 'mono8')
        for topic, msg in messages.items():
            data = self.typestore.serialize_cdr(msg, msg.__msgtype__)
            self.writer.write(self.connections[topic], stamp_ns, data)


def write_bag(samples, out, *, fps=10.0, storage=None, distro='jazzy', encoding='rgb8',
              frame_id='camera', start_ns=DEFAULT_START_NS, force=False, progress=True):
    """Write ``samples`` (in order) as the rosbag2 directory ``out``; return the frame count.

    The bag is written into a temporary directory beside ``out`` and renamed into place at the
    end, so an error (an unreadable image, Ctrl-C) leaves no partial bag. ``storage`` defaults
    to the distribution's own default. Frame ``i`` is stamped ``start_ns + i / fps``.
    """
    if distro not in DISTROS:
        raise ValueError(f'unknown distro {distro!r}; known: {", ".join(DISTROS)}')
    storage = storage or DISTROS[distro].default_storage
    if storage not in STORAGES:
        raise ValueError(f'unknown storage {storage!r}; known: {", ".join(STORAGES)}')
    if encoding not in ENCODINGS:
        raise ValueError(f'encoding must be one of {ENCODINGS}, got {encoding!r}')
    if not fps > 0:
        raise ValueError(f'fps must be positive, got {fps}')
    out = pathlib.Path(out)
    if out.exists() and not force:
        raise FileExistsError(f'{out} exists already; remove it or pass --force')
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = pathlib.Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        # The bag directory inside carries the final name: rosbags names its data file after it.
        staged = temp / out.name
        with Writer(staged, version=DISTROS[distro].version,
                    storage_plugin=STORAGES[storage]) as writer:
            frames = _FrameWriter(writer, typestore_for(distro), encoding=encoding,
                                  frame_id=frame_id)
            for index in tqdm(range(len(samples)), desc='dataset_to_bag', unit='frame',
                              disable=not progress, file=sys.stderr):
                frames.write(samples[index], start_ns + round(index * 1e9 / fps))
        replace_dir(staged, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return len(samples)


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='dataset_to_bag', description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', required=True, choices=DATASETS)
    parser.add_argument('--root', required=True, help='dataset root directory')
    parser.add_argument('--out', required=True, help='rosbag2 directory to create')
    parser.add_argument('--fps', type=float, default=10.0, help='frames per second of bag time')
    parser.add_argument('--storage', choices=sorted(STORAGES),
                        help='default: sqlite3 for humble, mcap for jazzy and kilted')
    parser.add_argument('--distro', choices=sorted(DISTROS), default='jazzy',
                        help='humble writes metadata version 8, jazzy and kilted version 9')
    parser.add_argument('--encoding', choices=ENCODINGS, default='rgb8')
    parser.add_argument('--frame-id', default='camera')
    parser.add_argument('--start-stamp', type=float, default=DEFAULT_START_NS / 1e9,
                        help='header stamp of the first frame, seconds since the epoch')
    parser.add_argument('--limit', type=int, help='write the first N frames only')
    parser.add_argument('--force', action='store_true', help='replace an existing bag')
    return parser.parse_args(argv)


def main(args=None):
    """Entry point of `dataset_to_bag`; exit code 2 with one message on any input error."""
    args = parse_args(sys.argv[1:] if args is None else args)
    try:
        samples = load_dataset(args.dataset, args.root, limit=args.limit)
        count = write_bag(samples, args.out, fps=args.fps, storage=args.storage,
                          distro=args.distro, encoding=args.encoding, frame_id=args.frame_id,
                          start_ns=round(args.start_stamp * 1e9), force=args.force)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as error:
        print(f'dataset_to_bag: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('dataset_to_bag: interrupted; no bag written', file=sys.stderr)
        return 130
    print(f'dataset_to_bag: wrote {count} frames of {args.dataset} to {args.out} '
          f'({args.distro}, {args.storage or DISTROS[args.distro].default_storage})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
