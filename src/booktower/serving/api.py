"""HTTP API over one bundle (FastAPI). Every answer carries the books' display metadata.

Errors: an unknown user, book or category -> 404 naming it (an unknown category also lists the closest tags); k or
a body field out of range or of the wrong type -> 422 (`k` is a strict integer in a body: `true` or `"3"` are
refused); a body that is not valid JSON -> 400; a body sent with a Content-Type other than application/json (or
none) -> 415; a body larger than `max_body_bytes` -> 413 (checked on Content-Length and on the bytes actually
streamed). An id may hold `/` (`/items/a%2Fb/similar` and `/items/a/b/similar` both ask for book `a/b`): ids
are looked up in the bundle's vocabularies only, never as a file, so no request can make the server read one.

Category filters (`category=` on the GET routes, `categories` in the body) keep books carrying any of the given
tags; a tag is one element of a book's categories (`Romance`), not the displayed path (`Books > Romance`).

Given a bundle folder, the app follows it: a bundle rewritten by `booktower index add` or `export` is loaded
within a few seconds (see `live.py`), without a restart.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

import booktower
from booktower.config.serving import ServingConfig
from booktower.data.vocab import UnknownIdError
from booktower.serving.limits import BodySizeLimit
from booktower.serving.live import LiveRecommender
from booktower.serving.service import Recommendation, Recommender

ID_PATTERN = r"^[^\x00-\x1f]{1,200}$"
_ID_LIST_MAX = 500


class ErrorDetail(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Unknown user, book or category (named in `detail`; an unknown "
                                               "category also lists the closest tags)"},
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"model": ErrorDetail, "description": "The body is not valid JSON"},
    413: {"model": ErrorDetail, "description": "Request body too large"},
    415: {"model": ErrorDetail, "description": "The body was not sent as JSON (Content-Type: application/json)"},
}
_EXPLAIN_HELP = ("Add to each book `because`: the book of the reader's history most like it, for a 'because you "
                 "read' line (chosen after the fact among recent reads, not the model's own attribution)")
_AUTHOR_CAP_HELP = ("At most this many books by one author (a series would otherwise fill the list); books "
                    "without an author are not capped. Omitted: no cap")
_CATEGORY_HELP = ("Only books carrying one of these tags. A tag is one element of a book's categories (`Romance`), "
                  "not the displayed path (`Books > Romance`); an unknown tag is a 404 listing the closest ones")


class Item(BaseModel):
    item_id: str
    score: float
    title: str
    author: str
    categories: str
    because: str | None = Field(None, description="With explain: the read book most like this one (a 'because you "
                                                  "read' line), chosen among the reader's recent reads")


class RecommendationList(BaseModel):
    user_id: str | None = Field(None, description="The reader (null for an anonymous history request)")
    item_id: str | None = Field(None, description="The book (similar-items requests)")
    k: int
    items: list[Item]
    unknown_history: list[str] | None = Field(
        None, description="History ids this bundle does not hold (pruned at prepare, or not in the training "
        "catalogue), left out of the reader's vector (history requests only)")
    unpooled_history: list[str] | None = Field(
        None, description="History ids this bundle holds but whose content the model cannot pool: books added by "
        "`index add` to a model trained without model.history.content. They are left out of the pooled history "
        "(they still count as reads in the history features) and out of the answer (history requests only)")
    unknown_features: list[str] | None = Field(
        None, description="Reader metadata names the model does not read (names match exactly; /health lists the "
        "ones it reads), left out of the reader's vector (history requests only)")


FeatureValue = StrictBool | StrictInt | StrictFloat | StrictStr | None
"""Strict members: lax parsing turned 1 into 1.0 (the level "1.0" of a categorical feature, which no reader has)
and `true` into 1.0 (an age); each value now arrives as sent and the encoder judges it."""


class HistoryRequest(BaseModel):
    """An anonymous reader: recently read books (known ids, oldest first) and optional reader metadata."""

    model_config = ConfigDict(extra="forbid")

    history: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(..., min_length=1, max_length=_ID_LIST_MAX)
    k: StrictInt = Field(10, ge=1, le=_ID_LIST_MAX)
    features: dict[Annotated[str, Field(max_length=100)], FeatureValue] | None = Field(
        None, max_length=50, description="Reader metadata by name (e.g. age, gender; /health lists the names the model "
        "reads); other names are left out and listed in the answer's `unknown_features`, null is "
        "unknown, a numeric feature's value must be a number (422 otherwise)")
    exclude: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(default_factory=list, max_length=_ID_LIST_MAX)
    categories: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=50,
                                                                    description=_CATEGORY_HELP)
    max_per_author: StrictInt | None = Field(None, ge=1, description=_AUTHOR_CAP_HELP)
    explain: StrictBool = Field(False, description=_EXPLAIN_HELP)


class ManifestIdentity(BaseModel):
    modified: str = Field(description="The manifest file's modification time (UTC, ISO 8601)")
    bytes: int = Field(description="Its size: every write of a bundle makes a new manifest file")


class ReloadState(BaseModel):
    every_s: float | None = Field(description="Seconds between checks of the bundle folder (null: never)")
    reloads: int = Field(description="Changed bundles loaded since this worker started")
    reloaded_at: str | None = Field(description="When the last one was loaded (UTC)")
    loaded_at: str = Field(description="When the bundle being served was loaded (UTC)")
    error: str | None = Field(description="Why the bundle on disk could not be loaded, or that it is gone (null: "
                                          "neither)")
    failed_at: str | None = Field(description="When that load failed (UTC)")
    loaded_manifest: ManifestIdentity | None = Field(description="The manifest of the bundle being served")
    disk_manifest: ManifestIdentity | None = Field(description="The manifest in the bundle folder now (null: none)")


class Health(BaseModel):
    status: str = Field(description="`ok`, or `degraded`: the bundle on disk changed but failed to load, or is "
                                    "gone (its folder deleted, moved, or left missing by an interrupted write), and "
                                    "the version loaded before is still served (`reload.error` says why; fix, put "
                                    "back or re-export the bundle and the next check loads it)")
    n_items: int
    n_withdrawn: int = Field(description="books `index withdraw` keeps out of every answer")
    n_users: int
    dim: int
    index: str
    format_version: int | None
    reader_features: dict[str, str] = Field(
        default_factory=dict, description="Reader metadata a POST /recommendations may carry: name -> numeric or "
        "categorical")
    booktower_version: str | None
    created: str | None
    reload: ReloadState | None = Field(None, description="Following the bundle folder (null: a fixed bundle)")


def _items(rows: list[Recommendation], because: list[str | None] | None = None) -> list[Item]:
    reasons = because if because is not None else [None] * len(rows)
    return [Item(**row.as_dict(), because=reason) for row, reason in zip(rows, reasons)]


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _add_error_handlers(app: FastAPI) -> None:
    """404 for unknown ids, 422 for values the service refuses, 415 / 400 for bodies that are not JSON."""

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc.args[0]) if exc.args else "not found"})

    @app.exception_handler(ValueError)
    async def _invalid(_: Request, exc: ValueError) -> JSONResponse:
        # the service re-checks limits (k, history length); a request that slips past the schema gets 422, not 500
        return JSONResponse(status_code=422, content={"detail": [{"loc": ["request"], "msg": str(exc), "type": "value_error"}]})

    @app.exception_handler(RequestValidationError)
    async def _unreadable_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A body must be JSON sent as JSON: other content types get 415 (not a 422 echoing the body back), and
        # bytes that do not parse get the 400 the schema documents.
        if request.method == "POST" and exc.body and not _is_json(request.headers.get("content-type")):
            return JSONResponse(status_code=415, content={
                "detail": "send the body as JSON with the header Content-Type: application/json"})
        broken = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if broken:
            where = broken[0]["loc"][-1] if broken[0].get("loc") else "?"
            reason = (broken[0].get("ctx") or {}).get("error", "JSON decode error")
            return JSONResponse(status_code=400, content={
                "detail": f"The body is not valid JSON ({reason} at character {where})"})
        return await request_validation_exception_handler(request, exc)


def _anonymous_request_model(first: Recommender, limits: ServingConfig) -> type[HistoryRequest]:
    """The body model with this server's limits in the schema itself, so a client can see them."""

    class AnonymousRequest(HistoryRequest):
        model_config = ConfigDict(extra="forbid", title="HistoryRequest", json_schema_extra={
            "examples": [{"history": first.parts.items.ids[:3].to_list(), "k": 10}]})
        history: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(..., min_length=1,
                                                                          max_length=limits.max_history)
        k: StrictInt = Field(10, ge=1, le=limits.max_k)

    return AnonymousRequest


