"""The CLIP handle: prompt text → conditioning tensors for SD1, SD2 and SDXL (reference §6.10, §6.3).

`TextEncoder(family, models, layer=None)` wraps already-loaded transformers text models (the checkpoint loader
builds them, keyed "l"/"h"/"g"; this module never loads files) with the facts of their model family, which
`nodes.sd.families` keeps (`ModelFamily.text_encoders`):

| family | encoders (key: class) | pad | default layer | LayerNorm on a hidden layer | cond dim | pooled |
|---|---|---|---|---|---|---|
| `sd1` | `l`: CLIPTextModel | 49407 | last | yes | 768 | L, unprojected |
| `sd2` | `h`: CLIPTextModel | 0 | −2 | yes | 1024 | H, unprojected |
| `sdxl` | `l`: CLIPTextModel, `g`: CLIPTextModelWithProjection | 49407 / 0 | −2 / −2 | no | 768 + 1280 = 2048 | G, projected (1280) |
| `sdxl_refiner` | `g`: CLIPTextModelWithProjection | 0 | −2 | no | 1280 | G, projected (1280) |

SDXL uses the penultimate layer of both encoders without the final LayerNorm (reference §6.10.7; the SDXL
release code and diffusers' `hidden_states[-2]` agree). SD2 uses the penultimate layer of ViT-H *with* the final
LayerNorm, as the SD2 release code does. The sd2 pooled vector (unused by SD2 UNets) is the unprojected one.

Public API:

* `encode(text, embeddings=None) -> TextEncoding(cond [1, 77·k, D] float32, pooled [1, P] float32)` —
  CLIPTextEncode; `embeddings` (an `EmbeddingLibrary`) resolves `embedding:NAME` words, None leaves them text.
* `encode_sdxl(text_g, text_l, embeddings=None)` — CLIPTextEncodeSDXL's separate texts.
* `with_last_layer(n)` — CLIPSetLastLayer: a clone sharing the weights that reads hidden layer `n` (−24 … −1) of
  every encoder; `n` beyond an encoder's depth falls back to its final output.
* `tokenize(text, embeddings=None)`, `encode_tokens(tokens)` — the two halves of `encode`, for callers that
  edit tokens. The encoders' token lists are brought to one chunk count with empty chunks (they differ when
  separate texts are given, or when an embedding fits one encoder's width and not the other's).

Encoding rules (§6.10.3–6): the chunks of one encoder, plus one empty sequence `[start, end, pad …]` when any
weight is ≠ 1, run as one batch with only the causal attention mask. A weighted token becomes
`z_empty + (z − z_empty)·w` at its position (no renormalisation). Chunks are concatenated along the token axis;
the pooled vector comes from the first chunk's end token in the final (LayerNormed) output, through the text
projection where the family says so. Results are float32 on the CPU whatever the models' device and dtype
(the sampler moves them); running fp16 weights in float32 is the device manager's job, not this module's.

Embedding vectors (chunks with `vectors`): the batch's token-table rows are looked up as usual, the vectors
(cast to the table's dtype) replace the rows at their positions, and the result is handed to the model's own
embeddings module as `inputs_embeds` while the model runs on the same ids. transformers 5's `CLIPTextModel`
takes only `input_ids`, but its `CLIPTextEmbeddings` takes `inputs_embeds` and adds the position embeddings to it
as to looked-up rows; a forward pre-hook, present only during that call and only for that batch's ids, passes it
in. Everything after — positions, causal mask, layers, final LayerNorm, hidden states — is the model's own code,
and the pooled vector is still read at the end token. Batches without vectors take the unchanged path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, PreTrainedModel

from nodes.sd.embeddings import EmbeddingLibrary
from nodes.sd.families import ModelFamily, TextEncoderSpec, family_spec
from nodes.sd.tokenizer import END_ID, PromptTokenizer, TokenChunk

#: CLIPSetLastLayer's range.
MIN_LAYER, MAX_LAYER = -24, -1


TextModel = CLIPTextModel | CLIPTextModelWithProjection


class TextEncoding(NamedTuple):
    """CLIPTextEncode's result: `cond` [1, 77·k, D] and `pooled` [1, P], float32 on the CPU."""

    cond: torch.Tensor
    pooled: torch.Tensor


