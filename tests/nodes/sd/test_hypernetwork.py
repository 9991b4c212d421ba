"""Hypernetworks: tiny files written in A1111's format, their networks and their effect on the attention inputs
checked against a hand computation with torch.nn.functional."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from nodes.sd.hypernetwork import Hypernetwork, HypernetworkError, attention_projections, load_hypernetwork
from tests.nodes.sd._sampling_helpers import tiny_unet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def a1111_layer(width: int, seed: int, layer_norm: bool) -> OrderedDict:
    """The state dict of A1111's HypernetworkModule for layer_structure [1, 2, 1] with an activation: Linear,
    activation, [LayerNorm], Linear, [LayerNorm] as `linear.<index>` entries of one nn.Sequential."""
    g = torch.Generator().manual_seed(seed)
    state, index = OrderedDict(), 0
    for i, (n_in, n_out) in enumerate(((width, 2 * width), (2 * width, width))):
        state[f"linear.{index}.weight"] = torch.randn(n_out, n_in, generator=g) * 0.3
        state[f"linear.{index}.bias"] = torch.randn(n_out, generator=g) * 0.1
        index += 1 if i == 1 else 2  # the activation (no parameters) follows the first Linear only
        if layer_norm:
            state[f"linear.{index}.weight"] = 1 + torch.randn(n_out, generator=g) * 0.1
            state[f"linear.{index}.bias"] = torch.randn(n_out, generator=g) * 0.1
            index += 1
    return state


def write_hypernetwork(path, widths=(32, 64), activation="relu", layer_norm=False):
    data = {width: [a1111_layer(width, 2 * width, layer_norm), a1111_layer(width, 2 * width + 1, layer_norm)]
            for width in widths}
    data.update(name="tiny", step=10, layer_structure=[1, 2, 1], activation_func=activation,
                is_layer_norm=layer_norm, use_dropout=True, activate_output=False, last_layer_dropout=False,
                weight_initialization="Normal", sd_checkpoint=None)
    torch.save(data, path)
    return data


def by_hand(state: OrderedDict, x: torch.Tensor, layer_norm: bool) -> torch.Tensor:
    """The network as ComfyUI builds it: ReLU after the first Linear; with layer norms, also after the second
    (ComfyUI counts the LayerNorm entries when it looks for the last layer)."""
    w = list(state.values())
    if not layer_norm:
        return F.linear(F.relu(F.linear(x, w[0], w[1])), w[2], w[3])
    h = F.layer_norm(F.relu(F.linear(x, w[0], w[1])), (w[2].shape[0],), w[2], w[3])
    return F.layer_norm(F.relu(F.linear(h, w[4], w[5])), (w[6].shape[0],), w[6], w[7])


@pytest.mark.parametrize("layer_norm", [False, True])
def test_networks_follow_comfyuis_layer_rule(tmp_path, layer_norm):
    data = write_hypernetwork(tmp_path / "h.pt", layer_norm=layer_norm)
    networks = load_hypernetwork(tmp_path / "h.pt", allow_pickle=True)
    assert sorted(networks) == [32, 64]
    x = torch.randn(3, 5, 64)
    for index in (0, 1):
        net = networks[64][index]
        assert not any(isinstance(m, torch.nn.Dropout) for m in net.modules())
        torch.testing.assert_close(net(x), by_hand(data[64][index], x, layer_norm))


def test_patch_adds_the_networks_to_key_and_value_inputs(tmp_path):
    data = write_hypernetwork(tmp_path / "h.pt")
    patch = Hypernetwork(load_hypernetwork(tmp_path / "h.pt", allow_pickle=True), strength=0.7)
    unet = tiny_unet(seed=2)
    seen: dict[tuple[int, str], list[torch.Tensor]] = {}
    hooks = []
    projections = attention_projections(unet)
    assert len(projections) == 8  # attn1 + attn2 in 4 transformer blocks
    for n, (to_k, to_v) in enumerate(projections):
        for kind, module in (("k", to_k), ("v", to_v)):
            # registered before the patch: sees the original input; the forward hook sees what the layer got
            hooks.append(module.register_forward_pre_hook(lambda m, a, key=(n, kind): seen.update({key: [a[0]]})))
            hooks.append(module.register_forward_hook(lambda m, a, out, key=(n, kind): seen[key].append(a[0])))
    x, context = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    with torch.no_grad(), patch.attach(unet):
        unet(x, torch.tensor([10.0]), encoder_hidden_states=context)
    for hook in hooks:
        hook.remove()
    for (n, kind), (before, after) in seen.items():
        width = before.shape[-1]
        expected = before + by_hand(data[width][0 if kind == "k" else 1], before, False) * 0.7
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    assert not any(module._forward_pre_hooks for module in unet.modules())


def test_pickle_needs_the_opt_in_and_safetensors_is_refused(tmp_path):
    write_hypernetwork(tmp_path / "h.pt")
    with pytest.raises(HypernetworkError, match="allow-pickle"):
        load_hypernetwork(tmp_path / "h.pt")
    (tmp_path / "h.safetensors").write_bytes(b"")
    with pytest.raises(HypernetworkError, match="safetensors"):
        load_hypernetwork(tmp_path / "h.safetensors", allow_pickle=True)
    torch.save({"activation_func": "gelu", 32: []}, tmp_path / "bad.pt")
    with pytest.raises(HypernetworkError, match="gelu"):
        load_hypernetwork(tmp_path / "bad.pt", allow_pickle=True)
    torch.save({"name": "x"}, tmp_path / "empty.pt")
    with pytest.raises(HypernetworkError, match="no hypernetwork layers"):
        load_hypernetwork(tmp_path / "empty.pt", allow_pickle=True)
