"""LDN-121: architecture against torchvision's DenseNet-121, weight loading, checkpointing."""

import copy
import re

import pytest
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
import torchvision

from dense_ood_ros.models.ldn import ldn121

# One dense layer per checkpoint call, plus the three transitions and three ladder steps.
CHECKPOINTED_CALLS = (6 + 12 + 24 + 16) + 3 + 3


@pytest.fixture(autouse=True)
def _one_thread():
    # The CI machine's two cores are shared; one thread also keeps results reproducible.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def torchvision_densenet():
    """Return torchvision's densenet121 with every tensor, BN buffers included, randomised."""
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    # Fresh BN layers are all ones/zeros, exactly like ours: randomise them so that a
    # tensor that silently failed to load cannot compare equal by accident.
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                tensor.fill_(7)
            elif name.endswith('running_var') or re.search(r'norm\d?\.weight$', name):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(('running_mean', '.bias')):
                tensor.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope='module')
def torchvision_weights(torchvision_densenet, tmp_path_factory):
    """Path of the randomised torchvision state dict saved like the ImageNet file."""
    path = tmp_path_factory.mktemp('weights') / 'densenet121-test.pth'
    torch.save(torchvision_densenet.state_dict(), path)
    return path


def _old_style(state_dict):
    """Rename keys to the original .pth spelling ('norm.1') and drop the BN batch counters."""
    renamed = {}
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        renamed[re.sub(r'(denselayer\d+\.(?:norm|conv))([12])\.', r'\1.\2.', key)] = value
    return renamed


def _assert_backbone_equals(model, torchvision_model, *, check_counters=True):
    expected = {k: v for k, v in torchvision_model.state_dict().items()
                if k.startswith('features.')}
    loaded = model.backbone.state_dict()
    assert sorted(loaded) == sorted(expected)
    for key, tensor in expected.items():
        if key.endswith('num_batches_tracked') and not check_counters:
            continue
        assert torch.equal(loaded[key], tensor), key


def test_loads_torchvision_state_dict(torchvision_densenet, torchvision_weights):
    model = ldn121(19, backbone_weights=torchvision_weights)
    _assert_backbone_equals(model, torchvision_densenet)


def test_loads_old_style_key_names(torchvision_densenet, tmp_path):
    old = _old_style(torchvision_densenet.state_dict())
    assert 'features.denseblock1.denselayer1.norm.1.weight' in old
    assert 'features.denseblock4.denselayer16.conv.2.weight' in old
    path = tmp_path / 'densenet121-old.pth'
    # The ImageNet file predates the zip format too.
    torch.save(old, path, _use_new_zipfile_serialization=False)
    model = ldn121(19, backbone_weights=path)
    # The original file has no batch counters; everything it does have must land.
    _assert_backbone_equals(model, torchvision_densenet, check_counters=False)


