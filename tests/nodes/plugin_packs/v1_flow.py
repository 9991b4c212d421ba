"""A single-file V1 pack with a lazy input and node expansion in the V1 style."""


class LazyPick:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"index": ("INT", {"default": 0, "min": 0, "max": 1}),
                             "a": ("IMAGE", {"lazy": True}), "b": ("IMAGE", {"lazy": True})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "pick"
    CATEGORY = "v1_flow"

    def check_lazy_status(self, index, a=None, b=None):
        wanted = "a" if index == 0 else "b"
        return [wanted] if (a if index == 0 else b) is None else []

    def pick(self, index, a=None, b=None):
        return (a if index == 0 else b,)


class InvertTwiceExpanded:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {"rawLink": True}),
                             "node_ids": (["prefixed", "clashing"],)},
                "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("IMAGE", "INT")
    FUNCTION = "expand"
    CATEGORY = "v1_flow"

    def expand(self, image, node_ids, unique_id):
        first, second = (f"{unique_id}.inv1", f"{unique_id}.inv2") if node_ids == "prefixed" else ("1", "2")
        graph = {first: {"class_type": "ImageInvert", "inputs": {"image": image}},
                 second: {"class_type": "ImageInvert", "inputs": {"image": [first, 0]}}}
        return {"result": ([second, 0], 2), "expand": graph}


NODE_CLASS_MAPPINGS = {"V1LazyPick": LazyPick, "V1InvertTwiceExpanded": InvertTwiceExpanded}
