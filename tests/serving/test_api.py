"""The HTTP API: answers, metadata, error codes, body limits (FastAPI TestClient; no network)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from booktower.serving.api import create_app

from .conftest import toy_recommender


@pytest.fixture(scope="module")
def client_and_labels() -> tuple[TestClient, np.ndarray]:
    rec, labels = toy_recommender(max_k=50, max_body_bytes=2048)
    return TestClient(create_app(rec), raise_server_exceptions=False), labels


def test_health_and_schema(client_and_labels) -> None:
    client, _ = client_and_labels
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["n_items"] == 120
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/recommendations/{user_id}", "/recommendations", "/items/{item_id}/similar"} <= set(paths)


def test_user_recommendations(client_and_labels) -> None:
    client, labels = client_and_labels
    body = client.get("/recommendations/u2", params={"k": 7}).json()
    assert body["user_id"] == "u2" and len(body["items"]) == 7
    assert all(labels[int(i["item_id"][1:])] == 2 and i["title"] for i in body["items"])
    only = client.get("/recommendations/u2", params={"k": 3, "category": "c1"}).json()
    assert all(labels[int(i["item_id"][1:])] == 1 for i in only["items"])


def test_history_and_similar(client_and_labels) -> None:
    client, labels = client_and_labels
    history = [f"b{i}" for i in np.flatnonzero(labels == 0)[:3]]
    body = client.post("/recommendations", json={"history": history, "k": 5}).json()
    assert len(body["items"]) == 5 and body["user_id"] is None
    assert not set(history) & {i["item_id"] for i in body["items"]}
    similar = client.get("/items/b40/similar", params={"k": 3}).json()
    assert similar["item_id"] == "b40" and len(similar["items"]) == 3 and similar["items"][0]["author"]


@pytest.mark.parametrize(("method", "url", "payload", "named"), [
    ("get", "/recommendations/ghost", None, "ghost"),
    ("get", "/items/b9999/similar", None, "b9999"),
    ("post", "/recommendations", {"history": ["b-nope", "b-gone"]}, "none of the history's 2 books"),
    ("get", "/recommendations/u1?category=nowhere", None, "nowhere"),
])
def test_unknown_ids_are_404_naming_them(client_and_labels, method, url, payload, named) -> None:
    client, _ = client_and_labels
    response = client.request(method.upper(), url, json=payload)
    assert response.status_code == 404 and named in response.json()["detail"]


def test_history_books_the_bundle_lacks_are_left_out_and_returned(client_and_labels) -> None:
    """A shop's history names books a bundle may not hold (pruned at prepare): the reader is served from the rest."""
    client, _ = client_and_labels
    known_only = client.post("/recommendations", json={"history": ["b1", "b2"], "k": 5}).json()
    mixed = client.post("/recommendations", json={"history": ["b1", "b-nope", "b2"], "k": 5, "exclude": ["b-gone"]})
    assert mixed.status_code == 200
    assert mixed.json()["items"] == known_only["items"] and mixed.json()["unknown_history"] == ["b-nope"]
    assert known_only["unknown_history"] == []
    assert client.get("/recommendations/u1").json()["unknown_history"] is None


def test_an_unknown_book_404_says_why_a_book_may_be_missing(client_and_labels) -> None:
    client, _ = client_and_labels
    detail = client.get("/items/b9999/similar").json()["detail"]
    assert "pruned at prepare" in detail and "--skip-existing" in detail


@pytest.mark.parametrize(("method", "url", "payload"), [
    ("get", "/recommendations/u1?k=0", None),
    ("get", "/recommendations/u1?k=51", None),
    ("get", "/recommendations/u1?k=ten", None),
    ("get", "/items/b1/similar?k=-3", None),
    ("post", "/recommendations", {"history": ["b1"], "k": 51}),
    ("post", "/recommendations", {"history": []}),
    ("post", "/recommendations", {"history": ["b1"], "surprise": 1}),
    ("post", "/recommendations", {"history": "b1"}),
])
def test_bad_input_is_422(client_and_labels, method, url, payload) -> None:
    client, _ = client_and_labels
    assert client.request(method.upper(), url, json=payload).status_code == 422


def test_oversized_bodies_are_413(client_and_labels) -> None:
    client, _ = client_and_labels
    big = {"history": ["b1"] * 1000}
    assert client.post("/recommendations", json=big).status_code == 413

    def chunks():  # no Content-Length: the streamed size is what counts
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/recommendations", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_paths_are_ids_not_files(client_and_labels) -> None:
    client, _ = client_and_labels
    for probe in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "manifest.json"):
        response = client.get(f"/recommendations/{probe}")
        assert response.status_code in (404, 422) and "root:" not in response.text


def _asgi_call(app, headers: list[tuple[bytes, bytes]], messages: list[dict]) -> list[dict]:
    """Run one HTTP request through an ASGI app by hand, the client sending `messages`; returns what it sent back."""
    import asyncio

    sent: list[dict] = []
    incoming = list(messages)

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive, send))
    return sent


