"""Regional and combined conditioning nodes: their /object_info entries are ComfyUI's, their outputs are checked
against hand computations, and ComfyUI's area-composition examples run end to end on the tiny checkpoint."""
from __future__ import annotations

import logging

import pytest
import torch

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.builtin.conditioning_tools import (
    ConditioningAverage,
    ConditioningConcat,
    ConditioningSetArea,
    ConditioningSetAreaPercentage,
    ConditioningSetAreaStrength,
    ConditioningSetMask,
)
from nodes.paths import DataPaths
from nodes.sd import tiny

# ComfyUI 0.3.64's definitions (nodes.py INPUT_TYPES, NODE_DISPLAY_NAME_MAPPINGS; "ConditioningAverage " is keyed
# with a trailing space there, so its display name is the class name).
STRENGTH = ["FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}]
PIXELS = lambda default, low: ["INT", {"default": default, "min": low, "max": 16384, "step": 8}]
FRACTION = lambda default: ["FLOAT", {"default": default, "min": 0, "max": 1.0, "step": 0.01}]
COMFYUI = {
    "ConditioningSetArea": ("Conditioning (Set Area)", {
        "conditioning": ["CONDITIONING"], "width": PIXELS(64, 64), "height": PIXELS(64, 64), "x": PIXELS(0, 0),
        "y": PIXELS(0, 0), "strength": STRENGTH}),
    "ConditioningSetAreaPercentage": ("Conditioning (Set Area with Percentage)", {
        "conditioning": ["CONDITIONING"], "width": FRACTION(1.0), "height": FRACTION(1.0), "x": FRACTION(0),
        "y": FRACTION(0), "strength": STRENGTH}),
    "ConditioningSetAreaStrength": ("ConditioningSetAreaStrength", {
        "conditioning": ["CONDITIONING"], "strength": STRENGTH}),
    "ConditioningSetMask": ("Conditioning (Set Mask)", {
        "conditioning": ["CONDITIONING"], "mask": ["MASK"], "strength": STRENGTH,
        "set_cond_area": [["default", "mask bounds"]]}),
    "ConditioningConcat": ("Conditioning (Concat)", {
        "conditioning_to": ["CONDITIONING"], "conditioning_from": ["CONDITIONING"]}),
    "ConditioningAverage": ("ConditioningAverage", {
        "conditioning_to": ["CONDITIONING"], "conditioning_from": ["CONDITIONING"],
        "conditioning_to_strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}]}),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("conditioning-regions")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    return env


@pytest.fixture(scope="module")
def executor(env):
    """One executor for the module: the checkpoint and the prompts are loaded and encoded once."""
    return Executor(env)


@pytest.mark.parametrize("name", COMFYUI)
def test_object_info_is_comfyuis(env, name):
    display, inputs = COMFYUI[name]
    entry = builtin_registry().object_info(env)[name]
    entry.pop("description")  # ComfyUI's is empty; ours is the node's docstring
    assert entry == {
        "input": {"required": inputs}, "input_order": {"required": list(inputs)}, "output": ["CONDITIONING"],
        "output_is_list": [False], "output_name": ["CONDITIONING"], "name": name, "display_name": display,
        "python_module": "nodes", "category": "conditioning", "output_node": False}


def entry(tokens, seed, **extras):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, tokens, 8, generator=g), extras]


def test_area_nodes_set_comfyuis_keys_and_copy_entries():
    given = [entry(3, 1, pooled_output=torch.ones(1, 4)), entry(3, 2)]
    out = ConditioningSetArea(conditioning=given, width=100, height=64, x=13, y=24, strength=1.5).run(None)
    assert [e[1]["area"] for e in out] == [(8, 12, 3, 1)] * 2  # (h // 8, w // 8, y // 8, x // 8)
    assert out[0][1]["strength"] == 1.5 and out[0][1]["set_area_to_bounds"] is False
    assert out[0][0] is given[0][0] and "area" not in given[0][1] and out[0][1]["pooled_output"] is given[0][1][
        "pooled_output"]
    pct = ConditioningSetAreaPercentage(conditioning=given, width=0.5, height=0.25, x=0.1, y=0.2, strength=2.0)
    assert pct.run(None)[1][1]["area"] == ("percentage", 0.25, 0.5, 0.2, 0.1)
    assert ConditioningSetAreaStrength(conditioning=out, strength=0.5).run(None)[0][1]["strength"] == 0.5
    mask = torch.rand(16, 16)
    masked = ConditioningSetMask(conditioning=given, mask=mask, strength=0.7, set_cond_area="mask bounds").run(None)
    extras = masked[0][1]
    assert extras["mask"].shape == (1, 16, 16) and torch.equal(extras["mask"][0], mask)
    assert (extras["mask_strength"], extras["set_area_to_bounds"]) == (0.7, True) and "strength" not in extras
    plain = ConditioningSetMask(conditioning=given, mask=mask[None], strength=1.0, set_cond_area="default").run(None)
    assert plain[0][1]["set_area_to_bounds"] is False


def test_concat_appends_the_first_entry_of_from(caplog):
    to = [entry(4, 1, pooled_output=torch.ones(1, 2)), entry(2, 2, strength=0.5)]
    source = [entry(3, 3), entry(5, 4)]
    with caplog.at_level(logging.WARNING):
        out = ConditioningConcat(conditioning_to=to, conditioning_from=source).run(None)
    assert "only the first" in caplog.text
    assert [e[0].shape[1] for e in out] == [7, 5]
    assert torch.equal(out[0][0][:, :4], to[0][0]) and torch.equal(out[0][0][:, 4:], source[0][0])
    assert torch.equal(out[1][0][:, 2:], source[0][0]) and out[1][1] == {"strength": 0.5}
    assert out[0][1] is not to[0][1] and torch.equal(out[0][1]["pooled_output"], torch.ones(1, 2))
    with pytest.raises(ValueError, match="token widths"):
        ConditioningConcat(conditioning_to=to, conditioning_from=[[torch.zeros(1, 3, 6), {}]]).run(None)


def test_average_blends_tokens_and_pooled_outputs(caplog):
    pooled_to, pooled_from = torch.full((1, 2), 4.0), torch.full((1, 2), 2.0)
    to = [entry(4, 1, pooled_output=pooled_to), entry(2, 2), entry(3, 5, pooled_output=None)]
    source = [entry(3, 3, pooled_output=pooled_from), entry(5, 4)]
    with caplog.at_level(logging.WARNING):
        out = ConditioningAverage(conditioning_to=to, conditioning_from=source, conditioning_to_strength=0.25).run(None)
    assert "only the first" in caplog.text
    s, src = 0.25, source[0][0]
    # 4 tokens against 3: the fourth is blended with zeros
    padded = torch.cat([src, torch.zeros(1, 1, 8)], dim=1)
    assert torch.allclose(out[0][0], to[0][0] * s + padded * (1 - s))
    assert torch.allclose(out[1][0], to[1][0] * s + src[:, :2] * (1 - s))  # 2 tokens: from is cut
    assert torch.allclose(out[0][1]["pooled_output"], torch.full((1, 2), 4 * 0.25 + 2 * 0.75))
    # without a pooled output of its own an entry takes from's (blending from with itself, or taking it as is)
    assert torch.allclose(out[1][1]["pooled_output"], pooled_from)
    assert torch.equal(out[2][1]["pooled_output"], pooled_from)
    none_from = ConditioningAverage(conditioning_to=to, conditioning_from=[entry(3, 3)], conditioning_to_strength=0.5)
    assert torch.equal(none_from.run(None)[0][1]["pooled_output"], pooled_to) and "pooled_output" not in to[1][1]
    with pytest.raises(ValueError, match="empty"):
        ConditioningAverage(conditioning_to=to, conditioning_from=[], conditioning_to_strength=0.5).run(None)


# ---- end to end: ComfyUI's area-composition examples as API workflows on the tiny SD1 checkpoint ----

def base_workflow(positive, width=128, height=128, extra=None):
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        **text("6", "a beautiful landscape, masterpiece"), **text("7", "bad quality, blurry"),
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": 5, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": list(positive), "negative": ["7", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "area"}},
        **(extra or {}),
    }


