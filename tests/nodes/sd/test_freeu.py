"""FreeU against diffusers' own FreeU pieces (`fourier_filter`, `apply_freeu`, which is FreeU v1), FreeU_V2's
mean-based backbone map written out here, and ComfyUI's placement rule (joins whose h has 2·c or 4·c channels)
spelled out for the tiny UNet."""
import pytest
import torch
from diffusers.utils.torch_utils import apply_freeu
from diffusers.utils.torch_utils import fourier_filter as diffusers_fourier_filter

from nodes.sd.freeu import FreeU, fourier_filter, skip_joins
from tests.nodes.sd._sampling_helpers import tiny_unet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 5, 6)])
def test_fourier_filter_is_diffusers(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fourier_filter(x, 1, 0.2), diffusers_fourier_filter(x, 1, 0.2))


def test_freeu_join_is_diffusers_apply_freeu():
    g = torch.Generator().manual_seed(1)
    h, skip = torch.randn(2, 6, 4, 4, generator=g), torch.randn(2, 5, 4, 4, generator=g)
    expected = apply_freeu(0, h.clone(), skip, b1=1.3, s1=0.4, b2=9.0, s2=9.0)
    for got, want in zip(FreeU(1.3, 9.0, 0.4, 9.0).join(h, skip, 1.3, 0.4), expected):
        torch.testing.assert_close(got, want)


def test_freeu_v2_scales_the_backbone_by_the_normalised_mean_map():
    g = torch.Generator().manual_seed(2)
    h, skip = torch.randn(2, 6, 4, 4, generator=g), torch.randn(2, 6, 4, 4, generator=g)
    got_h, got_skip = FreeU(1.5, 1.0, 0.3, 1.0, adaptive=True).join(h, skip, 1.5, 0.3)
    expected = h.clone()
    for i in range(2):
        mean = h[i].mean(0)
        norm = (mean - mean.min()) / (mean.max() - mean.min())
        expected[i, :3] = h[i, :3] * (0.5 * norm + 1)
    torch.testing.assert_close(got_h, expected)
    torch.testing.assert_close(got_skip, diffusers_fourier_filter(skip, 1, 0.3))


def run(unet, x, context):
    with torch.no_grad():
        return unet(x, torch.tensor([500.0]), encoder_hidden_states=context).sample


def test_patch_hits_comfyui_joins_and_leaves_the_unet_as_it_was():
    unet = tiny_unet(seed=3)  # widths (32, 64): c = 32, joins with h of 64 channels get (b2, s2); none has 128
    x, context = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    plain = run(unet, x, context)
    assert [channels for _, channels in skip_joins(unet)] == [64, 64, 64, 32]
    patch = FreeU(b1=5.0, b2=1.4, s1=5.0, s2=0.2)
    with patch.attach(unet):
        patched = run(unet, x, context)

    def diffusers_stage2(module, args):  # diffusers' FreeU maths, at the joins ComfyUI's rule names
        h, skip = apply_freeu(1, args[0][:, :64].clone(), args[0][:, 64:], b2=1.4, s2=0.2)
        return (torch.cat([h, skip], 1),) + args[1:]

    named = list(unet.up_blocks[0].resnets) + [unet.up_blocks[1].resnets[0]]
    hooks = [resnet.register_forward_pre_hook(diffusers_stage2) for resnet in named]
    expected = run(unet, x, context)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(patched, expected)
    assert (patched - plain).abs().max() > 1e-3
    assert torch.equal(run(unet, x, context), plain)
    assert not any(module._forward_pre_hooks for module in unet.modules())
