"""The secret scan's prefilters never change what is redacted.

``_scrub`` skips the credential rules whose every match holds one of ``_ - = :`` when the
text holds none of them, and runs a rule's pattern only when the text holds one of its
keywords (or, for patterns the regex engine finds fast, at once); ``scrub`` scans only
text holding a character or key id some format needs. ``_scrub(text, prefilter=False)``
runs every rule's pattern on the whole text (the reference).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthog_callbacks.serialize import _NEED_CHARS, _NEEDS, _RULES, REDACTED, _scrub, scrub
from support.secret_samples import PROSE, SECRET_TEXTS

KEYWORDS = sorted({k for _, keywords, _, _ in _RULES for k in keywords})
SAMPLES = [text for text, _ in SECRET_TEXTS.values()]
# The samples with none of the prefilter's characters: the rules that need none must
# still see them.
BARE = [text.translate(str.maketrans("_-=:", "xxxx")) for text in SAMPLES]
# Formats that may hold none of the characters ``scrub`` looks for first.
LETTERS_ONLY = [
    "AIza" + "SyAbcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[:35],  # a Google API key
    "eyJhbGciOiJIUzIiJ.eyJzdWIiOiJhYmMiLCJuYW1lIjoiSm9obiJ.SflKxwRJSMeKKFQTpMeJfPOkyJVadQ",
    "Bearer abcdefghijkl~mnopqrst",
    "AKIAIOSFODNNSAMPLEXY",
]
pieces = st.one_of(
    st.sampled_from(KEYWORDS),
    st.sampled_from(KEYWORDS).map(str.upper),
    st.sampled_from(KEYWORDS).map(str.title),
    st.sampled_from(SAMPLES),
    st.sampled_from(BARE),
    st.sampled_from([*" _-=:/.@+~'\"\n?&;#", "://", "-----", "Bearer ", "Basic "]),
    st.sampled_from(LETTERS_ONLY),
    st.text(alphabet="abcdefghijkXYZ0123456789_-=:.+/", min_size=1, max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=10),  # surrogates too
)
texts = st.lists(pieces, max_size=12).map("".join)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_the_prefilter_never_changes_the_result(text: str) -> None:
    assert _scrub(text) == _scrub(text, prefilter=False)


@pytest.mark.parametrize("kind", sorted(SECRET_TEXTS))
def test_every_sample_is_redacted_with_and_without_the_prefilter(kind: str) -> None:
    text, needle = SECRET_TEXTS[kind]
    bare = text.translate(str.maketrans("_-=:", "xxxx"))
    for variant in (text, f"see {text} now", text.replace("-", " "), bare, f"({bare})"):
        assert _scrub(variant) == _scrub(variant, prefilter=False)
    assert needle not in _scrub(text) and REDACTED in _scrub(text)
    assert _scrub(PROSE) == _scrub(PROSE, prefilter=False)


def test_every_named_rule_exists_and_needs_only_prefilter_characters() -> None:
    names = {rule for rule, _, _, _ in _RULES}
    assert set(_NEEDS) <= names
    assert all(set(chars) <= set(_NEED_CHARS) for chars in _NEEDS.values())


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_scrub_finds_what_every_rule_finds(text: str) -> None:
    assert scrub(text) == _scrub(text, prefilter=False)


@pytest.mark.parametrize("secret", LETTERS_ONLY)
def test_formats_without_digits_or_punctuation_are_redacted(secret: str) -> None:
    text = f"use {secret} now"
    assert secret not in scrub(text) and REDACTED in scrub(text)


# Long text with few ``=`` and ``:`` (a RAG prompt): the assignment rules look for their
# keyword only just before those (serialize._assignment_sites).
FILLER = "The committee reviewed the quarterly figures and every region grew. " * 40
assignment_pieces = st.one_of(
    st.sampled_from(KEYWORDS),
    st.sampled_from(KEYWORDS).map(str.upper),
    st.sampled_from(["password", "api_key", "Secret", "private-key", "credentials", "x_token"]),
    st.sampled_from(["=", ":", " = ", '": "', "'", '"', "\n", "\t", "\u2003", "\u00a0"]),
    st.integers(0, 90).map(lambda n: " " * n),  # whitespace runs around the 64 cut
    st.sampled_from(SAMPLES),
    st.text(alphabet="abcXYZ019_-", min_size=1, max_size=30),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(assignment_pieces, min_size=1, max_size=10),
    cut=st.integers(0, len(FILLER)),
    tail=st.booleans(),
)
def test_the_assignment_sites_of_long_text_never_change_the_result(
    pieces: list[str], cut: int, tail: bool
) -> None:
    inserted = "".join(pieces)
    text = FILLER[:cut] + inserted + FILLER[cut:] + (FILLER if tail else "")
    assert len(text) >= 2048
    assert _scrub(text) == _scrub(text, prefilter=False)


@pytest.mark.parametrize("gap", [0, 1, 12, 63, 64, 65, 70, 76, 80, 200])
def test_an_assignment_far_from_its_keyword_in_long_text_is_redacted(gap: int) -> None:
    for assignment in (
        f"password{' ' * gap}= hunter2hunter2",
        f'"api_key"{" " * gap}: "hunter2hunter2"',
        f"'credentials'{chr(9) * gap}: hunter2hunter2",
    ):
        text = FILLER + assignment + " " + FILLER
        assert _scrub(text) == _scrub(text, prefilter=False)
        assert "hunter2hunter2" not in _scrub(text) and REDACTED in _scrub(text)