def _refuse_unknown_query_parameters(request: Request) -> None:
    """A misspelt filter (`?max_per_autor=1`) would otherwise be ignored and the answer silently unfiltered; the
    POST body refuses unknown fields, and so does the query string."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError([{"loc": ["query", name], "msg": f"unknown query parameter; this route takes "
                                       f"{sorted(known) or 'none'}", "type": "extra_forbidden", "input": None}
                                      for name in unknown])


class _Queries:
    """Query parameters carrying this server's limits; a fresh object per route, since FastAPI must not share them."""

    def __init__(self, limits: ServingConfig) -> None:
        self.limits = limits

    def k(self) -> Any:
        return Query(10, ge=1, le=self.limits.max_k, description=f"Number of results, 1..{self.limits.max_k}")

    def category(self) -> Any:
        return Query([], max_length=50, description=_CATEGORY_HELP)

    def author_cap(self) -> Any:
        return Query(None, ge=1, description=_AUTHOR_CAP_HELP)


def create_app(bundle: Recommender | LiveRecommender | Path | str, config: ServingConfig | None = None) -> FastAPI:
    """An app answering from `bundle`: a loaded Recommender (fixed), or a bundle folder (or LiveRecommender) that
    is loaded, verified, and reloaded when the bundle is rewritten."""
    if isinstance(bundle, (Path, str)):
        bundle = LiveRecommender(Path(bundle), config)
    fixed = bundle
    current: Callable[[], Recommender] = bundle.current if isinstance(bundle, LiveRecommender) else (lambda: fixed)
    first = current()
    app = FastAPI(title="booktower", version=booktower.__version__,
                  description="Two-tower book recommendations from a verified bundle.",
                  dependencies=[Depends(_refuse_unknown_query_parameters)])
    app.add_middleware(BodySizeLimit, max_bytes=first.config.max_body_bytes)
    _add_error_handlers(app)

    # Lookups take ~1 ms of numpy/torch: answered on the event loop, without a thread-pool hop. The anonymous
    # path runs the user tower (several ms) and stays a plain `def`, so it runs in the pool. Each request takes
    # `current()` once: a reload in between swaps the whole bundle, never half of it.
    live = bundle if isinstance(bundle, LiveRecommender) else None

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        info = current().info()
        return info if live is None else {**info, **live.health()}

    _add_reader_routes(app, current, first)
    _add_book_routes(app, current, first)
    return app


