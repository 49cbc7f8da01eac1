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
