"""CLIP tokenization, offline: the shipped BPE vocabulary, weighted prompts, 77-token chunks.

The job: turn prompt text into the token ids and per-token weights the CLIP text encoders read, exactly as
ComfyUI does (reference §6.10.1 and §6.10.3), with no network.

* Vocabulary. `vocab/bpe_simple_vocab_16e6.txt.gz` (OpenAI's CLIP merges, MIT, see `vocab/LICENSE`) is package
  data. `clip_vocab_and_merges()` builds the 49,408-entry vocabulary from it in the standard CLIP order (256 byte
  symbols, the same with `</w>`, one entry per merge, then `<|startoftext|>` = 49406 and `<|endoftext|>` =
  49407), once per process. `load_clip_tokenizer(pad_token)` builds transformers' `CLIPTokenizer` from that in
  memory and checks its size: with transformers 5 a tokenizer built from bare files can come out empty without
  any error, so a wrong size raises here instead of producing garbage ids later.
* Padding. CLIP-L (SD1, SDXL's first encoder) pads with the end token 49407; the OpenCLIP encoders (SD2's
  ViT-H, SDXL's ViT-bigG) pad with id 0 (`"!"`). `PAD_WITH_END` / `PAD_WITH_ZERO` name the two.
* Weighted prompts. `PromptTokenizer(pad_id).tokenize(text)` parses the weights (`prompt_weights`), tokenizes
  each weighted segment on its own without start/end tokens (one "token group" per segment), and packs the
  groups into chunks with `chunk_token_groups`.
* Chunking rules: a chunk is `[start] + up to 75 tokens + [end] + padding`, 77 ids. A group of 8 or more tokens
  that does not fit is split at the boundary; a shorter group moves whole to the next chunk (the current chunk
  is closed with end + padding). The last chunk is padded to 77. Empty text gives one chunk
  `[start, end, pad × 75]`. Start, end and padding always weigh 1.0.

* Embeddings (§6.10.2). `tokenize(text, embeddings)` with an `EmbeddingSource` (one encoder's view of
  `models/embeddings`, see `nodes.sd.embeddings`) cuts each segment at `embedding:` words
  (`prompt_weights.split_embedding_words`): the text before, the embedding's vectors and the text after become
  separate token groups, all with the segment's weight. A name the source skips (not found, wrong width) leaves
  only the text around it. Without a source, `embedding:` is ordinary text, as in ComfyUI without an embeddings
  folder. An embedding group moves whole to the next chunk when it does not fit, unless it is longer than a
  whole chunk (75 vectors), which is split at chunk boundaries like a long text group. In a `TokenChunk` an
  embedding position holds `EMBEDDING_SLOT_ID` in `ids` and its vector in `vectors`; its weight is the segment's.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import torch
from tokenizers import Tokenizer
from transformers import CLIPTokenizer

from nodes.sd.prompt_weights import EMBEDDING_PREFIX, WeightedSegment, parse_prompt_weights, split_embedding_words

VOCAB_FILE = Path(__file__).with_name("vocab") / "bpe_simple_vocab_16e6.txt.gz"

VOCAB_SIZE = 49408
START_ID = 49406
END_ID = 49407
CHUNK_LENGTH = 77
#: Groups at least this long are split across chunk boundaries; shorter ones move whole.
SPLIT_GROUP_MIN = 8

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
#: Pad token strings for `load_clip_tokenizer` and pad ids for `PromptTokenizer`.
PAD_TOKEN_END = END_TOKEN
PAD_TOKEN_ZERO = "!"
PAD_WITH_END = END_ID
PAD_WITH_ZERO = 0
#: The id standing at an embedding vector's position. Its table row is replaced by the vector before the model
#: runs; it must not be END_ID, whose first position is where the pooled vector is read.
EMBEDDING_SLOT_ID = 0

#: A token before chunking: an id or an embedding vector [D], and its weight.
Token = tuple[int | torch.Tensor, float]

# The file holds a header line, then 262,144 merges; CLIP uses the first 49152 - 256 - 2 of them so that the
# vocabulary comes out at 49,408 entries.
_MERGE_COUNT = 49152 - 256 - 2


def _byte_symbols() -> list[str]:
    """The 256 printable characters byte-level BPE uses for bytes 0..255, in vocabulary order.

    Printable Latin-1 bytes stand for themselves (listed first, ascending); the other bytes are mapped to code
    points from 256 upwards, in ascending byte order, and listed after them.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary (token → id) and merge list, built from the shipped BPE file."""
    with gzip.open(VOCAB_FILE, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + _MERGE_COUNT]]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START_TOKEN, END_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or vocab[START_TOKEN] != START_ID or vocab[END_TOKEN] != END_ID:
        raise RuntimeError(f"CLIP vocabulary built from {VOCAB_FILE} is malformed ({len(vocab)} entries)")
    return vocab, merges  # type: ignore[return-value]


@lru_cache(maxsize=None)
def load_clip_tokenizer(pad_token: str = PAD_TOKEN_END) -> CLIPTokenizer:
    """transformers' `CLIPTokenizer` over the shipped vocabulary, `model_max_length` 77.

    `pad_token` is `PAD_TOKEN_END` for CLIP-L and `PAD_TOKEN_ZERO` for OpenCLIP encoders; it matters only to
    callers that pad through transformers (e.g. a diffusers pipeline), `PromptTokenizer` pads by itself.
    The instance is cached: do not change its settings.
    """
    vocab, merges = clip_vocab_and_merges()
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad_token, model_max_length=CHUNK_LENGTH)
    size = len(tokenizer)
    if size != VOCAB_SIZE or tokenizer.bos_token_id != START_ID or tokenizer.eos_token_id != END_ID:
        raise RuntimeError(
            f"CLIPTokenizer came out with {size} tokens (expected {VOCAB_SIZE}), start id {tokenizer.bos_token_id}, "
            f"end id {tokenizer.eos_token_id}: this transformers version did not take the vocabulary"
        )
    return tokenizer


@lru_cache(maxsize=None)
def _private_backend() -> Tokenizer:
    """Our own copy of the Rust tokenizer with padding and truncation off.

    The transformers wrapper sets padding and truncation on its backend at every call made with those options
    (a diffusers pipeline does), and that state persists: sharing the backend made prompts encode differently
    after someone else had tokenized.
    """
    backend = Tokenizer.from_str(load_clip_tokenizer().backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


@dataclass(frozen=True, eq=False)
class TokenChunk:
    """One 77-token window: the ids the encoder reads, the weight of each position, and embedding vectors.

    `vectors` holds `(position, vector [D])` for positions whose input is an embedding vector rather than the
    token table's row of `ids[position]` (which is `EMBEDDING_SLOT_ID` there).
    """

    ids: tuple[int, ...]
    weights: tuple[float, ...]
    vectors: tuple[tuple[int, torch.Tensor], ...] = ()

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.weights):
            raise ValueError(f"{len(self.ids)} ids but {len(self.weights)} weights")

    @property
    def is_weighted(self) -> bool:
        return any(weight != 1.0 for weight in self.weights)

    def __eq__(self, other: object) -> bool:
        # Written out because tuples of tensors cannot be compared with ==.
        if not isinstance(other, TokenChunk):
            return NotImplemented
        return (self.ids, self.weights) == (other.ids, other.weights) and len(self.vectors) == len(other.vectors) \
            and all(p == q and torch.equal(v, w) for (p, v), (q, w) in zip(self.vectors, other.vectors))

    def __hash__(self) -> int:
        return hash((self.ids, self.weights, tuple(position for position, _ in self.vectors)))


def chunk_token_groups(
    groups: Sequence[Sequence[Token]],
    pad_id: int,
    *,
    start_id: int = START_ID,
    end_id: int = END_ID,
    length: int = CHUNK_LENGTH,
) -> list[TokenChunk]:
    """Pack token groups (lists of `(id or vector, weight)`) into `length`-token chunks (rules in the module doc)."""
    room = length - 2  # tokens between start and end
    chunks: list[TokenChunk] = []
    current: list[Token] = []

    def close() -> None:
        body = [(start_id, 1.0), *current, (end_id, 1.0)]
        body += [(pad_id, 1.0)] * (length - len(body))
        vectors = tuple((p, t) for p, (t, _) in enumerate(body) if isinstance(t, torch.Tensor))
        ids = tuple(EMBEDDING_SLOT_ID if isinstance(t, torch.Tensor) else t for t, _ in body)
        chunks.append(TokenChunk(ids, tuple(w for _, w in body), vectors))
        current.clear()

    for group in groups:
        pending = list(group)
        embedding = bool(pending) and isinstance(pending[0][0], torch.Tensor)
        splittable = len(pending) > room if embedding else len(pending) >= SPLIT_GROUP_MIN
        while len(current) + len(pending) > room:
            if splittable:
                free = room - len(current)
                current.extend(pending[:free])
                pending = pending[free:]
            close()
        current.extend(pending)
    close()
    return chunks


class EmbeddingSource(Protocol):
    """One text encoder's view of the embeddings folder (`nodes.sd.embeddings.EncoderEmbeddings`)."""

    def take(self, word: str) -> tuple[torch.Tensor | None, str]:
        """`word` is the text after `embedding:`; returns the vectors [n, D] (None: skip it, with a warning
        already given) and the text left after the name, to be tokenized as ordinary text."""