@pytest.mark.parametrize('corruption', ['missing', 'shape', 'unexpected'])
def test_rejects_mismatched_state_dict(torchvision_densenet, tmp_path, corruption):
    state_dict = dict(torchvision_densenet.state_dict())
    key = 'features.denseblock3.denselayer7.conv2.weight'
    if corruption == 'missing':
        del state_dict[key]
    elif corruption == 'shape':
        state_dict[key] = torch.zeros(32, 128, 1, 1)
    else:
        key = 'features.denseblock5.denselayer1.conv1.weight'
        state_dict[key] = torch.zeros(1)
    path = tmp_path / f'bad-{corruption}.pth'
    torch.save(state_dict, path)
    with pytest.raises(ValueError) as info:
        ldn121(19, backbone_weights=path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_rejects_unreadable_file(tmp_path):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(b'not a state dict')
    with pytest.raises(ValueError, match=re.escape(str(path))):
        ldn121(19, backbone_weights=path)


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / 'nowhere' / 'densenet121.pth'
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        ldn121(19, backbone_weights=path)


def test_parameter_count():
    count = sum(p.numel() for p in ldn121(19).parameters())
    assert 10_500_000 <= count <= 11_500_000, count


@pytest.mark.parametrize('shape', [(1, 3, 70, 100), (1, 3, 64, 64), (2, 3, 96, 65)])
def test_logits_match_input_size(shape):
    torch.manual_seed(0)
    model = ldn121(5).eval()
    with torch.no_grad():
        logits = model(torch.randn(shape))
    assert logits.shape == (shape[0], 5, shape[2], shape[3])
    assert torch.isfinite(logits).all()
    assert model.num_classes == 5


def test_backbone_matches_torchvision_features(torchvision_densenet, torchvision_weights):
    model = ldn121(3, backbone_weights=torchvision_weights).eval()
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        # Walk torchvision's Sequential to collect each dense block's output.
        reference = {}
        y = x
        for name, module in torchvision_densenet.features.named_children():
            y = module(y)
            reference[name] = y
        ours = model.backbone(x)
        ladder = model.backbone_features(x)
        full = torchvision_densenet.features(x)
    torch.testing.assert_close(ours[0], reference['denseblock1'])
    torch.testing.assert_close(ours[1], reference['denseblock2'])
    torch.testing.assert_close(ours[2], reference['denseblock3'])
    torch.testing.assert_close(ours[3], full)
    torch.testing.assert_close(ladder[3], F.relu(full))
    # Sanity check that the comparison is not vacuous: the features must have negatives.
    assert (full < 0).any()


def test_skip_channels_and_strides():
    model = ldn121(3).eval()
    with torch.no_grad():
        features = model.backbone_features(torch.randn(1, 3, 128, 128))
    assert [tuple(f.shape) for f in features] == [
        (1, 256, 32, 32), (1, 512, 16, 16), (1, 1024, 8, 8), (1, 1024, 4, 4)]
    assert (features[3] >= 0).all()


def test_pyramid_grids_keep_aspect_ratio():
    model = ldn121(3).eval()
    grids = []
    for level in model.spp.levels:
        level.register_forward_hook(lambda module, args, out: grids.append(args[0].shape[-2:]))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 256))  # 2 x 8 at /32
    assert [tuple(g) for g in grids] == [(8, 32), (4, 16), (2, 8), (1, 4)]


def _counting_checkpoint(monkeypatch):
    calls = []
    real = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting)
    return calls


def _loss_and_grads(model, x, target):
    model.zero_grad()
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_checkpointing_gives_same_loss_gradients_and_statistics(monkeypatch):
    torch.manual_seed(0)
    plain = ldn121(3).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpointing = True
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 3, (2, 64, 64))
    loss, grads = _loss_and_grads(plain, x, target)
    calls = _counting_checkpoint(monkeypatch)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointed, x, target)
    assert calls == [False] * CHECKPOINTED_CALLS
    torch.testing.assert_close(loss_ckpt, loss)
    assert grads_ckpt.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, msg=name)
    # Recomputation must not fold the batch into the BN running statistics a second time.
    buffers = dict(plain.named_buffers())
    for name, buffer in checkpointed.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], msg=name)


def test_checkpointing_has_no_effect_in_eval(monkeypatch):
    torch.manual_seed(0)
    model = ldn121(3, checkpointing=True).eval()
    x = torch.randn(1, 3, 64, 64)
    calls = _counting_checkpoint(monkeypatch)
    with torch.no_grad():
        with_flag = model(x)
        model.checkpointing = False
        without_flag = model(x)
    assert calls == []
    assert torch.equal(with_flag, without_flag)


def test_parameter_groups_partition_the_parameters():
    model = ldn121(19)
    backbone = model.backbone_parameters()
    upsampling = model.upsampling_parameters()
    assert backbone and upsampling
    ids = [id(p) for p in backbone] + [id(p) for p in upsampling]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in backbone} == {id(p) for p in model.backbone.parameters()}
    assert id(model.logits.conv.weight) in {id(p) for p in upsampling}
