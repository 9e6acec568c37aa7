"""HTTP API over one bundle (FastAPI). Every answer carries the books' display metadata.

Errors: an unknown user, book or category -> 404 naming it; k or a body field out of range -> 422; a body
larger than `max_body_bytes` -> 413 (checked on Content-Length and on the bytes actually streamed). No route
takes a path or file name, so no request can make the server read a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

import booktower
from booktower.config.serving import ServingConfig
from booktower.data.vocab import UnknownIdError
from booktower.serving.limits import BodySizeLimit
from booktower.serving.service import Recommendation, Recommender

ID_PATTERN = r"^[^\x00-\x1f]{1,200}$"
_ID_LIST_MAX = 500


class ErrorDetail(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Unknown user, book or category (named in `detail`)"},
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"model": ErrorDetail, "description": "The body is not valid JSON"},
    413: {"model": ErrorDetail, "description": "Request body too large"},
}


class Item(BaseModel):
    item_id: str
    score: float
    title: str
    author: str
    categories: str


class RecommendationList(BaseModel):
    user_id: str | None = Field(None, description="The reader (null for an anonymous history request)")
    item_id: str | None = Field(None, description="The book (similar-items requests)")
    k: int
    items: list[Item]


class HistoryRequest(BaseModel):
    """An anonymous reader: recently read books (known ids, oldest first) and optional reader metadata."""

    model_config = ConfigDict(extra="forbid")

    history: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(..., min_length=1, max_length=_ID_LIST_MAX)
    k: int = Field(10, ge=1, le=_ID_LIST_MAX)
    features: dict[Annotated[str, Field(max_length=100)], float | str | None] | None = Field(
        None, max_length=50, description="Reader metadata by name (e.g. age, gender); unknown names are ignored")
    exclude: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(default_factory=list, max_length=_ID_LIST_MAX)
    categories: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=50)


class Health(BaseModel):
    status: str
    n_items: int
    n_users: int
    dim: int
    index: str
    format_version: int | None
    booktower_version: str | None
    created: str | None


def _items(rows: list[Recommendation]) -> list[Item]:
    return [Item(**row.as_dict()) for row in rows]


def create_app(bundle: Recommender | Path | str, config: ServingConfig | None = None) -> FastAPI:
    """An app answering from `bundle` (a loaded Recommender, or a bundle folder to load and verify)."""
    recommender = bundle if isinstance(bundle, Recommender) else Recommender.from_bundle(Path(bundle), config)
    limits = recommender.config
    app = FastAPI(title="booktower", version=booktower.__version__,
                  description="Two-tower book recommendations from a verified bundle.")
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)

    user_example = recommender.parts.users.ids[0] if len(recommender.parts.users) else "u1"
    item_example = recommender.parts.items.ids[0]

    def k_query() -> Any:  # a fresh parameter object per route: FastAPI must not share them
        return Query(10, ge=1, le=limits.max_k, description=f"Number of results, 1..{limits.max_k}")

    class AnonymousRequest(HistoryRequest):
        """The limits of this server in the schema itself, so a client can see them."""

        model_config = ConfigDict(extra="forbid", title="HistoryRequest", json_schema_extra={
            "examples": [{"history": recommender.parts.items.ids[:3].to_list(), "k": 10}]})
        history: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(..., min_length=1,
                                                                          max_length=limits.max_history)
        k: int = Field(10, ge=1, le=limits.max_k)

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc.args[0]) if exc.args else "not found"})

    @app.exception_handler(ValueError)
    async def _invalid(_: Request, exc: ValueError) -> JSONResponse:
        # the service re-checks limits (k, history length); a request that slips past the schema gets 422, not 500
        return JSONResponse(status_code=422, content={"detail": [{"loc": ["request"], "msg": str(exc), "type": "value_error"}]})

    # Lookups take ~1 ms of numpy/torch: answered on the event loop, without a thread-pool hop. The anonymous
    # path runs the user tower (several ms) and stays a plain `def`, so it runs in the pool.
    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return recommender.info()

    @app.get("/recommendations/{user_id}", response_model=RecommendationList, responses=_ERRORS)
    async def recommend_user(user_id: str = PathParam(..., pattern=ID_PATTERN, examples=[user_example]), k: int = k_query(),
                       category: list[str] = Query([], max_length=50, description="Only books in these categories"),
                       ) -> RecommendationList:
        """A known reader's top-k; books they have read are excluded."""
        rows = recommender.for_user(user_id, k, categories=category)
        return RecommendationList(user_id=user_id, k=k, items=_items(rows))

    def recommend_history(request) -> RecommendationList:  # type: ignore[no-untyped-def]
        """An anonymous reader: the user tower builds the vector from the history; history books are excluded."""
        rows = recommender.for_history(request.history, request.k, request.exclude, request.categories,
                                       request.features)
        return RecommendationList(k=request.k, items=_items(rows))

    # The body model is local (it carries this server's limits): give FastAPI the class, not a string annotation.
    recommend_history.__annotations__["request"] = AnonymousRequest
    app.post("/recommendations", response_model=RecommendationList, responses=_BODY_ERRORS)(recommend_history)

    @app.get("/items/{item_id}/similar", response_model=RecommendationList, responses=_ERRORS)
    async def similar(item_id: str = PathParam(..., pattern=ID_PATTERN, examples=[item_example]), k: int = k_query()) -> RecommendationList:
        """Books nearest to one book in the item tower's space (the book itself excluded)."""
        return RecommendationList(item_id=item_id, k=k, items=_items(recommender.similar(item_id, k)))

    return app