def test_body_limit_refuses_a_bad_length_and_passes_a_disconnect_through() -> None:
    from booktower.serving.limits import BodySizeLimit

    seen: list[dict] = []

    async def inner(scope, receive, send) -> None:
        seen.append(await receive())

    limited = BodySizeLimit(inner, max_bytes=10)
    sent = _asgi_call(limited, [(b"content-length", b"ten")], [])
    assert sent[0]["status"] == 400 and b"invalid Content-Length" in sent[1]["body"] and not seen
    sent = _asgi_call(limited, [], [{"type": "http.request", "body": b"12345", "more_body": True},
                                    {"type": "http.request", "body": b"678901", "more_body": False}])
    assert sent[0]["status"] == 413 and not seen  # a chunked body past the limit, however it was announced
    _asgi_call(limited, [], [{"type": "http.disconnect"}])
    assert seen == [{"type": "http.disconnect"}]  # the app learns the client left
    seen.clear()
    _asgi_call(limited, [], [{"type": "http.request", "body": b"12", "more_body": True},
                             {"type": "http.request", "body": b"34", "more_body": False}])
    assert seen == [{"type": "http.request", "body": b"1234", "more_body": False}]  # replayed whole


def test_similar_books_honour_the_category_filter(client_and_labels) -> None:
    client, labels = client_and_labels
    assert labels[40] == 1
    body = client.get("/items/b40/similar", params={"k": 5, "category": ["c2", "c3"]}).json()
    assert len(body["items"]) == 5 and {labels[int(i["item_id"][1:])] for i in body["items"]} <= {2, 3}
    unknown = client.get("/items/b40/similar", params={"category": "nowhere"})
    assert unknown.status_code == 404 and "nowhere" in unknown.json()["detail"]


def test_a_category_path_gets_a_404_that_says_tags_match_and_suggests_them(client_and_labels) -> None:
    client, _ = client_and_labels
    response = client.get("/recommendations/u1", params={"category": "Books > c1"})
    detail = response.json()["detail"]
    assert response.status_code == 404 and "one tag" in detail and "'c1'" in detail and "'Books'" in detail
    typo = client.get("/recommendations/u1", params={"category": "Bookz"}).json()["detail"]
    assert "closest tags: ['Books']" in typo


def test_a_body_that_is_not_json_is_400_as_documented(client_and_labels) -> None:
    client, _ = client_and_labels
    response = client.post("/recommendations", content=b'{"history": [', headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    documented = client.get("/openapi.json").json()["paths"]["/recommendations"]["post"]["responses"]
    assert {"400", "413", "415", "422"} <= set(documented)


@pytest.mark.parametrize("headers", [{"content-type": "text/plain"}, {}])
def test_a_json_body_sent_as_something_else_is_415(client_and_labels, headers: dict) -> None:
    client, _ = client_and_labels
    body = b'{"history": ["b1", "b2"], "k": 3}'
    response = client.post("/recommendations", content=body, headers=headers)
    assert response.status_code == 415 and "application/json" in response.json()["detail"]
    assert "b2" not in response.text, "the body is not echoed back"


@pytest.mark.parametrize("k", [True, "3", 2.0, 2.5])
def test_k_in_a_body_is_a_strict_integer(client_and_labels, k) -> None:
    client, _ = client_and_labels
    assert client.post("/recommendations", json={"history": ["b1"], "k": k}).status_code == 422
    assert client.post("/recommendations", json={"history": ["b1"], "k": 3}).status_code == 200


def test_reader_feature_values_arrive_as_sent() -> None:
    """JSON 1 stays 1 (a categorical level "1", not "1.0") and `true` stays a bool (refused as an age, not 1.0)."""
    from booktower.data.features import CategoricalSpec, FeatureSpec, NumericSpec, SideSpec
    from booktower.serving.api import HistoryRequest
    from booktower.serving.encoder import user_rows_from

    request = HistoryRequest.model_validate_json(
        '{"history": ["b1"], "features": {"band": 1, "age": true, "height": 1.5, "town": "x", "pet": null}}')
    assert request.features == {"band": 1, "age": True, "height": 1.5, "town": "x", "pet": None}
    assert type(request.features["band"]) is int and type(request.features["age"]) is bool
    spec = FeatureSpec(SideSpec(), SideSpec([NumericSpec("age", False, 30.0, 10.0, False)],
                                            [CategoricalSpec("band", "column:band", ["<other>", "1", "2"])]),
                       1, False, [])
    assert user_rows_from(spec, [{"band": 1, "age": "31"}])["cat:band"].to_list() == ["1"]
    for wrong in (True, "1_000"):
        with pytest.raises(ValueError, match="reader feature 'age' is numeric"):
            user_rows_from(spec, [{"age": wrong}])


def test_a_misspelt_query_parameter_is_a_422_not_an_unfiltered_answer(client_and_labels) -> None:
    client, _ = client_and_labels
    response = client.get("/recommendations/u1", params={"max_per_autor": 1})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "max_per_autor"] and "max_per_author" in detail["msg"]
    assert client.get("/recommendations/u1", params={"max_per_author": 1, "k": 3}).status_code == 200
    assert client.get("/health", params={"verbose": 1}).status_code == 422


def test_ids_are_read_as_prepare_reads_them_and_unknown_ones_are_listed_once(client_and_labels) -> None:
    client, _ = client_and_labels
    spaced = client.post("/recommendations", json={"history": [" b1", "b2 ", "NOPE", "NOPE"], "k": 3}).json()
    plain = client.post("/recommendations", json={"history": ["b1", "b2"], "k": 3}).json()
    assert spaced["items"] == plain["items"] and spaced["unknown_history"] == ["NOPE"]


def test_a_spaced_path_id_is_answered_under_the_id_it_was_looked_up_as(client_and_labels) -> None:
    client, _ = client_and_labels
    similar = client.get("/items/%20b1/similar", params={"k": 2})
    assert similar.status_code == 200 and similar.json()["item_id"] == "b1"
    reader = client.get("/recommendations/u1%20", params={"k": 2})
    assert reader.status_code == 200 and reader.json()["user_id"] == "u1"
