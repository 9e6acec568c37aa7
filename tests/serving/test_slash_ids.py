"""Ids holding `/` or `%` (which `index add` accepts and readers may have) reach their routes: sent encoded
(%2F, %25) or, for `/`, as they are; an unknown one gets the "not in this bundle" 404, not the router's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from booktower.config.serving import ServingConfig
from booktower.data.vocab import Vocabulary
from booktower.serving.api import create_app
from booktower.serving.service import Recommender

from .conftest import MeanEncoder, toy_parts

BOOKS = {0: "a/b", 1: "50%off", 2: "x/similar", 3: "/lead"}
READERS = {0: "shop/42", 1: "u%2"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    parts, _ = toy_parts()
    items = [BOOKS.get(i, raw) for i, raw in enumerate(parts.items.ids.to_list())]
    users = [READERS.get(u, raw) for u, raw in enumerate(parts.users.ids.to_list())]
    parts = replace(parts, items=Vocabulary(items, "item_id"), users=Vocabulary(users, "user_id"),
                    metadata=parts.metadata.with_columns(item_id=pl.Series(items)))
    rec = Recommender(parts, ServingConfig(), MeanEncoder(parts.item_vectors, {}))
    return TestClient(create_app(rec), raise_server_exceptions=False)


@pytest.mark.parametrize(("path", "book"), [
    ("/items/a%2Fb/similar", "a/b"),
    ("/items/a/b/similar", "a/b"),
    ("/items/50%25off/similar", "50%off"),
    ("/items/x/similar/similar", "x/similar"),
    ("/items/x%2Fsimilar/similar", "x/similar"),
    ("/items/%2Flead/similar", "/lead"),
    ("/items/b7/similar", "b7"),
])
def test_similar_answers_a_book_whose_id_holds_a_slash_or_percent(client, path: str, book: str) -> None:
    response = client.get(path, params={"k": 3})
    assert response.status_code == 200, response.text
    assert response.json()["item_id"] == book and len(response.json()["items"]) == 3
    assert book not in {item["item_id"] for item in response.json()["items"]}


@pytest.mark.parametrize(("path", "reader"), [
    ("/recommendations/shop%2F42", "shop/42"),
    ("/recommendations/shop/42", "shop/42"),
    ("/recommendations/u%252", "u%2"),
])
def test_a_reader_whose_id_holds_a_slash_or_percent_is_served(client, path: str, reader: str) -> None:
    response = client.get(path, params={"k": 4, "explain": True})
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == reader and len(response.json()["items"]) == 4


@pytest.mark.parametrize(("path", "named"), [
    ("/items/no%2Fsuch/similar", "item 'no/such' is not in this bundle"),
    ("/items/no/such/similar", "item 'no/such' is not in this bundle"),
    ("/items/99%25/similar", "item '99%' is not in this bundle"),
    ("/recommendations/ghost%2F1", "reader 'ghost/1' is not in this bundle"),
    ("/recommendations/ghost%25", "reader 'ghost%' is not in this bundle"),
])
def test_an_unknown_id_with_a_slash_or_percent_gets_the_404_naming_it(client, path: str, named: str) -> None:
    response = client.get(path)
    assert response.status_code == 404 and named in response.json()["detail"]


def test_the_schema_keeps_the_documented_paths(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/items/{item_id}/similar" in paths and "/recommendations/{user_id}" in paths
    assert not any(":path" in path for path in paths)


def test_history_and_exclude_take_such_ids_in_the_body(client) -> None:
    body = client.post("/recommendations", json={"history": ["a/b", "50%off"], "k": 5, "exclude": ["x/similar"]})
    assert body.status_code == 200
    assert not {"a/b", "50%off", "x/similar"} & {item["item_id"] for item in body.json()["items"]}
