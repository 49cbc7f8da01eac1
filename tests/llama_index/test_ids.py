"""Span and trace ids of the LlamaIndex doors: unique, and told apart by a short prefix."""

from __future__ import annotations

import uuid

from posthog_callbacks.llama_index.trace import new_id


def test_ids_are_unique_uuid_shaped_and_differ_in_their_first_characters() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(str(uuid.UUID(i)) == i for i in ids[:100])
    # consecutive ids (one trace after another) must not share a long prefix, or a
    # unique-prefix lookup (`posthog-callbacks show --trace PREFIX`) needs the whole id
    assert len({i[:8] for i in ids}) == len(ids)
