"""A V3 pack (comfy_api.latest): lazy inputs, node expansion with GraphBuilder, an async output node."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io, ui
from comfy_execution.graph_utils import GraphBuilder


class LazySwitch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3LazySwitch", display_name="Lazy switch", category="v3_pack",
            inputs=[io.Boolean.Input("use_first", default=True),
                    io.Image.Input("first", lazy=True), io.Image.Input("second", lazy=True)],
            outputs=[io.Image.Output(display_name="chosen")])

    @classmethod
    def check_lazy_status(cls, use_first, first=None, second=None):
        if use_first and first is None:
            return ["first"]
        if not use_first and second is None:
            return ["second"]
        return []

    @classmethod
    def execute(cls, use_first, first=None, second=None):
        return io.NodeOutput(first if use_first else second)


class RepeatInvert(io.ComfyNode):
    """Inverts an image `times` times, by expanding into a chain of ImageInvert nodes."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3RepeatInvert", category="v3_pack", enable_expand=True,
            inputs=[io.Image.Input("image", raw_link=True), io.Int.Input("times", default=2, min=0, max=8)],
            outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, image, times):
        graph = GraphBuilder()
        current = image
        for _ in range(times):
            current = graph.node("ImageInvert", image=current).out(0)
        return io.NodeOutput(current, expand=graph.finalize())


class Mode:
    ADD = "add"
    MULTIPLY = "multiply"


class AsyncArithmetic(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3AsyncArithmetic", display_name="Async arithmetic", category="v3_pack", is_output_node=True,
            inputs=[io.Int.Input("a", default=1, min=0, max=100),
                    io.Float.Input("b", default=0.5, optional=True, tooltip="the second operand"),
                    io.Combo.Input("mode", options=[Mode.ADD, Mode.MULTIPLY], default=Mode.ADD)],
            outputs=[io.Float.Output(tooltip="the result")], hidden=[io.Hidden.unique_id])

    @classmethod
    def validate_inputs(cls, a):
        return True if a != 13 else "a must not be 13"

    @classmethod
    def fingerprint_inputs(cls, a, **kwargs):
        return a

    @classmethod
    @override
    async def execute(cls, a, mode, b=0.5):
        value = a + b if mode == Mode.ADD else a * b
        return io.NodeOutput(value, ui=ui.PreviewText(f"{cls.hidden.unique_id}: {value}"))


class PreviewNegative(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3PreviewNegative", category="v3_pack", is_output_node=True,
                         inputs=[io.Image.Input("images")])

    @classmethod
    def execute(cls, images):
        return io.NodeOutput(ui=ui.PreviewImage(1.0 - images, cls=cls))


class SplitText(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3SplitText", category="v3_pack",
                         inputs=[io.String.Input("text", multiline=True), io.String.Input("separator", default=",")],
                         outputs=[io.String.Output(is_output_list=True)])

    @classmethod
    def execute(cls, text, separator):
        return io.NodeOutput([part.strip() for part in text.split(separator)])


class JoinText(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3JoinText", category="v3_pack", is_input_list=True, is_output_node=True,
                         inputs=[io.String.Input("texts", force_input=True), io.String.Input("glue", default="+")],
                         outputs=[io.String.Output()])

    @classmethod
    def execute(cls, texts, glue):
        joined = glue[0].join(texts)
        return io.NodeOutput(joined, ui=ui.PreviewText(joined))


class V3PackExtension(ComfyExtension):
    @override
    async def get_node_list(self):
        return [LazySwitch, RepeatInvert, AsyncArithmetic, PreviewNegative, SplitText, JoinText]


async def comfy_entrypoint():
    return V3PackExtension()
