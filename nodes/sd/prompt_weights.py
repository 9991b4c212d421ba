"""Prompt weighting syntax: split a prompt into `(text, weight)` segments the way ComfyUI reads it.

Rules (reference §6.10.1), applied by `parse_prompt_weights`:

* `\\(` and `\\)` are escapes: they stand for a literal parenthesis and never open or close a group.
* A top-level `( … )` group weighs `outer × 1.1`. If the group's text has a `:` at a position > 0 (the last
  colon is the one looked at) and the text after it parses as a Python float, the weight is exactly that float:
  it replaces the outer weight instead of multiplying it, and the `:number` suffix is dropped from the text.
* Groups nest: the inside of a group is parsed again with the group's weight as the outer weight.
* `[ ]` means nothing. Nothing is renormalised.
* Unbalanced parentheses are not an error: they follow from the same scan. An unclosed `(` leaves the rest of the
  text as plain text (parenthesis included); a stray `)` pushes the depth below zero, so the rest of the prompt
  stays plain text. Empty text gives no segments; `()` gives nothing.
* Segments are not merged: `a (b) c` is three segments, and the tokenizer tokenizes each one on its own.

Textual-inversion references (§6.10.2) are found inside each segment afterwards: `split_embedding_words(text)`
cuts a segment before every `embedding:` that starts the segment or follows a space or a newline (that one
separator is dropped), so `(embedding:foo:1.2)` is a segment `embedding:foo` of weight 1.2. A piece that starts
with `EMBEDDING_PREFIX` holds the name and the text after it; `nodes.sd.embeddings` reads the name.

The public functions are `parse_prompt_weights(text) -> list[WeightedSegment]` and
`split_embedding_words(text) -> list[str]`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Escaped parentheses are swapped for private-use code points while parsing so that the structural scan and the
# weight suffix (`float()` rejects them) never see them, and swapped back in the output text.
_ESCAPED_OPEN = "\ue000"
_ESCAPED_CLOSE = "\ue001"

#: Weight factor of one level of plain `( … )`.
GROUP_FACTOR = 1.1

#: What introduces a textual-inversion embedding in a prompt (ComfyUI's syntax).
EMBEDDING_PREFIX = "embedding:"
_EMBEDDING_CUT = re.compile(f"[ \n](?={EMBEDDING_PREFIX})")


class WeightedSegment(NamedTuple):
    """A piece of prompt text and the weight its tokens get."""

    text: str
    weight: float


def parse_prompt_weights(text: str, weight: float = 1.0) -> list[WeightedSegment]:
    """Split `text` into weighted segments; `weight` is the weight of text outside any group."""
    hidden = text.replace("\\(", _ESCAPED_OPEN).replace("\\)", _ESCAPED_CLOSE)
    return [WeightedSegment(_unescape(piece), w) for piece, w in _parse(hidden, weight)]


def _parse(text: str, weight: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for piece in _split_top_level(text):
        if len(piece) >= 2 and piece[0] == "(" and piece[-1] == ")":
            inner, inner_weight = _group_weight(piece[1:-1], weight)
            out.extend(_parse(inner, inner_weight))
        else:
            out.append((piece, weight))
    return out


def _split_top_level(text: str) -> list[str]:
    """Cut text into plain runs and top-level `( … )` pieces by tracking the nesting depth.

    A `(` seen at depth 0 starts a new piece; the `)` that brings the depth back to 0 ends it. The depth is not
    clamped at zero: after a stray `)` it is negative, and the following parentheses only bring it back towards
    zero, so they end up inside plain text (ComfyUI's behaviour for unbalanced prompts).
    """
    pieces: list[str] = []
    current = ""
    depth = 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                pieces.append(current)
                current = ""
            current += char
            depth += 1
        elif char == ")":
            depth -= 1
            current += char
            if depth == 0:
                pieces.append(current)
                current = ""
        else:
            current += char
    if current:
        pieces.append(current)
    return pieces


def _group_weight(inner: str, outer: float) -> tuple[str, float]:
    """The text and weight of a group's inside: an explicit `:float` suffix, else outer × 1.1."""
    colon = inner.rfind(":")
    if colon > 0:
        try:
            return inner[:colon], float(inner[colon + 1 :])
        except ValueError:
            pass  # not a number: the colon is ordinary text
    return inner, outer * GROUP_FACTOR


def _unescape(text: str) -> str:
    return text.replace(_ESCAPED_OPEN, "(").replace(_ESCAPED_CLOSE, ")")


def split_embedding_words(text: str) -> list[str]:
    """Cut one segment's text into plain pieces and pieces starting with `embedding:` (empty pieces dropped).

    `"a embedding:foo photo, embedding:bar"` → `["a", "embedding:foo photo,", "embedding:bar"]`: the space or
    newline before each `embedding:` is the cut and disappears; `x,embedding:foo` is not cut (plain text).
    """
    return [piece for piece in _EMBEDDING_CUT.split(text) if piece]
