"""A bundle's manifest as one typed object: every field a loader relies on is checked here, once.

The files are bound to the manifest by their sha256, but nothing binds the manifest itself: an edited or
hand-made manifest must fail here, naming the field, rather than as a KeyError deep in a loader.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from booktower.config.serving import IndexConfig

FORMAT = "booktower-bundle"
FORMAT_VERSION = 1
# The layout (see bundle.py's docstring); every one of these must be listed in the manifest.
MANIFEST = "manifest.json"
MODEL_DIR = "model"
ITEM_VECTORS = "item_vectors.safetensors"
USER_VECTORS = "user_vectors.safetensors"
MODEL_WEIGHTS = f"{MODEL_DIR}/model.safetensors"
MODEL_SPEC = f"{MODEL_DIR}/model.json"
FEATURE_SPEC = "feature_spec.json"
ITEMS = "items.parquet"
SEEN = "seen.parquet"
VOCAB_USERS = "vocab/users.parquet"
VOCAB_ITEMS = "vocab/items.parquet"
REQUIRED = (ITEM_VECTORS, USER_VECTORS, MODEL_WEIGHTS, MODEL_SPEC, VOCAB_USERS, VOCAB_ITEMS, FEATURE_SPEC, ITEMS, SEEN)
MODEL_SUFFIXES = (".safetensors", ".json")
REEXPORT = ("re-export the bundle (`booktower export --run RUN -o BUNDLE`, then `booktower index add` again "
            "for books added later)")


class BundleError(ValueError):
    """A bundle is missing, from another format version, or does not match its manifest."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: StrictInt = Field(ge=0)


class CatalogueColumns(BaseModel):
    """The training catalogue's column names (the run's data.columns), so that a new-books file for `index add`
    may be shaped like the catalogue. Bundles from before this field read the standard names only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str = "item_id"
    title: str | None = "title"
    author: str | None = "author"
    categories: str | None = "categories"
    nonnegative: list[str] = Field(default_factory=list)
    """Numeric columns whose negative values prepare removed (treated as missing)."""


class Manifest(BaseModel):
    """manifest.json: format, sizes, index settings, ANN report, source run, {path: FileEntry}."""

    # Unknown top-level keys are ignored (a newer booktower may add some within one format version); every key
    # that is read is typed and bounded below.
    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["booktower-bundle"]
    format_version: Literal[1]
    booktower_version: str | None = None
    created: str | None = None
    dim: StrictInt = Field(ge=1)
    n_items: StrictInt = Field(ge=1)
    n_users: StrictInt = Field(ge=0)
    n_model_items: StrictInt = Field(ge=0)
    """Books the model's ID table knows; the rest were added later (content-only vectors)."""
    added_books: StrictInt = Field(0, ge=0)
    withdrawn_books: StrictInt = Field(0, ge=0)
    """Books `index withdraw` took out of every answer (items.parquet's withdrawn column)."""
    pending_withdrawals: list[Annotated[str, Field(min_length=1, max_length=1_000)]] = Field(default_factory=list)
    """Ids withdrawn in an earlier version of the bundle that this version does not hold: books added with
    `index add`, then dropped by a re-export. `index add` adds them withdrawn; `index restore` forgets them."""
    index: IndexConfig = Field(default_factory=IndexConfig)
    catalogue: CatalogueColumns = Field(default_factory=CatalogueColumns)
    ann: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.n_model_items > self.n_items:
            raise ValueError(f"n_model_items ({self.n_model_items}) exceeds n_items ({self.n_items})")
        if self.withdrawn_books > self.n_items:
            raise ValueError(f"withdrawn_books ({self.withdrawn_books}) exceeds n_items ({self.n_items})")
        for name in self.files:
            path = PurePosixPath(name)
            if not name or path.is_absolute() or ".." in path.parts or path.as_posix() != name:
                raise ValueError(f"file entry {name!r} points outside the bundle")
            if path.parts[0] == MODEL_DIR and (len(path.parts) != 2 or path.suffix not in MODEL_SUFFIXES):
                raise ValueError(f"file entry {name!r}: model/ holds only flat .safetensors / .json files")
        return self

    @property
    def model_files(self) -> list[str]:
        """The listed files of model/, by name within it (only these are loaded: a stray file is ignored)."""
        return sorted(PurePosixPath(n).name for n in self.files if PurePosixPath(n).parts[0] == MODEL_DIR)

    def info(self) -> dict[str, Any]:
        """What travels with the parts from one version of a bundle to the next (`index add` keeps it)."""
        return {"index": self.index.model_dump(mode="json"), "ann": self.ann, "source": self.source,
                "added_books": self.added_books, "catalogue": self.catalogue.model_dump(mode="json"),
                "pending_withdrawals": list(self.pending_withdrawals)}

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_manifest(obj: Any, path: Path) -> Manifest:
    """The manifest at `path` (already decoded JSON), or a BundleError naming the field and the fix."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} manifest")
    version = obj.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # `true == 1` in Python: a bool is no version
        raise BundleError(f"{path}: bundle format version {obj.get('format_version')} is not supported "
                          f"(this booktower reads version {FORMAT_VERSION}); re-export the run")
    try:
        return Manifest.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors()[:3])
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise BundleError(f"{path}: {problems}{more}. The manifest was edited or damaged. Fix: {REEXPORT}") from None


def read_manifest_file(path: Path) -> Manifest:
    if not path.is_file():
        raise BundleError(f"{path.parent} is not a bundle: {MANIFEST} is missing (make one with `booktower export`)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    return parse_manifest(obj, path)


def why(exc: BaseException) -> str:
    """`Type: first line of the message`, for an error that wraps a library's exception."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    given = repr(error.get("input"))
    given = given if len(given) <= 60 else given[:57] + "..."
    return (f"{where}: " if where else "") + message + (
        "" if error["type"] in ("missing", "value_error") else f" (got {given})")