def text(node_id, prompt):
    return {node_id: {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["4", 1]}}}


def combine(node_id, a, b):
    return {node_id: {"class_type": "ConditioningCombine",
                      "inputs": {"conditioning_1": [a, 0], "conditioning_2": [b, 0]}}}


def area(node_id, source, width, height, x, y, strength=1.0):
    return {node_id: {"class_type": "ConditioningSetArea", "inputs": {
        "conditioning": [source, 0], "width": width, "height": height, "x": x, "y": y, "strength": strength}}}


def execute(executor, workflow):
    report = validate(parse_workflow(workflow), builtin_registry(), executor.env)
    assert report.clean, report.to_comfy()
    result = executor.execute(report, prompt_id="p", prompt=workflow)
    assert result.success, result.error
    return result.values


def latent(values):
    return values["3"].outputs[0][0]["samples"]


def image(values):
    return values["8"].outputs[0][0]


def close(a, b):
    """Equal up to float32 rounding of differently batched UNet calls, relative to the magnitude."""
    return (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_area_composition(executor):
    """ComfyUI's "area composition" example: a whole-image prompt combined with prompts set on areas (a wide sky
    band over the top, a tree on the left, a lake on the right), chained with ConditioningCombine."""
    nodes = {**text("10", "night sky, stars"), **text("11", "a tall tree"), **text("12", "a calm lake"),
             **area("13", "10", 192, 64, 0, 0, 1.0), **area("14", "11", 64, 64, 0, 64, 1.2),
             **area("15", "12", 128, 64, 64, 64, 1.0),
             **combine("16", "6", "13"), **combine("17", "16", "14"), **combine("18", "17", "15")}
    values = execute(executor, base_workflow(("18", 0), width=192, height=128, extra=nodes))
    plain = execute(executor, base_workflow(("6", 0), width=192, height=128))
    assert image(values).shape == (1, 128, 192, 3) and torch.isfinite(image(values)).all()
    (saved,) = values["9"].ui["images"]
    assert (executor.env.paths.output / saved["filename"]).is_file()
    assert (latent(values) - latent(plain)).abs().max() > 1e-3


def test_area_composition_with_strength_and_percentages(executor):
    """The variant with a weakened whole-image prompt (ConditioningSetAreaStrength) and areas given as
    fractions of the image (ConditioningSetAreaPercentage): left and right halves, overlapping in the middle."""
    def pct(node_id, source, width, x):
        return {node_id: {"class_type": "ConditioningSetAreaPercentage", "inputs": {
            "conditioning": [source, 0], "width": width, "height": 1.0, "x": x, "y": 0.0, "strength": 1.0}}}

    nodes = {**text("10", "a red house"), **text("11", "a blue car"),
             "12": {"class_type": "ConditioningSetAreaStrength", "inputs": {"conditioning": ["6", 0], "strength": 0.3}},
             **pct("13", "10", 0.6, 0.0), **pct("14", "11", 0.6, 0.4),
             **combine("15", "12", "13"), **combine("16", "15", "14")}
    values = execute(executor, base_workflow(("16", 0), extra=nodes))
    assert image(values).shape == (1, 128, 128, 3) and torch.isfinite(latent(values)).all()
    assert values["13"].outputs[0][0][0][1]["area"] == ("percentage", 1.0, 0.6, 0.0, 0.0)
    weaker = execute(executor, base_workflow(("15", 0), extra={**nodes, "12": {
        "class_type": "ConditioningSetAreaStrength", "inputs": {"conditioning": ["6", 0], "strength": 1.0}}}))
    assert (latent(values) - latent(weaker)).abs().max() > 1e-3  # the strength changes the blend


def test_area_composition_square(executor):
    """The "area composition square" style: four square areas tiling a square image, each with its own prompt,
    over a whole-image prompt."""
    prompts = ["sun", "moon", "forest", "sea"]
    nodes = {}
    for i, prompt in enumerate(prompts):
        nodes.update(text(f"1{i}", prompt))
        nodes.update(area(f"2{i}", f"1{i}", 64, 64, 64 * (i % 2), 64 * (i // 2)))
    nodes.update(combine("30", "6", "20"))
    for i in range(1, 4):
        nodes.update(combine(f"3{i}", f"3{i - 1}", f"2{i}"))
    values = execute(executor, base_workflow(("33", 0), extra=nodes))
    assert image(values).shape == (1, 128, 128, 3) and torch.isfinite(latent(values)).all()
    squares = execute(executor, base_workflow(("33", 0), extra={**nodes, **text("12", "snow")}))
    # another prompt in the lower-left square changes that square most
    diff = (latent(values) - latent(squares)).abs().mean(dim=(0, 1))
    assert diff[8:, :8].mean() > 2 * diff[:8, 8:].mean()


def test_full_frame_area_or_mask_equals_plain_conditioning(executor):
    plain = latent(execute(executor, base_workflow(("6", 0))))
    full = latent(execute(executor, base_workflow(("10", 0), extra=area("10", "6", 128, 128, 0, 0, 1.0))))
    assert close(full, plain)
    masked = execute(executor, base_workflow(("11", 0), extra={
        "10": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 128, "height": 128}},
        "11": {"class_type": "ConditioningSetMask", "inputs": {
            "conditioning": ["6", 0], "mask": ["10", 0], "strength": 1.0, "set_cond_area": "default"}}}))
    assert close(latent(masked), plain)
