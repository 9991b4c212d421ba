"""A plugin written with latentloom's own node API; one of its V1 nodes is broken, one clashes with a built-in."""
from .nodes import Invert, Sum


class Broken:
    RETURN_TYPES = "IMAGE"  # not a tuple: refused, the other nodes still load
    FUNCTION = "go"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def go(self):
        return (None,)


class NotOurs:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ()
    FUNCTION = "go"

    def go(self):
        return ()


NODE_CLASS_MAPPINGS = {"NativeBroken": Broken, "SaveImage": NotOurs}
__all__ = ["Invert", "Sum"]
