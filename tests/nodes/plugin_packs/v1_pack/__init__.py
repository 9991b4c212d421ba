"""A ComfyUI-style V1 node pack written for the tests: it uses only torch, numpy and the V1 contract.

It exercises list inputs and outputs, IS_CHANGED (a file hash and NaN), VALIDATE_INPUTS (own range checks and
link types), hidden inputs, `{"ui": ..., "result": ...}` returns, per-instance state, an "any" type, a numeric
combo and an async FUNCTION. A relative import checks that the pack is imported as a package.
"""
import asyncio
import hashlib
import os

import torch

from .helpers import scale

CALLS = []


class AnyType(str):
    """ComfyUI packs' "any" idiom: a type that never differs from another."""

    def __ne__(self, other):
        return False


ANY = AnyType("*")


class Brightness:
    DESCRIPTION = "Multiply pixel values."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "amount": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 4.0, "step": 0.01})},
                "optional": {"mask": ("MASK",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "apply"
    CATEGORY = "v1test/image"

    def apply(self, image, amount, mask=None):
        CALLS.append(("Brightness", amount))
        return (scale(image, amount),)


class MakeWords:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "a b c", "multiline": False}),
                             "repeat": ([1, 2, 4], {"default": 1})}}

    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("words", "count")
    OUTPUT_IS_LIST = (True, False)
    FUNCTION = "split"
    CATEGORY = "v1test/text"

    def split(self, text, repeat):
        assert isinstance(repeat, int), "numeric combo options reach the pack as they were declared"
        words = text.split() * repeat
        return (words, len(words))


class Shout:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"word": ("STRING", {"forceInput": True}), "suffix": ("STRING", {"default": "!"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "shout"
    CATEGORY = "v1test/text"

    def shout(self, word, suffix):
        CALLS.append(("Shout", word))
        return (word.upper() + suffix,)


class JoinWords:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"words": ("STRING", {"forceInput": True}), "sep": ("STRING", {"default": " "})},
                "hidden": {"prompt": "PROMPT", "extra": "EXTRA_PNGINFO", "node": "UNIQUE_ID"}}

    INPUT_IS_LIST = True
    RETURN_TYPES = ("STRING",)
    FUNCTION = "join"
    OUTPUT_NODE = True
    CATEGORY = "v1test/text"

    def join(self, words, sep, prompt, extra, node):
        joined = sep[0].join(words)
        seen = f"node={node[0]} nodes_in_prompt={len(prompt[0])} extra={sorted((extra[0] or {}).keys())}"
        return {"ui": {"text": [joined, seen]}, "result": (joined,)}


class Counter:
    """Counts its calls on the instance: ComfyUI keeps one instance per node id across prompts."""

    def __init__(self):
        self.calls = 0

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"anything": (ANY,)}}

    @classmethod
    def IS_CHANGED(cls, anything):
        return float("NaN")

    RETURN_TYPES = ("INT",)
    FUNCTION = "count"
    OUTPUT_NODE = True
    CATEGORY = "v1test/utils"

    def count(self, anything):
        self.calls += 1
        return {"ui": {"calls": [self.calls]}, "result": (self.calls,)}


class FileStamp:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    RETURN_TYPES = ("STRING",)
    FUNCTION = "read"
    CATEGORY = "v1test/utils"

    def read(self, path):
        CALLS.append(("FileStamp", os.path.basename(path)))
        with open(path) as f:
            return (f.read(),)


class Limit:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": 0, "max": 10}),
                             "source": ("FLOAT,INT",)}}

    @classmethod
    def VALIDATE_INPUTS(cls, value, input_types):
        if value is not None and value > 100:
            return f"value {value} is over 100"
        if input_types.get("source") not in (None, "FLOAT", "INT", "STRING"):
            return f"cannot read {input_types['source']}"
        return True

    RETURN_TYPES = ("INT",)
    FUNCTION = "limit"
    CATEGORY = "v1test/utils"

    def limit(self, value, source):
        return (value + int(float(source)),)


class AsyncDouble:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"default": 2, "min": -100, "max": 100})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "double"
    CATEGORY = "v1test/utils"

    async def double(self, x):
        await asyncio.sleep(0)
        return (x * 2,)


class MeanColor:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "mean"
    OUTPUT_NODE = True
    CATEGORY = "v1test/image"

    def mean(self, image):
        value = float(torch.mean(image))
        return {"ui": {"text": [f"{value:.4f}"]}, "result": (value,)}


NODE_CLASS_MAPPINGS = {"V1Brightness": Brightness, "V1MakeWords": MakeWords, "V1Shout": Shout,
                       "V1JoinWords": JoinWords, "V1Counter": Counter, "V1FileStamp": FileStamp,
                       "V1Limit": Limit, "V1AsyncDouble": AsyncDouble, "V1MeanColor": MeanColor}
NODE_DISPLAY_NAME_MAPPINGS = {"V1Brightness": "Brightness (V1)", "V1JoinWords": "Join Words"}
WEB_DIRECTORY = "./js"
__version__ = "1.4.0"
