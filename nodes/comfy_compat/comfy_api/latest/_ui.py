"""`comfy_api.latest.ui`: UI results a V3 node returns in `NodeOutput(ui=…)`.

`PreviewImage(image)` saves the images as previews with our PreviewImage node (temp folder, ComfyUI's names) and
shows them; `PreviewMask(mask)` does the same for a mask shown in grey; `PreviewText(text)` shows text;
`SavedImages(results)` shows images already saved (`SavedResult(filename, subfolder, type)`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class UIOutput:
    def as_dict(self) -> dict[str, list[Any]]:
        raise NotImplementedError


@dataclass(frozen=True)
class SavedResult:
    filename: str
    subfolder: str
    type: str


class SavedImages(UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False) -> None:
        self.results, self.is_animated = results, is_animated

    def as_dict(self) -> dict[str, list[Any]]:
        shown: dict[str, list[Any]] = {"images": [asdict(r) for r in self.results]}
        if self.is_animated:
            shown["animated"] = [True]
        return shown


class PreviewImage(UIOutput):
    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        self.image, self.animated = image, animated

    def as_dict(self) -> dict[str, list[Any]]:
        from nodes.comfy_face import core_classes

        shown = core_classes()["PreviewImage"]().save_images(self.image)["ui"]
        return {**shown, "animated": [self.animated]} if self.animated else shown


class PreviewMask(PreviewImage):
    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        image = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(image, animated)


class PreviewText(UIOutput):
    def __init__(self, value: str, **kwargs: Any) -> None:
        self.value = value

    def as_dict(self) -> dict[str, list[Any]]:
        return {"text": [self.value]}
