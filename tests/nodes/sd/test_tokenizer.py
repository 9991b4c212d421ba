"""Offline CLIP tokenization: vocabulary, known ids, padding per encoder, weights, 77-token chunking."""

from fnmatch import fnmatch
from pathlib import Path

import pytest

from nodes.sd.tokenizer import (
    END_ID,
    PAD_TOKEN_END,
    PAD_TOKEN_ZERO,
    PAD_WITH_END,
    PAD_WITH_ZERO,
    START_ID,
    VOCAB_FILE,
    VOCAB_SIZE,
    PromptTokenizer,
    TokenChunk,
    chunk_token_groups,
    clip_vocab_and_merges,
    load_clip_tokenizer,
)

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat", ARCHITECTURE.md / public CLIP ids
CAT, DOG = 2368, 1929


def test_vocabulary_is_package_data_and_complete():
    assert VOCAB_FILE.is_file()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["nodes.sd"]
    relative = VOCAB_FILE.relative_to(VOCAB_FILE.parents[1]).as_posix()
    assert any(fnmatch(relative, pattern) for pattern in patterns)
    assert (VOCAB_FILE.parent / "LICENSE").is_file()

    vocab, merges = clip_vocab_and_merges()
    assert len(vocab) == VOCAB_SIZE and len(merges) == 48894
    # Fixed points of the standard CLIP vocabulary order.
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["in"] == 512
    assert vocab["cat</w>"] == CAT and vocab["dog</w>"] == DOG
    assert vocab["<|startoftext|>"] == START_ID and vocab["<|endoftext|>"] == END_ID


def test_transformers_tokenizer_has_the_whole_vocabulary():
    tokenizer = load_clip_tokenizer()
    assert len(tokenizer) == VOCAB_SIZE
    assert tokenizer.convert_tokens_to_ids("photo</w>") == 1125


def test_known_ids_and_clip_l_padding_through_transformers():
    ids = load_clip_tokenizer(PAD_TOKEN_END)("a photo of a cat", padding="max_length", max_length=77)["input_ids"]
    assert ids == CAT_IDS + [49407] * 70


def test_openclip_padding_through_transformers_is_zero():
    ids = load_clip_tokenizer(PAD_TOKEN_ZERO)("a photo of a cat", padding="max_length", max_length=77)["input_ids"]
    assert ids == CAT_IDS + [0] * 70


@pytest.mark.parametrize(("pad_id", "pad"), [(PAD_WITH_END, 49407), (PAD_WITH_ZERO, 0)])
def test_prompt_tokenizer_known_ids(pad_id, pad):
    (chunk,) = PromptTokenizer(pad_id).tokenize("a photo of a cat")
    assert list(chunk.ids) == CAT_IDS + [pad] * 70
    assert chunk.weights == (1.0,) * 77
    assert not chunk.is_weighted


def test_text_is_normalised_like_clip():
    tokenizer = PromptTokenizer(PAD_WITH_END)
    assert tokenizer.token_ids("A  Photo\nof a CAT") == CAT_IDS[1:-1]
    assert tokenizer.token_ids("") == []


@pytest.mark.parametrize(("pad_id", "pad"), [(PAD_WITH_END, 49407), (PAD_WITH_ZERO, 0)])
def test_empty_prompt_is_one_chunk(pad_id, pad):
    tokenizer = PromptTokenizer(pad_id)
    expected = [START_ID, END_ID] + [pad] * 75
    assert [list(c.ids) for c in tokenizer.tokenize("")] == [expected]
    assert list(tokenizer.empty_chunk().ids) == expected


def test_weights_follow_segments_and_special_tokens_weigh_one():
    (chunk,) = PromptTokenizer(PAD_WITH_END).tokenize("(cat:1.2), dog")
    assert list(chunk.ids[:5]) == [START_ID, CAT, 267, DOG, END_ID]  # 267 = ","
    assert chunk.weights[:5] == (1.0, 1.2, 1.0, 1.0, 1.0)
    assert set(chunk.weights[5:]) == {1.0}
    assert chunk.is_weighted


def test_escaped_parentheses_become_paren_tokens():
    tokenizer = PromptTokenizer(PAD_WITH_END)
    (chunk,) = tokenizer.tokenize(r"\(cat\)")
    assert list(chunk.ids[1:4]) == tokenizer.token_ids("(cat)")
    assert set(chunk.weights) == {1.0}