class TextEncoder:
    """A CLIP handle: one family's tokenizers and text models, plus the CLIPSetLastLayer choice.

    Args:
        family: the checkpoint's `ModelFamily` (its `text_encoders` say pad token, default layer, LayerNorm,
            pooled projection and `layers_missing` per encoder), or a family name (`"sd1"`, `"sd2"`, `"sdxl"`).
        models: the loaded text models by key (`"l"`, `"h"`, `"g"`); keys the family does not use are ignored.
        layer: CLIPSetLastLayer's `stop_at_clip_layer` (−24 … −1), or None for the family's default.
    """

    def __init__(self, family: ModelFamily | str, models: Mapping[str, PreTrainedModel], layer: int | None = None):
        self.family = family_spec(family) if isinstance(family, str) else family
        if layer is not None and not MIN_LAYER <= layer <= MAX_LAYER:
            raise ValueError(f"CLIP layer must be in {MIN_LAYER}..{MAX_LAYER}, got {layer}")
        self.layer = layer
        self.encoders = self.family.text_encoders
        self.models: dict[str, TextModel] = {}
        for spec in self.encoders:
            model = models.get(spec.key)
            wanted = CLIPTextModelWithProjection if spec.projected_pooled else (CLIPTextModel, CLIPTextModelWithProjection)
            if not isinstance(model, wanted):
                raise TypeError(f"{self.family.name} needs text encoder {spec.key!r} as {wanted}, got {type(model)}")
            self.models[spec.key] = model
        self.tokenizers = {spec.key: PromptTokenizer(spec.pad_token_id) for spec in self.encoders}

    def with_last_layer(self, layer: int) -> TextEncoder:
        """CLIPSetLastLayer: a clone reading hidden layer `layer` (−1 = last, −2 = "clip skip 2"); shares weights."""
        return TextEncoder(self.family, self.models, layer=layer)

    def tokenize(self, text: str, embeddings: EmbeddingLibrary | None = None) -> dict[str, list[TokenChunk]]:
        """Chunks of `text` for every encoder of the family, equal chunk counts."""
        return self._equal_counts({key: self._tokenize(key, text, embeddings) for key in self.tokenizers})

    def tokenize_sdxl(
        self, text_g: str, text_l: str, embeddings: EmbeddingLibrary | None = None
    ) -> dict[str, list[TokenChunk]]:
        """CLIPTextEncodeSDXL's tokens: G from `text_g`, L from `text_l`, equal chunk counts."""
        tokens = {"g": self._tokenize("g", text_g, embeddings), "l": self._tokenize("l", text_l, embeddings)}
        return self._equal_counts(tokens)

    def _tokenize(self, key: str, text: str, embeddings: EmbeddingLibrary | None) -> list[TokenChunk]:
        source = None
        if embeddings is not None:
            source = embeddings.for_encoder(key, self.models[key].get_input_embeddings().embedding_dim)
        return self.tokenizers[key].tokenize(text, source)

    def _equal_counts(self, tokens: dict[str, list[TokenChunk]]) -> dict[str, list[TokenChunk]]:
        count = max(len(chunks) for chunks in tokens.values())
        for key, chunks in tokens.items():
            chunks.extend([self.tokenizers[key].empty_chunk()] * (count - len(chunks)))
        return tokens

    def encode(self, text: str, embeddings: EmbeddingLibrary | None = None) -> TextEncoding:
        """CLIPTextEncode: conditioning and pooled vector for a prompt in the weighting syntax."""
        return self.encode_tokens(self.tokenize(text, embeddings))

    def encode_sdxl(self, text_g: str, text_l: str, embeddings: EmbeddingLibrary | None = None) -> TextEncoding:
        """CLIPTextEncodeSDXL's encoding (the size fields go to `denoiser.sdxl_time_ids`)."""
        if set(self.tokenizers) != {"l", "g"}:
            raise ValueError(f"encode_sdxl needs an SDXL text encoder, this one is {self.family.name}")
        return self.encode_tokens(self.tokenize_sdxl(text_g, text_l, embeddings))

    def encode_tokens(self, tokens: Mapping[str, Sequence[TokenChunk]]) -> TextEncoding:
        """Encode chunks for every encoder and join them on the feature axis (cut to the shortest)."""
        conds, pooled = [], None
        for spec in self.encoders:  # the pooled vector comes from the last one (SD1 L, SD2 H, SDXL G)
            result = encode_chunks(self.models[spec.key], spec, self.layer, tokens[spec.key])
            conds.append(result.cond)
            pooled = result.pooled
        length = min(cond.shape[1] for cond in conds)
        return TextEncoding(torch.cat([cond[:, :length] for cond in conds], dim=-1), pooled)


