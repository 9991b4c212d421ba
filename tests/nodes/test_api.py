"""Node declarations check themselves at import; the registry renders ComfyUI's /object_info shape."""
from __future__ import annotations

import enum
from typing import Annotated, Literal, NamedTuple

import pytest

from nodes.api import Context, Environment, Input, Node, NodeDeclarationError, node
from nodes.paths import DataPaths
from nodes.registry import Registry, json_schema, render_object_info
from nodes.types import Choices, Image, Latent, Mask, Model, types_compatible


class Sampler(enum.Enum):
    EULER = "euler"
    HEUN = "heun"


class Pair(NamedTuple):
    IMAGE: Image
    MASK: Mask


@node(category="sampling", version="1.2.3", aliases=("Short",), hidden=("PROMPT", "EXTRA_PNGINFO"))
class Example(Node):
    """Line one.

    More text."""

    model: Model = Input(tooltip="the model")
    seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True)
    cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01)
    text: str = Input("", multiline=True, dynamic_prompts=True)
    flag: bool = Input(True)
    sampler: Sampler = Input("euler")
    scheduler: Literal["normal", "karras"] = Input("normal")
    mask: Mask | None = Input(None, optional=True)

    def run(self, ctx: Context) -> Pair:
        return Pair(self.model, self.mask)


def env(tmp_path):
    return Environment(DataPaths(tmp_path))


