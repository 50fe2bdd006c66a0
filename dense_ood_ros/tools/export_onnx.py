"""export_onnx: a dense_ood_ros checkpoint as one self-describing ONNX file for ONNX Runtime.

The graph takes raw RGB frames, float32 (N, 3, H, W) in 0..255, normalises them with the
checkpoint's mean and std and returns the segmenter's logits (N, K, H, W); the batch is
dynamic. H and W are fixed: the network input of a ``--height`` x ``--width`` camera at the
checkpoint's short edge, padded to a multiple of 32, as the pipeline computes it (LDN-121's
pyramid pooling derives its grid from the input's aspect ratio, which an exported graph
cannot keep symbolic). Everything the node reads from a checkpoint travels in the model's
metadata (``dense_ood_ros``: class names, palette, mean / std, short edge, default score,
temperatures, threshold, the source checkpoint and its SHA-256).

Before anything is written the file passes the ONNX checker and ONNX Runtime's logits on a
real frame (``--image``; default a generated street-like test card) must equal PyTorch's
float32 logits within ``--tolerance`` relative to the largest logit (1e-4; 2e-2 for
``--fp16``, which runs the segmenter in float16 between float32 input and output); otherwise
the export is refused and no file is left behind. Opset 18: TensorRT 8.6 and later and every
current ONNX Runtime.
"""

import argparse
import hashlib
import os
import sys
import tempfile
import warnings

import cv2
import numpy as np

from dense_ood_ros.pipeline_common import network_size, STRIDE

OPSET = 18
DEFAULT_TOLERANCE = 1e-4
# float16 keeps about three decimal digits; through LDN-121's depth the logits differ from
# float32 by a few 1e-3 of the largest logit.
FP16_TOLERANCE = 2e-2


def file_sha256(path):
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def input_size(height, width, short_edge):
    """Return the padded network input (H, W) for frames of ``height`` x ``width``."""
    h, w = network_size(height, width, short_edge)
    return h + -h % STRIDE, w + -w % STRIDE