def encode_chunks(
    model: TextModel, spec: TextEncoderSpec, layer: int | None, chunks: Sequence[TokenChunk]
) -> TextEncoding:
    """One encoder: run the chunks (+ the empty sequence if weighted) as one batch, weight, concatenate.

    `layer` None means the family's default layer (`spec.default_layer`).
    """
    if not chunks:
        raise ValueError("nothing to encode: at least one chunk is needed")
    weighted = any(chunk.is_weighted for chunk in chunks)
    batch = list(chunks) + ([PromptTokenizer(spec.pad_token_id).empty_chunk()] if weighted else [])
    ids = torch.tensor([chunk.ids for chunk in batch], dtype=torch.long, device=model.device)
    with torch.no_grad(), _embedding_input(model, ids, batch):
        output = model(input_ids=ids, output_hidden_states=True)
        final = output.last_hidden_state  # after the final LayerNorm
        hidden = _select_layer(model, spec, layer, output.hidden_states, final)
        # Pool (and project) every row, then keep the first: a [1, D] matmul can round differently from the
        # batched one the model itself (and ComfyUI) computes.
        ends = torch.tensor([chunk.ids.index(END_ID) for chunk in batch], device=final.device)
        pooled = final[torch.arange(len(batch), device=final.device), ends]
        if spec.projected_pooled:
            pooled = model.text_projection(pooled)
        pooled = pooled[:1]
    z = hidden.float()
    if weighted:
        z = _apply_weights(z[: len(chunks)], z[-1], chunks)
    cond = z.reshape(1, -1, z.shape[-1]).cpu()
    return TextEncoding(cond, pooled.float().cpu())


def _select_layer(
    model: TextModel, spec: TextEncoderSpec, layer: int | None, hidden_states, final: torch.Tensor
) -> torch.Tensor:
    """The hidden state CLIPSetLastLayer asks for; `hidden_states[0]` is the embedding output.

    Layer n is read at hidden-state index n + `spec.layers_missing` (SD2 diffusers folders lack ViT-H's last
    layer); a layer that is missing falls back to the deepest one present.
    """
    index = spec.default_layer if layer is None else layer
    index = min(index + spec.layers_missing, -1)
    if -index > len(hidden_states) - 1:
        # Deeper than the model: ComfyUI falls back to the final output, as if no layer had been set.
        return final
    hidden = hidden_states[index]
    return _final_layer_norm(model)(hidden) if spec.final_layer_norm else hidden


def _final_layer_norm(model: TextModel) -> torch.nn.Module:
    return _text_submodule(model, "final_layer_norm")


def _text_submodule(model: TextModel, name: str) -> torch.nn.Module:
    # Text-model parts sit at `<name>` (transformers 5 CLIPTextModel) or `text_model.<name>`
    # (CLIPTextModelWithProjection; transformers 4 CLIPTextModel).
    modules = dict(model.named_modules())
    return modules[name] if name in modules else modules[f"text_model.{name}"]


@contextmanager
def _embedding_input(model: TextModel, ids: torch.Tensor, batch: Sequence[TokenChunk]) -> Iterator[None]:
    """While the model runs on `ids`, its embeddings module gets the rows with the chunks' vectors spliced in."""
    if not any(chunk.vectors for chunk in batch):
        yield
        return
    rows = model.get_input_embeddings()(ids)
    for row, chunk in enumerate(batch):
        for position, vector in chunk.vectors:
            rows[row, position] = vector.to(device=rows.device, dtype=rows.dtype)

    def pass_rows(module, args, kwargs):
        given = kwargs.get("input_ids")
        # Only this batch (the model views `ids`, keeping its storage): another thread's call on the same model
        # during this one goes through untouched.
        if given is None or given.data_ptr() != ids.data_ptr() or given.shape != rows.shape[:-1]:
            return None
        return args, {**kwargs, "inputs_embeds": rows}

    handle = _text_submodule(model, "embeddings").register_forward_pre_hook(pass_rows, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _apply_weights(z: torch.Tensor, z_empty: torch.Tensor, chunks: Sequence[TokenChunk]) -> torch.Tensor:
    """z[j] ← (z[j] − z_empty[j])·w + z_empty[j] where w ≠ 1; other positions are left bit-identical."""
    weights = torch.tensor([chunk.weights for chunk in chunks], dtype=z.dtype, device=z.device).unsqueeze(-1)
    interpolated = (z - z_empty) * weights + z_empty
    return torch.where(weights != 1.0, interpolated, z)