def _add_reader_routes(app: FastAPI, current: Callable[[], Recommender], first: Recommender) -> None:
    """/recommendations: a known reader (GET) and an anonymous reader's history (POST)."""
    queries = _Queries(first.config)
    user_example = first.parts.users.ids[0] if len(first.parts.users) else "u1"

    # `:path`: a reader id may hold `/` (sent as %2F or as it is), and must reach the 404 naming it
    @app.get("/recommendations/{user_id:path}", response_model=RecommendationList, responses=_ERRORS)
    async def recommend_user(user_id: str = PathParam(..., pattern=ID_PATTERN, examples=[user_example]),
                             k: int = queries.k(), category: list[str] = queries.category(),
                             max_per_author: int | None = queries.author_cap(),
                             explain: bool = Query(False, description=_EXPLAIN_HELP)) -> RecommendationList:
        """A known reader's top-k; books they have read are excluded."""
        rec = current()
        rows = rec.for_user(user_id, k, categories=category, max_per_author=max_per_author)
        because = rec.because([r.item_id for r in rows], rec.read_by(user_id)) if explain else None
        return RecommendationList(user_id=user_id.strip(), k=k, items=_items(rows, because))

    def recommend_history(request) -> RecommendationList:  # type: ignore[no-untyped-def]
        """An anonymous reader: the user tower builds the vector from the history; history books are excluded."""
        answer = current().answer_history(request.history, request.k, request.exclude, request.categories,
                                          request.features, request.max_per_author, request.explain)
        return RecommendationList(k=request.k, items=_items(answer.items, answer.because),
                                  unknown_history=answer.unknown_history, unpooled_history=answer.unpooled_history,
                                  unknown_features=answer.unknown_features)

    # The body model is local (it carries this server's limits): give FastAPI the class, not a string annotation.
    recommend_history.__annotations__["request"] = _anonymous_request_model(first, first.config)
    app.post("/recommendations", response_model=RecommendationList, responses=_BODY_ERRORS)(recommend_history)


def _add_book_routes(app: FastAPI, current: Callable[[], Recommender], first: Recommender) -> None:
    """/popular and /items/{item_id}/similar: answers that start from books, not from a reader."""
    queries = _Queries(first.config)
    item_example = first.parts.items.ids[0]

    @app.get("/popular", response_model=RecommendationList, responses=_ERRORS)
    async def popular(k: int = queries.k(), category: list[str] = queries.category(),
                      max_per_author: int | None = queries.author_cap(),
                      exclude: list[str] = Query([], max_length=_ID_LIST_MAX,
                                                 description="Books not to return (e.g. those in the basket)")
                      ) -> RecommendationList:
        """The books most read in training (score: training reads), for a visitor with no history yet or a
        bestsellers slot; withdrawn books are left out, and the category and author filters apply."""
        rows = current().popular(k, exclude, category, max_per_author)
        return RecommendationList(k=k, items=_items(rows))

    # `:path`: a book id may hold `/`; the greedy match ends at the last `/similar`, so `a/similar` works too
    @app.get("/items/{item_id:path}/similar", response_model=RecommendationList, responses=_ERRORS)
    async def similar(item_id: str = PathParam(..., pattern=ID_PATTERN, examples=[item_example]),
                      k: int = queries.k(), category: list[str] = queries.category(),
                      max_per_author: int | None = queries.author_cap()) -> RecommendationList:
        """Books nearest to one book in the item tower's space (the book itself excluded), optionally only those
        carrying one of the `category` tags (as on /recommendations)."""
        rows = current().similar(item_id, k, categories=category, max_per_author=max_per_author)
        return RecommendationList(item_id=item_id.strip(), k=k, items=_items(rows))  # as it was looked up