def test_object_info_shape(tmp_path):
    info = render_object_info(Example.__node_spec__, env(tmp_path))
    req = info["input"]["required"]
    assert req["model"] == ["MODEL", {"tooltip": "the model"}]
    assert req["seed"] == ["INT", {"default": 0, "min": 0, "max": 18446744073709551615,
                                   "control_after_generate": True}]
    assert req["cfg"] == ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}]
    assert req["text"] == ["STRING", {"default": "", "multiline": True, "dynamicPrompts": True}]
    assert req["flag"] == ["BOOLEAN", {"default": True}]
    assert req["sampler"] == [["euler", "heun"], {"default": "euler"}]
    assert req["scheduler"] == [["normal", "karras"], {"default": "normal"}]
    assert info["input"]["optional"] == {"mask": ["MASK"]}
    assert info["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert info["input_order"]["required"][:3] == ["model", "seed", "cfg"]
    assert info["output"] == ["IMAGE", "MASK"] and info["output_name"] == ["IMAGE", "MASK"]
    assert info["output_is_list"] == [False, False]
    assert info["description"] == "Line one.\n\nMore text."
    assert (info["name"], info["display_name"], info["category"], info["output_node"], info["python_module"]) == \
        ("Example", "Example", "sampling", False, "nodes")


def test_registry_aliases_and_uniqueness(tmp_path):
    reg = Registry()
    reg.add(Example.__node_spec__)
    assert reg.get("Short") is reg.get("Example")
    listing = reg.object_info(env(tmp_path))
    assert listing["Short"]["name"] == "Short" and listing["Short"]["alias_of"] == "Example"
    with pytest.raises(NodeDeclarationError, match="already taken"):
        reg.add(Example.__node_spec__)


def test_dynamic_combo_is_computed_when_asked(tmp_path):
    @node(category="loaders", version="1.0.0")
    class Loader(Node):
        """Load a file."""

        name: Annotated[str, Choices(lambda e: e.paths.model_files("checkpoints"))] = Input()

        def run(self, ctx: Context) -> Model:
            return self.name

    environment = env(tmp_path)
    assert render_object_info(Loader.__node_spec__, environment)["input"]["required"]["name"] == [[]]
    (environment.paths.models("checkpoints") / "b.safetensors").write_bytes(b"")
    (environment.paths.models("checkpoints") / "sub").mkdir()
    (environment.paths.models("checkpoints") / "sub" / "a.ckpt").write_bytes(b"")
    (environment.paths.models("checkpoints") / "notes.txt").write_text("")
    assert render_object_info(Loader.__node_spec__, environment)["input"]["required"]["name"] == \
        [["b.safetensors", "sub/a.ckpt"]]


def test_json_schema_has_constraints():
    schema = json_schema(Example.__node_spec__)
    props = schema["properties"]
    assert props["seed"]["minimum"] == 0 and props["seed"]["maximum"] == 2**64 - 1
    assert props["model"]["type"] == "array" and props["model"]["maxItems"] == 2
    assert props["scheduler"]["enum"] == ["normal", "karras"]
    assert "model" in schema["required"] and "mask" not in schema["required"]
    assert schema["title"] == "Example"


def declare(body):
    namespace = {}
    exec(body, dict(globals()), namespace)  # annotations resolve in this module, as in a real node module
    return namespace


@pytest.mark.parametrize("body, message", [
    ("@node(category='c', version='1.0')\nclass A(Node):\n    '''d'''\n    def run(self, ctx: Context) -> Latent: ...",
     "not semantic"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    def run(self, ctx: Context) -> Latent: ...",
     "docstring"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    '''d'''\n    def run(self, ctx): ...",
     "return annotation"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    '''d'''\n    def run(self) -> Latent: ...",
     "must take"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    '''d'''\n    def run(self, ctx: Context) -> None: ...",
     "output=True"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    '''d'''\n    x: dict = Input()\n"
     "    def run(self, ctx: Context) -> Latent: ...", "not a socket type"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    '''d'''\n    x: int = Input(5, ge=0, le=3)\n"
     "    def run(self, ctx: Context) -> Latent: ...", "outside"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    '''d'''\n    m: Literal['a'] = Input('b')\n"
     "    def run(self, ctx: Context) -> Latent: ...", "not one of its options"),
    ("@node(category='c', version='1.0.0')\nclass A(Node):\n    '''d'''\n    m: Model = Input(None)\n"
     "    def run(self, ctx: Context) -> Latent: ...", "optional=True"),
    ("@node(category='c', version='1.0.0', hidden=('SECRET',))\nclass A(Node):\n    '''d'''\n"
     "    def run(self, ctx: Context) -> Latent: ...", "hidden"),
])
def test_broken_declarations_fail_at_import(body, message):
    with pytest.raises(NodeDeclarationError, match=message):
        declare(body)


def test_run_reading_an_undeclared_input_fails_at_import(tmp_path):
    source = tmp_path / "broken_pack.py"
    source.write_text(
        "from nodes.api import Context, Input, Node, node\n"
        "@node(category='c', version='1.0.0')\n"
        "class A(Node):\n"
        "    '''d'''\n"
        "    width: int = Input(1)\n"
        "    def run(self, ctx: Context) -> int:\n"
        "        return self.widht\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("broken_pack", source)
    with pytest.raises(NodeDeclarationError, match="self.widht"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_unknown_input_option_is_refused():
    with pytest.raises(NodeDeclarationError, match="unknown input option"):
        Input(0, multilin=True)


def test_type_compatibility_rules():
    assert types_compatible("IMAGE", "IMAGE") and types_compatible("*", "LATENT")
    assert types_compatible("FLOAT,INT", "INT") and not types_compatible("IMAGE", "MASK")


def test_context_show_progress_and_interrupt(tmp_path):
    import threading

    from nodes.api import Interrupted

    seen = []
    flag = threading.Event()
    ctx = Context(node_id="3", prompt_id="p", prompt={}, extra_data={}, env=env(tmp_path),
                  on_progress=lambda *a: seen.append(a), interrupt=flag)
    ctx.progress(1, 4)
    ctx.show(images=[1])
    ctx.show(images=[2], text=["t"])
    assert seen == [("3", 1, 4, None)] and ctx.ui == {"images": [1, 2], "text": ["t"]}
    flag.set()
    with pytest.raises(Interrupted):
        ctx.progress(2, 4)