@dataclass(frozen=True)
class PromptTokenizer:
    """Weighted prompt → chunks for one encoder; `pad_id` is `PAD_WITH_END` (CLIP-L) or `PAD_WITH_ZERO`."""

    pad_id: int

    def token_ids(self, text: str) -> list[int]:
        """Ids of `text` without start/end tokens (normalised, lower-cased, byte-level BPE)."""
        # The backend is called directly: the transformers wrapper warns about texts longer than 77 tokens,
        # which are normal here since chunking comes after.
        return _private_backend().encode(text, add_special_tokens=False).ids

    def tokenize(self, text: str, embeddings: EmbeddingSource | None = None) -> list[TokenChunk]:
        """Chunks of a prompt in the weighting syntax; at least one chunk.

        embeddings: where `embedding:NAME` words find their vectors; None tokenizes them as ordinary text.
        """
        groups: list[list[Token]] = []
        for segment in parse_prompt_weights(text):
            groups.extend(self._segment_groups(segment, embeddings))
        return chunk_token_groups(groups, self.pad_id)

    def _segment_groups(self, segment: WeightedSegment, embeddings: EmbeddingSource | None) -> list[list[Token]]:
        """One segment's token groups: the whole text, or text and embedding pieces in prompt order."""
        if embeddings is None:
            return [[(i, segment.weight) for i in self.token_ids(segment.text)]]
        groups: list[list[Token]] = []
        for piece in split_embedding_words(segment.text):
            if piece.startswith(EMBEDDING_PREFIX):
                vectors, piece = embeddings.take(piece[len(EMBEDDING_PREFIX):])
                if vectors is not None:
                    groups.append([(vector, segment.weight) for vector in vectors])
            if piece:
                groups.append([(i, segment.weight) for i in self.token_ids(piece)])
        return groups

    def empty_chunk(self) -> TokenChunk:
        """`[start, end, pad × 75]`, the "empty prompt" sequence weights are interpolated from."""
        return chunk_token_groups([], self.pad_id)[0]
