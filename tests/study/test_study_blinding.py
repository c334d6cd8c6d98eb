"""Blinding: nothing a reader receives (ids, tokens, file names, order, image bytes) reveals the method; the
display order differs across readers and is stable for one reader across reloads."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from study.db import make_engine, session_factory
from study.errors import NotFoundError
from study.models import Query, Rendition
from study.render import DEFAULT_METHODS
from study.voting import next_query, query_slot_methods, rendition_png, submit_vote


def _png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, names = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        names.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length
    return names


def test_view_and_images_reveal_no_method(factory: Any, make_study: Any, assets: Path) -> None:
    built = make_study(factory, n_cases=3, repeat_fraction=0.34, repeat_min_gap=0)
    rid = built.readers["r1"]
    with factory.begin() as s:
        hashes = set(s.scalars(select(Rendition.sha256)))
        view = next_query(s, rid)
        payload = json.dumps(view.as_dict())
        assert set(view.as_dict()) == {"query_token", "study_kind", "label", "index", "total", "is_practice",
                                       "slot_tokens", "answered_slot", "no_preference"}
        for method in DEFAULT_METHODS:
            assert method not in payload
        assert not any(h in payload or h[:16] in payload for h in hashes)
        for k, tok in enumerate(view.slot_tokens, start=1):
            by_token = rendition_png(s, rid, view.query_token, tok, assets=assets)
            assert by_token == rendition_png(s, rid, view.query_token, k, assets=assets)
            chunks = _png_chunks(by_token)  # no tEXt / iTXt / zTXt / tIME / eXIf / pHYs: no metadata at all
            assert chunks[0] == "IHDR" and chunks[-1] == "IEND" and set(chunks) == {"IHDR", "IDAT", "IEND"}
            assert by_token[24 + 1] == 0 and by_token[24] == 8  # IHDR: bit depth 8, colour type 0 (gray)
    for path in assets.rglob("*"):
        assert not any(m in path.name for m in DEFAULT_METHODS)


def test_order_differs_across_readers_and_is_stable(factory: Any, make_study: Any, db_url: str,
                                                    assets: Path) -> None:
    built = make_study(factory, readers=("a", "b"), n_cases=8)
    orders: dict[str, dict[int, list[str]]] = {}
    tokens: dict[str, set[str]] = {}
    for name, rid in built.readers.items():
        orders[name], tokens[name] = {}, set()
        with factory.begin() as s:
            for q in s.scalars(select(Query).where(Query.reader_id == rid)):
                orders[name][q.case_id] = query_slot_methods(s, q.id)
                tokens[name].add(q.token)
    assert any(orders["a"][c] != orders["b"][c] for c in orders["a"])
    assert not tokens["a"] & tokens["b"]
    for name in orders:  # within one reader every method moves around: no fixed layout across queries
        for m in DEFAULT_METHODS:
            assert len({order.index(m) for order in orders[name].values()}) > 1, (name, m)
    rid = built.readers["a"]
    with factory.begin() as s:
        first = next_query(s, rid)
        images = [rendition_png(s, rid, first.query_token, tok, assets=assets) for tok in first.slot_tokens]
    engine = make_engine(db_url)  # a fresh connection, as after a server restart
    try:
        with session_factory(engine).begin() as s:
            again = next_query(s, rid)
            assert again == first
            assert [rendition_png(s, rid, again.query_token, tok, assets=assets) for tok in again.slot_tokens] == images
    finally:
        engine.dispose()
    with factory.begin() as s:
        other = next_query(s, built.readers["b"])
        assert set(other.slot_tokens).isdisjoint(first.slot_tokens)


def test_tokens_of_one_reader_do_not_open_images_for_another(factory: Any, make_study: Any, assets: Path) -> None:
    built = make_study(factory, n_cases=2)
    with factory.begin() as s:
        v1 = next_query(s, built.readers["r1"])
        v2 = next_query(s, built.readers["r2"])
    for reader, token, slot in [(built.readers["r2"], v1.query_token, 1),
                                (built.readers["r1"], v1.query_token, v2.slot_tokens[0]),
                                (built.readers["r1"], v1.query_token, 9)]:
        with pytest.raises(NotFoundError):
            with factory.begin() as s:
                rendition_png(s, reader, token, slot, assets=assets)


def test_repeat_read_is_not_flagged_to_the_reader(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("a",), n_cases=4, repeat_fraction=0.5, repeat_min_gap=1)
    rid = built.readers["a"]
    views = []
    while True:
        with factory.begin() as s:
            view = next_query(s, rid)
            if view is None:
                break
            views.append(view)
        with factory.begin() as s:
            submit_vote(s, rid, view.query_token, 1)
    assert len(views) == 6 and [v.index for v in views] == list(range(1, 7))
    assert len({v.query_token for v in views}) == 6


def test_slot_orders_depend_on_the_study_secret_not_only_on_public_settings(factory: Any, make_study: Any) -> None:
    """Two studies with the same seed, cases and reader names still get different orders (the study's secret key
    seeds them too), so nobody can recompute a reader's layout from the code, the name and the default seed."""
    a = make_study(factory, readers=("r",), n_cases=8, name="first")
    with factory.begin() as s:
        from study.models import Reader

        s.get(Reader, a.readers["r"]).name = "r-old"  # free the name for a second study with the same reader name
    b = make_study(factory, readers=("r",), n_cases=8, name="second")

    def layouts(built: Any) -> list[list[str]]:
        with factory.begin() as s:
            qs = s.scalars(select(Query).where(Query.reader_id == built.readers["r"], Query.study_id == built.study_id)
                           .order_by(Query.position))
            return [query_slot_methods(s, q.id) for q in qs]

    assert layouts(a) != layouts(b)
