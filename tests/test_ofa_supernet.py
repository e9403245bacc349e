"""The ofa_mbv3 supernet: shared weights, extraction into standalone networks, a little training."""
from __future__ import annotations

import pytest
import torch

from modnas.toolkit.errors import BadInput
from modnas.toolkit.data.datasets import load_images
from modnas.toolkit.spaces.ofa_mbv3.supernet import OFASupernet, calibrate_bn, largest_arch
from modnas.toolkit.spaces import get_space
from modnas.toolkit.spaces.ofa_mbv3 import OFAMobileNetV3Space
from modnas.toolkit.spaces.ofa_mbv3.blocks import hidden_width, make_divisible

SMALLEST = "ks=" + "-".join(["3"] * 20) + ";e=" + "-".join(["3"] * 20) + ";d=2-2-2-2-2;r=128"


@pytest.fixture(scope="module")
def space() -> OFAMobileNetV3Space:
    return get_space("ofa_mbv3")


@pytest.fixture(scope="module")
def supernet() -> OFASupernet:
    """A supernet with random (not default) BN statistics and affine parameters."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = OFASupernet(num_classes=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return net.eval()


def test_extract_loads_strictly_and_agrees(space: OFAMobileNetV3Space, supernet: OFASupernet) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    archs = [SMALLEST, largest_arch(space)] + space.sample(2, seed=11) + space.reference_archs()[:1]
    outs = []
    for arch in archs:
        net = space.build(arch, num_classes=10)
        net.load_state_dict(supernet.extract(arch), strict=True)
        net.eval()
        with torch.no_grad():
            want, got = supernet(x, arch), net(x)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
        assert float(want.abs().max()) > 1e-3
        outs.append(want)
    assert not torch.allclose(outs[0], outs[1])  # the archs really differ
    sub = supernet.subnet(archs[2]).eval()
    with torch.no_grad():
        assert torch.allclose(sub(x), outs[2], atol=1e-5, rtol=1e-5)
    twin = OFASupernet(**supernet.config())
    twin.load_state_dict(supernet.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(twin.eval()(x, archs[3]), outs[3])


def test_weights_are_entangled(space: OFAMobileNetV3Space, supernet: OFASupernet) -> None:
    big = supernet.extract(largest_arch(space))
    small = supernet.extract(SMALLEST)
    w7, w3 = big["blocks.0.depthwise.conv.weight"], small["blocks.0.depthwise.conv.weight"]
    h3 = hidden_width(24, 3)
    assert w7.shape[-1] == 7 and w3.shape == (h3, 1, 3, 3)
    assert torch.equal(w3, w7[:h3, :, 2:5, 2:5])  # centre crop, first channels
    assert torch.equal(small["blocks.0.expand.conv.weight"], big["blocks.0.expand.conv.weight"][:h3])
    h2 = hidden_width(32, 3)  # stage 2 starts at 32 channels (stage 1's output)
    se_small = small["blocks.2.se.reduce.weight"]
    assert se_small.shape[:2] == (make_divisible(h2 // 4), h2)
    assert torch.equal(se_small, big["blocks.4.se.reduce.weight"][: se_small.shape[0], :h2])
    # depth: the smallest subnet's stage 2 starts at block 2, the largest's at block 4
    assert torch.equal(small["blocks.2.project.conv.weight"], big["blocks.4.project.conv.weight"][:, :h2])
    # the extracted copy is independent of the supernet
    small["blocks.0.depthwise.conv.weight"].zero_()
    assert supernet.stages[0][0].dw_conv.weight.abs().sum() > 0


def test_training_lowers_the_loss_and_updates_only_the_used_slices(space: OFAMobileNetV3Space) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(2)
    net = OFASupernet(num_classes=10, width_mult=0.5)  # narrow, to keep the test quick
    digits = load_images("digits", max_images=48, seed=0)
    images = torch.nn.functional.interpolate(digits.x, size=(16, 16), mode="bilinear", align_corners=False)
    labels = digits.y
    assert images.shape == (48, 3, 16, 16) and set(labels.tolist()) == set(range(10))
    arch = space.reference_archs()[1]
    e0 = space.config(arch).e[0]
    h = hidden_width(net.stages[0][0].c_in, e0)
    bn = net.stages[0][0].expand_bn
    before_mean = bn.running_mean.clone()
    net.train()
    with torch.no_grad():
        loss0 = torch.nn.functional.cross_entropy(net(images, arch), labels).item()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):  # SGD on the one subnet, a random batch each step
        pick = torch.randint(len(labels), (24,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(images[pick], arch), labels[pick]).backward()
        opt.step()
    with torch.no_grad():
        loss1 = torch.nn.functional.cross_entropy(net(images, arch), labels).item()
    assert loss1 < loss0 - 0.3
    assert not torch.equal(bn.running_mean[:h], before_mean[:h])  # sliced running stats are updated
    if h < bn.num_features:
        assert torch.equal(bn.running_mean[h:], before_mean[h:])
    calibrate_bn(net, images, arch)  # running statistics of these images: eval mode now fits them
    net.eval()
    with torch.no_grad():
        assert torch.nn.functional.cross_entropy(net(images, arch), labels).item() < loss0


def test_straight_through_one_hot_forward(space: OFAMobileNetV3Space, supernet: OFASupernet) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    arch = space.sample(1, seed=21)[0]
    onehot = torch.tensor(space.encode([arch])[0], requires_grad=True)
    out = supernet(x, onehot)
    with torch.no_grad():
        assert torch.allclose(out, supernet(x, arch), atol=1e-6)
    out.square().sum().backward()
    cfg = space.config(arch)
    touched = torch.flatten(torch.nonzero(onehot.grad)).tolist()
    # the chosen kernel and expand entries of every active block, and each stage's chosen depth
    assert len(touched) == 2 * sum(cfg.d) + len(cfg.d)
    assert set(touched) <= set(torch.flatten(torch.nonzero(onehot.detach())).tolist())
    assert supernet.extract(onehot.detach()).keys() == supernet.extract(arch).keys()
    with pytest.raises(BadInput):
        supernet(x, torch.zeros(7))
