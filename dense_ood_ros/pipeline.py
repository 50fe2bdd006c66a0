"""ROS-free inference: numpy RGB frames in, labels / anomaly score / masks out."""

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dense_ood_ros.checkpoint import (
    Checkpoint, build_model_from_checkpoint, load_checkpoint)
from dense_ood_ros.devices import resolve_device
from dense_ood_ros.normalization import pixel_normalization
# Re-exported: callers have always found these here.
from dense_ood_ros.pipeline_common import (  # noqa: F401
    check_rgb, network_size, PIPELINE_PARAMETER_DEFAULTS, pipeline_values, PipelineResult,
    PipelineSettings, resize_labels, resize_score, resolve_settings, STRIDE, UPSAMPLE_MODES)
from dense_ood_ros.scores import anomaly_score


class DenseOODPipeline(PipelineSettings):
    """One forward pass of a segmenter per frame, turned into labels and anomaly outputs.

    `score`, `temperature` and `threshold` may be changed between calls (the node exposes
    them as dynamic parameters); each assignment is validated. `upsample` 'logits' (the
    paper's way, default) upsamples the logits bilinearly to the frame's resolution before
    the argmax and the score; 'scores' computes both at the network's resolution and resizes
    them (cheaper at camera resolution; docs/method.md gives the cost and the effect).
    The model is put in eval mode, unless ``keep_mode``: a trainer validating its model
    leaves the mode to run_evaluation, which sets eval for its loop and restores it after.
    """

    def __init__(self, model, *, class_names, mean, std, input_short_edge, palette=None,
                 score='msp', temperature=10.0, threshold=0.5, device='cpu', half=False,
                 upsample='logits', keep_mode=False):
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f'upsample {upsample!r}: expected one of {UPSAMPLE_MODES}')
        self.upsample = upsample
        self.device = resolve_device(device)
        if half and self.device.type != 'cuda':
            raise ValueError('half precision needs a CUDA device; use half=False on CPU')
        if not isinstance(input_short_edge, int) or input_short_edge < STRIDE:
            raise ValueError(f'input_short_edge must be an int >= {STRIDE}, '
                             f'got {input_short_edge!r}')
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.palette = [tuple(c) for c in palette] if palette is not None else None
        if self.num_classes > 254:
            raise ValueError('at most 254 classes fit the uint8 open-set labels')
        self.input_short_edge = input_short_edge
        self.half = bool(half)
        self.dtype = torch.float16 if self.half else torch.float32
        self.model = model.to(self.device, self.dtype)
        if not keep_mode:
            self.model.eval()
        self._mean, self._inv_std = pixel_normalization(
            mean, std, dtype=self.dtype, device=self.device)
        self._init_settings(score, temperature, threshold)

    @classmethod
    def from_checkpoint(cls, checkpoint, *, device='auto', half=False, input_short_edge=None,
                        score=None, temperature=None, threshold=None, path='<memory>',
                        upsample='logits'):
        """Build from a checkpoint path or Checkpoint; unset arguments come from its metadata.

        `temperature` defaults to the checkpoint's temperature for the chosen score; `path`
        names a Checkpoint already loaded from a file in errors about its weights.
        """
        if not isinstance(checkpoint, Checkpoint):
            path, checkpoint = checkpoint, load_checkpoint(checkpoint)
        score, temperature, threshold = resolve_settings(
            checkpoint, score=score, temperature=temperature, threshold=threshold)
        model = build_model_from_checkpoint(checkpoint, path)
        return cls(
            model, class_names=checkpoint.class_names, palette=checkpoint.palette,
            mean=checkpoint.mean, std=checkpoint.std, device=device, half=half,
            input_short_edge=input_short_edge or checkpoint.input_short_edge, score=score,
            temperature=temperature, threshold=threshold, upsample=upsample)

    def preprocess(self, frames, size):
        """Resize, normalise and pad frames into one (N, 3, H', W') network input tensor."""
        height, width = size
        resized = [rgb if rgb.shape[:2] == size else
                   cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
                   for rgb in frames]
        batch = torch.from_numpy(np.stack(resized)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).to(self.dtype)
        batch = (batch - self._mean) * self._inv_std
        pad_h, pad_w = -height % STRIDE, -width % STRIDE
        if pad_h or pad_w:
            # Zero after normalisation is the mean colour: the least surprising filler.
            batch = F.pad(batch, (0, pad_w, 0, pad_h))
        return batch

    @torch.inference_mode()
    def _forward(self, frames, size, score_name, temperature):
        """Run the shared per-frame loop without autograd."""
        return super()._forward(frames, size, score_name, temperature)

    @staticmethod
    def _score_map(logits, score_name, temperature):
        """Return the (H, W) float32 numpy score of (1, K, H, W) logits."""
        score = anomaly_score(logits, score=score_name, temperature=temperature)
        return score[0].float().cpu().numpy()

    def _logits(self, frames, size):
        return self.model(self.preprocess(frames, size))[:, :, :size[0], :size[1]]

    def _at_resolution(self, logits, shape):
        """Return (1, K, H, W) logits bilinearly upsampled to `shape`, as the paper does.

        Scores and labels then come from the upsampled logits; with upsample 'scores' the old
        shortcut (score and argmax at network resolution, then resized) is kept instead.
        """
        if self.upsample == 'logits' and tuple(logits.shape[-2:]) != tuple(shape):
            logits = F.interpolate(logits, size=tuple(shape), mode='bilinear',
                                   align_corners=False)
        return logits

    @staticmethod
    def _labels(logits):
        return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()

    @torch.inference_mode()
    def infer_scores(self, rgb, settings):
        """Run one frame once; return (labels, [score map per (score, temperature)]).

        Evaluation sweeps several scores and temperatures over one forward pass; every map
        is computed exactly as infer() computes its score, at the input resolution.
        """
        check_rgb(rgb)
        height, width = rgb.shape[:2]
        logits = self._logits([rgb], network_size(height, width, self.input_short_edge))
        logits = self._at_resolution(logits, (height, width))
        maps = [anomaly_score(logits, score=name, temperature=temperature)[0].float().cpu()
                .numpy() for name, temperature in settings]
        return (resize_labels(self._labels(logits)[0], height, width),
                [resize_score(score, height, width) for score in maps])


def pipeline_from_params(checkpoint, params, *, path='<memory>'):
    """Build a pipeline from ROS-style parameters; unknown keys are left to the caller.

    `checkpoint` is a path or a loaded Checkpoint (then `path` is the file it came from).
    """
    if not isinstance(checkpoint, Checkpoint):
        path, checkpoint = checkpoint, load_checkpoint(checkpoint)
    values = pipeline_values(params)
    return DenseOODPipeline.from_checkpoint(
        checkpoint, device=values['device'], half=bool(values['half']),
        input_short_edge=values['input_short_edge'], score=values['score'],
        temperature=values['temperature'], threshold=values['threshold'], path=path,
        upsample=values['upsample'])
