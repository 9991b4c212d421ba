"""Textual-inversion embeddings (`embedding:NAME`) against diffusers and the vectors-as-extra-token-rows reference.

Two independent references: diffusers' `load_textual_inversion` + `encode_prompt` (it adds one token per vector
to the tokenizer and the vectors as new rows of the token table), and the transformers model run directly with
its table grown by those rows (`_with_rows`). Both compute exactly what our encoder computes — the same float32
values through the same modules in the same batch — so equality is exact (`torch.equal`), not approximate.
"""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from safetensors.torch import save_file

from nodes.paths import DataPaths, UnsafePathError
from nodes.sd.embeddings import EmbeddingLibrary
from nodes.sd.errors import CheckpointError
from nodes.sd.text_encoder import _text_submodule
from nodes.sd.tokenizer import (
    EMBEDDING_SLOT_ID,
    END_ID,
    PAD_TOKEN_END,
    PAD_TOKEN_ZERO,
    PAD_WITH_END,
    START_ID,
    PromptTokenizer,
    load_clip_tokenizer,
)
from tests.nodes.sd._text_helpers import G_WIDTH, L_WIDTH, run_model

VOCAB = 49408
A, PHOTO, CAT, COMMA = 320, 1125, 2368, 267


def _vectors(count: int, width: int, seed: int) -> torch.Tensor:
    # The same scale as the tiny models' token table (std 0.02 × 20), so an embedding moves the result visibly.
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed)) * 0.4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A data folder with embeddings in every accepted format; `files.vectors[name]` are their contents."""
    paths = DataPaths(tmp_path_factory.mktemp("embeddings"))
    folder = paths.models("embeddings")
    (folder / "sub").mkdir()
    vectors = {
        "multi": _vectors(3, L_WIDTH, 1),
        "one": _vectors(1, L_WIDTH, 2)[0],  # [D]
        "a1111": _vectors(2, L_WIDTH, 3),
        "sub/nested": _vectors(2, L_WIDTH, 4),
        "narrow": _vectors(2, 20, 5),
        "eight": _vectors(8, L_WIDTH, 6),
        "long": _vectors(80, L_WIDTH, 7),
        "xl_l": _vectors(2, L_WIDTH, 8),
        "xl_g": _vectors(2, G_WIDTH, 9),
    }
    for name in ("multi", "sub/nested", "narrow", "eight", "long"):
        save_file({"emb_params": vectors[name]}, folder / f"{name}.safetensors")
    save_file({"<token>": vectors["one"]}, folder / "one.safetensors")
    torch.save({"string_to_param": {"*": vectors["a1111"]}, "string_to_token": {"*": 265}, "name": "a1111",
                "step": 3000}, folder / "a1111.pt")
    save_file({"clip_l": vectors["xl_l"], "clip_g": vectors["xl_g"]}, folder / "xl.safetensors")
    (paths.root / "secret.safetensors").write_bytes((folder / "multi.safetensors").read_bytes())
    return type("Files", (), {"paths": paths, "folder": folder, "vectors": vectors})


@pytest.fixture(scope="module")
def library(files):
    return EmbeddingLibrary(files.paths, allow_pickle=True)


def _with_rows(model, vectors: torch.Tensor):
    """A copy of `model` whose token table has `vectors` as new rows VOCAB, VOCAB+1, …: the reference."""
    grown = copy.deepcopy(model)
    grown.resize_token_embeddings(VOCAB + len(vectors), mean_resizing=False)
    with torch.no_grad():
        grown.get_input_embeddings().weight[VOCAB:] = vectors
    return grown


def _chunk(body: list[int], pad: int = PAD_WITH_END) -> list[int]:
    return [START_ID, *body, END_ID] + [pad] * (75 - len(body))


def _rows(count: int) -> list[int]:
    return list(range(VOCAB, VOCAB + count))


# --- parity with diffusers -----------------------------------------------------------------------------------


def _fresh_tokenizer(pad_token: str):
    # load_textual_inversion adds tokens to the tokenizer it is given: never hand it the shared cached one.
    return load_clip_tokenizer.__wrapped__(pad_token)


@pytest.mark.parametrize(("name", "file"), [("multi", "multi.safetensors"), ("one", "one.safetensors"),
                                            ("a1111", "a1111.pt")])
def test_sd1_matches_diffusers_load_textual_inversion(sd1, clip_l, library, files, name, file):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from tests.nodes.sd.test_text_encoder import _tiny_unet, _tiny_vae

    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(), text_encoder=copy.deepcopy(clip_l), tokenizer=_fresh_tokenizer(PAD_TOKEN_END),
        unet=_tiny_unet(L_WIDTH, sdxl=False), scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.load_textual_inversion(str(files.folder / file), token="<tok>")
    theirs, _ = pipe.encode_prompt("a <tok> photo", "cpu", 1, do_classifier_free_guidance=False)
    ours = sd1.encode(f"a embedding:{name} photo", library)
    assert torch.equal(ours.cond, theirs)
    assert not torch.equal(ours.cond, sd1.encode("a photo", library).cond)
    # The pooled vector is read at the end token, which comes after the vectors.
    count = len(files.vectors[name].reshape(-1, L_WIDTH))
    reference = run_model(_with_rows(clip_l, files.vectors[name].reshape(-1, L_WIDTH)),
                          [_chunk([A, *_rows(count), PHOTO])])
    assert torch.equal(ours.pooled, reference.last_hidden_state[:, 2 + count + 1])


def test_sdxl_clip_l_and_clip_g_keys_match_diffusers(sdxl, clip_l, clip_g, library, files):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from tests.nodes.sd._text_helpers import G_PROJECTION
    from tests.nodes.sd.test_text_encoder import _tiny_unet, _tiny_vae

    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(), text_encoder=copy.deepcopy(clip_l), text_encoder_2=copy.deepcopy(clip_g),
        tokenizer=_fresh_tokenizer(PAD_TOKEN_END), tokenizer_2=_fresh_tokenizer(PAD_TOKEN_ZERO),
        unet=_tiny_unet(L_WIDTH + G_WIDTH, sdxl=True), scheduler=EulerDiscreteScheduler(steps_offset=1),
    )
    # diffusers' documented way for SDXL files: each encoder gets its own tensor under the same token.
    pipe.load_textual_inversion(files.vectors["xl_l"], token="<tok>", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(files.vectors["xl_g"], token="<tok>", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    embeds, _, pooled, _ = pipe.encode_prompt("a <tok> photo", device="cpu", do_classifier_free_guidance=False)
    ours = sdxl.encode("a embedding:xl photo", library)
    assert ours.cond.shape == (1, 77, L_WIDTH + G_WIDTH) and ours.pooled.shape == (1, G_PROJECTION)
    assert torch.equal(ours.cond, embeds)
    assert torch.equal(ours.pooled, pooled)
    # The same through CLIPTextEncodeSDXL's separate texts.
    assert torch.equal(sdxl.encode_sdxl("a embedding:xl photo", "a embedding:xl photo", library).cond, embeds)


# --- weighting -----------------------------------------------------------------------------------------------


def test_weight_interpolates_the_embedding_from_the_empty_encoding(sd1, clip_l, library, files):
    vectors = files.vectors["multi"]
    cond, pooled = sd1.encode("a (embedding:multi:1.3) photo", library)
    # Reference §6.10.5 on the reference model: the prompt and the empty prompt in one batch.
    empty = PromptTokenizer(PAD_WITH_END).empty_chunk().ids
    reference = run_model(_with_rows(clip_l, vectors), [_chunk([A, *_rows(3), PHOTO]), list(empty)])
    z, z_empty = reference.last_hidden_state[0].clone(), reference.last_hidden_state[1]
    for j in (2, 3, 4):  # the three vectors' positions, and only those
        z[j] = (z[j] - z_empty[j]) * 1.3 + z_empty[j]
    assert torch.equal(cond[0], z)
    assert torch.equal(pooled, reference.last_hidden_state[0:1, 6])
    assert not torch.equal(cond, sd1.encode("a embedding:multi photo", library).cond)


# --- names and skips -----------------------------------------------------------------------------------------


def test_names_with_extension_subfolder_and_trailing_comma(sd1, library, files):
    plain = sd1.encode("a embedding:multi photo", library).cond
    assert torch.equal(sd1.encode("a embedding:multi.safetensors photo", library).cond, plain)
    assert torch.equal(sd1.encode("a\nembedding:multi photo", library).cond, plain)
    (chunk,) = sd1.tokenize("embedding:multi, photo", library)["l"]
    assert list(chunk.ids[:7]) == [START_ID, EMBEDDING_SLOT_ID, EMBEDDING_SLOT_ID, EMBEDDING_SLOT_ID, COMMA,
                                   PHOTO, END_ID]
    assert [p for p, _ in chunk.vectors] == [1, 2, 3]
    assert all(torch.equal(v, files.vectors["multi"][i]) for i, (_, v) in enumerate(chunk.vectors))
    (nested,) = sd1.tokenize("embedding:sub/nested", library)["l"]
    assert torch.equal(torch.stack([v for _, v in nested.vectors]), files.vectors["sub/nested"])
    # Not preceded by a space or newline: ordinary text, as in ComfyUI.
    (glued,) = sd1.tokenize("cat,embedding:multi", library)["l"]
    assert not glued.vectors
    # Without a library, embedding: words are text too.
    assert not sd1.tokenize("a embedding:multi")["l"][0].vectors


def test_missing_and_wrong_width_embeddings_are_skipped_with_a_warning(sd1, library, caplog):
    plain = sd1.encode("a photo", library)
    with caplog.at_level(logging.WARNING, logger="nodes.sd.embeddings"):
        missing = sd1.encode("a embedding:nothing photo", library)
    assert "embedding:nothing does not exist" in caplog.text
    assert torch.equal(missing.cond, plain.cond) and torch.equal(missing.pooled, plain.pooled)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nodes.sd.embeddings"):
        narrow = sd1.encode("a embedding:narrow photo", library)
    assert "narrow.safetensors has 2 vectors of width 20, text encoder 'l' takes width 32" in caplog.text
    assert torch.equal(narrow.cond, plain.cond)


def test_sdxl_encoder_that_the_width_does_not_fit_goes_without_it(sdxl, sd1, library, caplog):
    # An SD1 embedding (width of L) in SDXL: L takes it, G (another width) encodes the text without it.
    with caplog.at_level(logging.WARNING, logger="nodes.sd.embeddings"):
        cond, pooled = sdxl.encode("a embedding:multi photo", library)
    assert "text encoder 'g' takes width 48" in caplog.text
    alone = sdxl.encode("a photo", library)
    assert torch.equal(cond[..., L_WIDTH:], alone.cond[..., L_WIDTH:]) and torch.equal(pooled, alone.pooled)
    l_only = sdxl.tokenize("a embedding:multi photo", library)["l"]
    assert len(l_only[0].vectors) == 3
    assert not torch.equal(cond[..., :L_WIDTH], alone.cond[..., :L_WIDTH])


def test_pickle_embeddings_need_allow_pickle(sd1, files):
    refusing = EmbeddingLibrary(files.paths)
    with pytest.raises(CheckpointError, match=r"pickle format .*--allow-pickle.*a1111\.pt"):
        sd1.encode("a embedding:a1111 photo", refusing)
    assert torch.equal(refusing.vectors(files.folder / "multi.safetensors", "l", L_WIDTH), files.vectors["multi"])


@pytest.mark.parametrize("name", ["../secret", "sub/../../secret", "/etc/passwd"])
def test_names_that_leave_the_folder_are_refused(sd1, library, name):
    with pytest.raises(UnsafePathError):
        sd1.encode(f"a embedding:{name} photo", library)


def test_symlink_out_of_the_folder_is_refused(sd1, files, tmp_path):
    paths = DataPaths(tmp_path)
    (paths.models("embeddings") / "link.safetensors").symlink_to(files.folder / "multi.safetensors")
    with pytest.raises(UnsafePathError):
        sd1.encode("a embedding:link photo", EmbeddingLibrary(paths))


# --- chunking ------------------------------------------------------------------------------------------------


def test_an_embedding_that_does_not_fit_moves_whole_to_the_next_chunk(sd1, clip_l, library, files):
    # 70 words + 8 vectors > 75: a text group of 8 would be split, an embedding moves whole.
    first, second = sd1.tokenize("cat " * 70 + "embedding:eight", library)["l"]
    assert first.ids[1:72] == (CAT,) * 70 + (END_ID,) and not first.vectors
    assert [p for p, _ in second.vectors] == list(range(1, 9)) and second.ids[9] == END_ID
    # The moved vectors get the positions 1..8 of their chunk, as tokens would.
    cond = sd1.encode("cat " * 70 + "embedding:eight", library).cond
    reference = run_model(_with_rows(clip_l, files.vectors["eight"]), [_chunk([CAT] * 70), _chunk(_rows(8))])
    assert torch.equal(cond, reference.last_hidden_state.reshape(1, 154, L_WIDTH))


def test_an_embedding_longer_than_a_chunk_is_split(sd1, library, files):
    chunks = sd1.tokenize("cat " * 10 + "embedding:long", library)["l"]
    assert [len(c.vectors) for c in chunks] == [65, 15]
    spliced = torch.stack([v for c in chunks for _, v in c.vectors])
    assert torch.equal(spliced, files.vectors["long"])


def test_the_hook_is_gone_after_encoding(sd1, clip_l, library):
    sd1.encode("a embedding:multi photo", library)
    assert not _text_submodule(clip_l, "embeddings")._forward_pre_hooks


# --- the library ---------------------------------------------------------------------------------------------


def test_fingerprint_follows_the_named_files(files, tmp_path):
    paths = DataPaths(tmp_path)
    folder = paths.models("embeddings")
    save_file({"emb_params": _vectors(2, L_WIDTH, 1)}, folder / "style.safetensors")
    library = EmbeddingLibrary(paths)
    assert library.fingerprint("a plain prompt") is None
    before = library.fingerprint("a (embedding:style:1.2) and embedding:gone")
    stat = (folder / "style.safetensors").stat()
    assert before == [["style.safetensors", stat.st_size, stat.st_mtime_ns, stat.st_ino], ["gone", None]]
    assert library.fingerprint(None) == [["style.safetensors", stat.st_size, stat.st_mtime_ns, stat.st_ino]]
    assert library.fingerprint("a embedding:../x") == ["refused path"]
    assert library.vectors(folder / "style.safetensors", "l", L_WIDTH).shape == (2, L_WIDTH)
    save_file({"emb_params": _vectors(3, L_WIDTH, 2)}, folder / "style.safetensors")
    assert library.fingerprint("a (embedding:style:1.2) and embedding:gone") != before
    # The read cache notices the replaced file too.
    assert library.vectors(folder / "style.safetensors", "l", L_WIDTH).shape == (3, L_WIDTH)
