"""The weighting parser against the reference's worked examples (§6.10.1) and its edge cases."""

import pytest

from nodes.sd.prompt_weights import WeightedSegment, parse_prompt_weights


def _pairs(text: str) -> list[tuple[str, float]]:
    return [tuple(segment) for segment in parse_prompt_weights(text)]


# The four worked examples of reference §6.10.1, verbatim.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a (b:1.5) ((c))", [("a ", 1.0), ("b", 1.5), (" ", 1.0), ("c", 1.21)]),
        ("((x:0.5) y)", [("x", 0.5), (" y", 1.1)]),
        ("(a (b:2))", [("a ", 1.1), ("b", 2.0)]),
        ("(cat:1.2), dog", [("cat", 1.2), (", dog", 1.0)]),
    ],
)
def test_reference_examples(text, expected):
    got = _pairs(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=0, abs=1e-12)


def test_nested_plain_groups_multiply_in_float_order():
    # ((c)) is 1.0 * 1.1 * 1.1 in that order, not the literal 1.21: the product must be computed, not rounded.
    assert parse_prompt_weights("((c))") == [WeightedSegment("c", 1.0 * 1.1 * 1.1)]
    assert parse_prompt_weights("(((c)))")[0].weight == 1.0 * 1.1 * 1.1 * 1.1


def test_explicit_weight_is_absolute_not_multiplied():
    assert _pairs("((b:1.5))") == [("b", 1.5)]
    assert _pairs("(a:0.8)") == [("a", 0.8)]


def test_plain_text_and_empty_text():
    assert _pairs("a photo of a cat") == [("a photo of a cat", 1.0)]
    assert parse_prompt_weights("") == []
    assert parse_prompt_weights("()") == []
    assert _pairs("a () b") == [("a ", 1.0), (" b", 1.0)]


def test_outer_weight_argument():
    assert _pairs("a (b)") == [("a ", 1.0), ("b", pytest.approx(1.1))]
    assert _pairs_with_weight("a (b)", 2.0) == [("a ", 2.0), ("b", pytest.approx(2.2))]


def _pairs_with_weight(text: str, weight: float) -> list[tuple[str, float]]:
    return [tuple(segment) for segment in parse_prompt_weights(text, weight)]


def test_escaped_parentheses_are_literal():
    assert _pairs(r"a \(b\) c") == [("a (b) c", 1.0)]
    assert _pairs(r"(smile \(happy\):1.3)") == [("smile (happy)", 1.3)]
    # An escaped ')' inside the weight suffix makes it not a number: group weight 1.1 and the text keeps it.
    assert _pairs(r"(a:1.5\))") == [("a:1.5)", pytest.approx(1.1))]
    # Other backslashes are left alone.
    assert _pairs(r"a\b \[c\]") == [(r"a\b \[c\]", 1.0)]


def test_colon_that_is_not_a_float_is_text():
    assert _pairs("(a:b)") == [("a:b", pytest.approx(1.1))]
    assert _pairs("(16:9 photo)") == [("16:9 photo", pytest.approx(1.1))]
    # Only the last colon counts.
    assert _pairs("(a:1.2:1.3)") == [("a:1.2", 1.3)]
    # A colon at position 0 is never a weight.
    assert _pairs("(:1.5)") == [(":1.5", pytest.approx(1.1))]
    # A colon outside any group is text.
    assert _pairs("style: photo:1.5") == [("style: photo:1.5", 1.0)]


def test_weight_suffix_accepts_what_python_float_accepts():
    assert _pairs("(a: 1.5 )") == [("a", 1.5)]
    assert _pairs("(a:2)") == [("a", 2.0)]
    assert _pairs("(a:-1)") == [("a", -1.0)]
    assert _pairs("(a:1e-1)") == [("a", 0.1)]


def test_square_brackets_mean_nothing():
    assert _pairs("[a] (b:0.5)") == [("[a] ", 1.0), ("b", 0.5)]


def test_unclosed_parenthesis_leaves_plain_text():
    assert _pairs("a (b c") == [("a ", 1.0), ("(b c", 1.0)]
    assert _pairs("(a (b) c") == [("(a (b) c", 1.0)]
    # Two opens and one close form a piece that starts with '(' and ends with ')': it is read as a group.
    assert _pairs("((a)") == [("(a", pytest.approx(1.1))]


def test_stray_closing_parenthesis_keeps_the_rest_plain():
    assert _pairs("a) (b)") == [("a) (b)", 1.0)]
    assert _pairs("(a)) (b:2)") == [("a", pytest.approx(1.1)), (") (b:2)", 1.0)]


def test_adjacent_groups_stay_separate_segments():
    assert _pairs("(a)(b:0.9) c") == [("a", pytest.approx(1.1)), ("b", 0.9), (" c", 1.0)]