def test_card(height, width):
    """Return a deterministic street-like RGB frame: sky, facade blocks, road, an obstacle."""
    rgb = np.zeros((height, width, 3), np.uint8)
    horizon = height // 2
    rgb[:horizon] = np.linspace([70, 130, 200], [180, 200, 230], horizon)[:, None]
    rng = np.random.default_rng(0)
    for left in range(0, width, max(1, width // 6)):
        top = int(rng.integers(height // 8, horizon))
        rgb[top:horizon, left:left + width // 8] = rng.integers(40, 160, 3)
    rgb[horizon:] = np.linspace([90, 90, 95], [60, 60, 65], height - horizon)[:, None]
    cy, cx = int(height * 0.75), width // 2
    cv2.circle(rgb, (cx, cy), max(2, height // 16), (200, 60, 30), -1)
    return rgb


def normalised_model(model, mean, std, *, half=False):
    """Return `model` behind its normalisation, so that the graph starts from 0..255 RGB.

    With `half` the segmenter runs in float16 between float32 input and output (the
    normalisation stays float32): the file's interface does not change with its precision.
    """
    import torch

    from dense_ood_ros.normalization import pixel_normalization

    class Normalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model.half() if half else model
            offset, scale = pixel_normalization(mean, std)
            self.register_buffer('mean', offset)
            self.register_buffer('inv_std', scale)

        def forward(self, image):
            normalised = (image - self.mean) * self.inv_std
            if half:
                return self.model(normalised.half()).float()
            return self.model(normalised)

    return Normalised().eval()


def export(checkpoint_path, out, *, height, width, image=None, tolerance=None, opset=OPSET,
           fp16=False, log=print):
    """Export, validate and write the model; return the relative difference measured."""
    import onnx
    import torch

    from dense_ood_ros.atomic_file import atomic_open
    from dense_ood_ros.checkpoint import build_model_from_checkpoint, load_checkpoint
    from dense_ood_ros.onnx_pipeline import (INPUT_NAME, METADATA_KEY, OnnxModelInfo,
                                             OUTPUT_NAME)

    checkpoint = load_checkpoint(checkpoint_path)
    tolerance = tolerance if tolerance is not None else (
        FP16_TOLERANCE if fp16 else DEFAULT_TOLERANCE)
    size = input_size(height, width, checkpoint.input_short_edge)
    # The float32 network is the reference the file is checked against, whatever it holds.
    reference = normalised_model(build_model_from_checkpoint(checkpoint, checkpoint_path),
                                 checkpoint.mean, checkpoint.std)
    wrapped = (normalised_model(build_model_from_checkpoint(checkpoint, checkpoint_path),
                                checkpoint.mean, checkpoint.std, half=True)
               if fp16 else reference)
    frame = test_card(height, width) if image is None else image
    # The padded, resized frame exactly as the pipeline feeds it (mean colour as filler).
    example = np.empty((1, size[0], size[1], 3), np.float32)
    example[:] = np.asarray(checkpoint.mean, np.float32) * 255.0
    h, w = network_size(frame.shape[0], frame.shape[1], checkpoint.input_short_edge)
    if input_size(frame.shape[0], frame.shape[1], checkpoint.input_short_edge) != size:
        raise ValueError(f'--image is {frame.shape[1]}x{frame.shape[0]}; its network input '
                         f'differs from the {width}x{height} camera this export is for')
    example[0, :h, :w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    example = np.ascontiguousarray(example.transpose(0, 3, 1, 2))
    tensor = torch.from_numpy(example)
    info = OnnxModelInfo(
        class_names=list(checkpoint.class_names), palette=[list(c) for c in checkpoint.palette],
        mean=list(checkpoint.mean), std=list(checkpoint.std),
        input_short_edge=checkpoint.input_short_edge, default_score=checkpoint.default_score,
        temperatures=dict(checkpoint.temperatures), threshold=float(checkpoint.threshold),
        source_checkpoint=os.path.abspath(checkpoint_path),
        source_sha256=file_sha256(checkpoint_path), precision='fp16' if fp16 else 'fp32',
        opset=opset,
        input_size=list(size))
    directory = os.path.dirname(os.path.abspath(out))
    with tempfile.TemporaryDirectory(dir=directory, prefix='.export_onnx-') as scratch:
        raw = os.path.join(scratch, 'raw.onnx')
        log(f'exporting {checkpoint_path} for a {width}x{height} camera (network input '
            f'{size[1]}x{size[0]}, dynamic batch, opset {opset}, '
            f'{"float16" if fp16 else "float32"}) ...')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with torch.no_grad():
                torch.onnx.export(
                    wrapped, (tensor,), raw, dynamo=True, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_shapes={'image': {0: torch.export.Dim('batch', max=64)}},
                    verbose=False)
        model = onnx.load(raw)
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, info.to_json()
        onnx.checker.check_model(model, full_check=True)
        serialised = model.SerializeToString()
        difference = _compare(serialised, reference, tensor)
    log(f'ONNX Runtime against PyTorch: largest logit difference {difference:.2e} of the '
        f'largest logit (tolerance {tolerance:g})')
    if not difference <= tolerance:
        raise ValueError(f'ONNX Runtime and PyTorch differ by {difference:.2e} (relative), '
                         f'more than {tolerance:g}: nothing written')
    with atomic_open(out, 'wb') as stream:
        stream.write(serialised)
    return difference


def _compare(serialised, wrapped, tensor):
    import onnxruntime
    import torch

    from dense_ood_ros.onnx_pipeline import INPUT_NAME

    session = onnxruntime.InferenceSession(serialised, providers=['CPUExecutionProvider'])
    ours = session.run(None, {INPUT_NAME: tensor.numpy()})[0]
    with torch.no_grad():
        reference = wrapped(tensor).numpy()
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-12))


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='export_onnx', description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True, help='a dense_ood_ros .pt checkpoint')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--height', type=int, default=1024, help='camera frame height')
    parser.add_argument('--width', type=int, default=2048, help='camera frame width')
    parser.add_argument('--image', help='a camera frame of that size to compare on (default: '
                                        'a generated test card)')
    parser.add_argument('--fp16', action='store_true',
                        help='the segmenter in float16 (input and output stay float32)')
    parser.add_argument('--tolerance', type=float,
                        help='largest ONNX Runtime - PyTorch (float32) logit difference, '
                             f'relative to the largest logit (default {DEFAULT_TOLERANCE:g}, '
                             f'with --fp16 {FP16_TOLERANCE:g})')
    parser.add_argument('--opset', type=int, default=OPSET)
    args = parser.parse_args(argv)
    if min(args.height, args.width) < 1:
        parser.error('--height and --width must be positive')
    if not args.out.endswith('.onnx'):
        parser.error('--out must end in .onnx (the node picks the backend by the suffix)')
    return args


def main(argv=None):
    """Entry point: 0 on success, 1 when the check refuses the export, 2 on bad input."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    image = None
    if args.image:
        bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if bgr is None:
            print(f'export_onnx: cannot read --image {args.image}', file=sys.stderr)
            return 2
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    from dense_ood_ros.checkpoint import CheckpointError

    try:
        export(args.checkpoint, args.out, height=args.height, width=args.width, image=image,
               tolerance=args.tolerance, opset=args.opset, fp16=args.fp16)
    except CheckpointError as error:
        print(f'export_onnx: {error}', file=sys.stderr)
        return 2
    except ValueError as error:
        print(f'export_onnx: {error}', file=sys.stderr)
        return 1
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