def test_each_segment_is_tokenized_separately():
    # "(a)b" tokenizes "a" and "b" on their own; tokenizing "ab" in one piece gives a different id list.
    tokenizer = PromptTokenizer(PAD_WITH_END)
    (chunk,) = tokenizer.tokenize("(photo)graph")
    assert list(chunk.ids[1:3]) == tokenizer.token_ids("photo") + tokenizer.token_ids("graph")
    assert tokenizer.token_ids("photograph") != tokenizer.token_ids("photo") + tokenizer.token_ids("graph")


# --- chunking boundaries ------------------------------------------------------------------------------------


def _group(n: int, token: int = 7, weight: float = 1.0) -> list[tuple[int, float]]:
    return [(token, weight)] * n


def _body(chunk: TokenChunk, pad: int = 0) -> list[int]:
    """The ids between start and end, checking the frame (start, end, then only padding)."""
    ids = list(chunk.ids)
    assert len(ids) == 77 and ids[0] == START_ID
    end = ids.index(END_ID)
    assert all(i == pad for i in ids[end + 1 :])
    return ids[1:end]


def test_75_tokens_fit_one_chunk_76_need_two():
    (one,) = chunk_token_groups([_group(75)], pad_id=0)
    assert _body(one) == [7] * 75 and one.ids[-1] == END_ID
    first, second = chunk_token_groups([_group(76)], pad_id=0)
    assert _body(first) == [7] * 75 and _body(second) == [7]


def test_real_prompt_of_75_and_76_tokens():
    tokenizer = PromptTokenizer(PAD_WITH_END)
    assert [_body(c, 49407) for c in tokenizer.tokenize("cat " * 75)] == [[CAT] * 75]
    assert [len(_body(c, 49407)) for c in tokenizer.tokenize("cat " * 76)] == [75, 1]
    assert [len(_body(c, 49407)) for c in tokenizer.tokenize("cat " * 151)] == [75, 75, 1]


def test_long_group_straddling_the_boundary_is_split():
    first, second = chunk_token_groups([_group(70, 1), _group(10, 2, 1.3)], pad_id=0)
    assert _body(first) == [1] * 70 + [2] * 5
    assert _body(second) == [2] * 5
    assert first.weights[71:76] == (1.3,) * 5 and first.weights[76] == 1.0  # end token weighs 1
    assert second.weights[1:6] == (1.3,) * 5 and second.weights[0] == 1.0


def test_short_group_that_does_not_fit_moves_whole():
    first, second = chunk_token_groups([_group(72, 1), _group(5, 2, 0.8)], pad_id=0)
    assert _body(first) == [1] * 72  # closed early: end then padding
    assert list(first.ids[73:]) == [END_ID, 0, 0, 0]
    assert _body(second) == [2] * 5 and second.weights[1:6] == (0.8,) * 5


@pytest.mark.parametrize(("size", "first_len"), [(7, 70), (8, 75)])
def test_split_threshold_is_eight_tokens(size, first_len):
    chunks = chunk_token_groups([_group(70, 1), _group(size, 2)], pad_id=0)
    assert len(_body(chunks[0])) == first_len
    assert len(_body(chunks[0])) + len(_body(chunks[1])) == 70 + size


def test_exactly_full_chunk_then_short_group():
    first, second = chunk_token_groups([_group(75, 1), _group(3, 2)], pad_id=0)
    assert _body(first) == [1] * 75 and _body(second) == [2] * 3


def test_groups_that_fit_share_a_chunk_and_empty_groups_vanish():
    (chunk,) = chunk_token_groups([_group(3, 1), [], _group(2, 2)], pad_id=49407)
    assert list(chunk.ids[:7]) == [START_ID, 1, 1, 1, 2, 2, END_ID]


def test_real_weighted_group_straddles_boundary():
    chunks = PromptTokenizer(PAD_WITH_ZERO).tokenize("cat " * 70 + "(" + "dog " * 10 + ":1.5)")
    assert [len(_body(c)) for c in chunks] == [75, 5]
    assert chunks[0].weights[71:76] == (1.5,) * 5 and chunks[1].weights[1:6] == (1.5,) * 5
    short = PromptTokenizer(PAD_WITH_ZERO).tokenize("cat " * 72 + "(" + "dog " * 5 + ":1.5)")
    assert [_body(c) for c in short] == [[CAT] * 72, [DOG] * 5]


def test_prompt_ids_do_not_depend_on_how_others_used_the_shared_tokenizer():
    prompt = PromptTokenizer(PAD_WITH_END)
    before = prompt.token_ids("a photo of a cat " * 30)
    # a diffusers pipeline tokenizes with padding and truncation, which the transformers wrapper leaves set
    load_clip_tokenizer()("a photo", padding="max_length", max_length=77, truncation=True)
    assert prompt.token_ids("a photo of a cat " * 30) == before and len(before) == 150
