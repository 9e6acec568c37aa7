"""The recommender a server or a command line answers from: a verified bundle, an index and the filters."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower.config.serving import IndexConfig, ServingConfig, with_index_kind
from booktower.data.types import Ragged
from booktower.data.vocab import UnknownIdError
from booktower.serving.bundle import TAG_SEPARATOR, BundleParts, load_bundle
from booktower.serving.encoder import Encoder, ModelEncoder
from booktower.serving.index import build_index
from booktower.serving.retrieve import Hits, allowed_mask, deepen, first_per_group, search_capped, search_filtered


@dataclass(frozen=True)
class Recommendation:
    """One result with what a page needs to show it."""

    item_id: str
    score: float
    title: str
    author: str
    categories: str

    def as_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "title": self.title, "author": self.author,
                "categories": self.categories}


@dataclass(frozen=True)
class HistoryAnswer:
    """An anonymous reader's answer (`Recommender.answer_history`): the items and what was left out of the vector."""

    items: list[Recommendation]
    unknown_history: list[str]
    """History ids this bundle does not hold (pruned at prepare, or not in the training catalogue)."""
    unpooled_history: list[str]
    """History ids the bundle holds but the model cannot pool (books added by `index add`, model without
    model.history.content): they count as reads in the history features only."""
    unknown_features: list[str]
    """Reader metadata names the model does not read."""
    because: list[str | None] | None = None
    """With explain: for each item, the read book most like it."""


class Recommender:
    """Answers known readers, anonymous readers (history) and item-to-item queries from one bundle."""

    def __init__(self, parts: BundleParts, config: ServingConfig, encoder: Encoder | None = None,
                 manifest: dict[str, Any] | None = None) -> None:
        self.parts = parts
        self.config = config
        self.encoder = encoder
        self.manifest = manifest or {}
        self.index = build_index(parts.item_vectors, config.index)
        self._vectors = np.ascontiguousarray(parts.item_vectors, dtype=np.float32)  # (n, d)
        self._ids = parts.items.ids.to_list()  # plain lists: a request touches ~10 rows, polars calls cost more
        self._titles = parts.metadata["title"].fill_null("").to_list()
        self._authors = parts.metadata["author"].fill_null("").to_list()
        self._categories = parts.metadata["categories"].fill_null("").to_list()
        self._by_tag = _tag_index(self._categories)
        self._withdrawn = np.flatnonzero(parts.withdrawn)  # excluded from every answer, like a reader's books
        self.author_groups = author_codes(self._authors)  # (n,) codes, -1: no author
        self._has_authors = bool((self.author_groups >= 0).any())  # a cap on a catalogue without any changes nothing
        # most read first, ties by index: books added after training (no reads) come last
        self._by_popularity = np.lexsort((np.arange(len(parts.popularity)), -parts.popularity))

    @classmethod
    def from_bundle(cls, directory: Path, config: ServingConfig | None = None, index_kind: str | None = None) -> Recommender:
        """Load and verify a bundle; the index settings come from the manifest unless `config` is given."""
        parts, manifest = load_bundle(Path(directory))
        if config is None:
            config = ServingConfig(index=IndexConfig.model_validate(manifest["index"]))
        if index_kind is not None:
            config = config.model_copy(update={"index": with_index_kind(config.index, index_kind)})
        return cls(parts, config, ModelEncoder.from_parts(parts, Path(directory)), manifest)

    # ---- lookups -------------------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.parts.items)

    def user_index(self, user_id: str) -> int:
        user_id = str(user_id).strip()
        try:
            return self.parts.users.index(user_id)
        except UnknownIdError:
            raise UnknownIdError(f"reader {user_id!r} is not in this bundle: a reader unknown at training time is "
                                 "served from their history (POST /recommendations, or --history)") from None

    def read_by(self, user_id: str) -> np.ndarray:
        """A known reader's books (item indices, oldest first): what their served lists leave out."""
        return self.parts.seen.row(self.user_index(user_id))

    def item_indices(self, item_ids: list[str], what: str = "item") -> np.ndarray:
        """Raw ids -> indices; an unknown id raises UnknownIdError naming it."""
        indices = np.empty(len(item_ids), dtype=np.int64)
        for i, raw in enumerate(item_ids):
            try:
                indices[i] = self.parts.items.index(raw)
            except UnknownIdError:
                raise UnknownIdError(f"{what} {raw!r} is not in this bundle: {NOT_IN_BUNDLE}") from None
        return indices

    def unknown_items(self, item_ids: list[str]) -> list[str]:
        """The ids this bundle does not hold, each once, in the order given."""
        return list(dict.fromkeys(raw for raw in _ids(item_ids, "item_ids") if raw not in self.parts.items))

    def unpooled_items(self, item_ids: list[str]) -> list[str]:
        """The ids this bundle holds but whose content the model cannot pool into a history, each once, in the
        order given: books added by `index add` to a model without model.history.content (or, with it, books
        added with no content at all). They shape an anonymous reader's vector only through the history features."""
        pools = getattr(self.encoder, "pools", None)  # an encoder that cannot say pools every book it is given
        held = [raw for raw in first_reads(_ids(item_ids, "item_ids")) if raw in self.parts.items]
        if pools is None or not held:
            return []
        mask = pools(self.item_indices(held))
        return [raw for raw, pooled in zip(held, mask.tolist()) if not pooled]

    def history_reads(self, history: list[str]) -> np.ndarray:
        """The item indices of the history's books this bundle holds, oldest first, each at its first read: prepare
        keeps a re-read book's earliest reading, so pooling a repeat again would give another vector than
        training did. A history of none it holds raises UnknownIdError."""
        history = _ids(history, "history")
        known = [raw for raw in first_reads(history) if raw in self.parts.items]
        if not known:
            raise UnknownIdError(f"none of the history's {len(history)} books is in this bundle (e.g. {history[:3]}): "
                                 f"{NOT_IN_BUNDLE}")
        return self.item_indices(known, what="history item")

    def unknown_features(self, features: dict[str, Any] | None) -> list[str]:
        """The reader metadata names the model does not read (matched exactly: `Age` is not `age`), in the
        order given; the answer is built without them."""
        known = self.encoder.reader_features() if self.encoder is not None else {}
        return [name for name in (features or {}) if name not in known]

    def category_items(self, categories: list[str]) -> np.ndarray | None:
        """Books carrying any of the tags. A tag is one element of a book's categories: `Romance`, not the
        displayed path `Books > Romance`."""
        if not categories:
            return None
        chosen = []
        for name in categories:
            if name not in self._by_tag:
                raise UnknownIdError(_unknown_category(name, self._by_tag))
            chosen.append(self._by_tag[name])
        return np.unique(np.concatenate(chosen))

    # ---- queries -------------------------------------------------------------------------------------------

    def check_k(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, Integral):
            raise TypeError(f"k must be an int, got {k!r} ({type(k).__name__})")
        if not 1 <= k <= self.config.max_k:
            raise ValueError(f"k must be in [1, {self.config.max_k}], got {k}")
        return k

    def for_user(self, user_id: str, k: int = 10, exclude: list[str] = (), categories: list[str] = (),
                 max_per_author: int | None = None) -> list[Recommendation]:
        """A known reader: the exported vector; everything they read is excluded. `max_per_author` caps the books
        of one author in the list (a series would otherwise fill it); books without an author are not capped."""
        self.check_k(k)
        user = self.user_index(user_id)
        seen = self.parts.seen.row(user)
        return self._answer(self.parts.user_vectors[user], k, seen, _ids(exclude, "exclude"),
                            _ids(categories, "categories"), max_per_author)

    def for_history(self, history: list[str], k: int = 10, exclude: list[str] = (), categories: list[str] = (),
                    features: dict[str, Any] | None = None, max_per_author: int | None = None) -> list[Recommendation]:
        """An anonymous reader: the user tower builds the vector from the history (no user ID row); the items of
        `answer_history`, which also says which ids were left out and why."""
        return self.answer_history(history, k, exclude, categories, features, max_per_author).items

    def answer_history(self, history: list[str], k: int = 10, exclude: list[str] = (), categories: list[str] = (),
                       features: dict[str, Any] | None = None, max_per_author: int | None = None,
                       explain: bool = False) -> HistoryAnswer:
        """An anonymous reader's answer, with what POST /recommendations returns beside the items.

        The history is oldest first; a book named twice counts once, at its first read (as prepare keeps it).
        Books added after training (`index add`) are excluded from the answer; they shape the vector through
        their content where the model pools a history's content (model.history.content), and not otherwise:
        they have no ID embedding to pool (`unpooled_history` lists them).

        A history names books a shop sells, not only the bundle's: ids the bundle does not hold are left out
        (`unknown_history`). A history of none it holds raises UnknownIdError; an empty one, ValueError."""
        if self.encoder is None:
            raise RuntimeError("this recommender has no model to encode anonymous readers")
        history = _ids(history, "history")
        self.check_k(k)
        if not history:
            raise ValueError("history is empty: pass the reader's books as a list of item ids, oldest first (for a "
                             "visitor who has read nothing yet, popular() answers)")
        if len(history) > self.config.max_history:
            raise ValueError(f"history holds {len(history)} items; at most {self.config.max_history} are accepted")
        read = self.history_reads(history)
        readers = [features] if features else None
        vector = self.encoder.user_vectors(Ragged.from_lists([read.tolist()]), readers)[0]  # (d,)
        rows = self._answer(vector, k, read, _ids(exclude, "exclude"), _ids(categories, "categories"), max_per_author)
        because = self.because([r.item_id for r in rows], read) if explain else None
        return HistoryAnswer(rows, self.unknown_items(history), self.unpooled_items(history),
                             self.unknown_features(features), because)

    def similar(self, item_id: str, k: int = 10, exclude: list[str] = (), categories: list[str] = (),
                max_per_author: int | None = None) -> list[Recommendation]:
        """Books nearest to one book (itself excluded); a withdrawn book may be asked about, never answered."""
        self.check_k(k)
        item = self.item_indices(_ids([item_id], "item_id"))
        return self._answer(self._vectors[item[0]], k, item, _ids(exclude, "exclude"), _ids(categories, "categories"),
                            max_per_author)

    def because(self, item_ids: list[str], read: np.ndarray) -> list[str | None]:
        """For each book of an answer, the read book most like it: the largest cosine between the item tower's
        vectors, among the last EXPLAIN_RECENT of `read` (item indices, oldest first). A "because you read" line
        chosen after the fact: the reader's vector pools every book read, and this names the one closest to each
        answer. None where nothing was read."""
        recent = np.asarray(read, dtype=np.int64)[-EXPLAIN_RECENT:]
        if recent.size == 0:
            return [None] * len(item_ids)
        answers = self._unit_rows(self.item_indices(list(item_ids)))  # (m, d)
        closest = (answers @ self._unit_rows(recent).T).argmax(axis=1)  # (m,) ties: the older read
        return [self._ids[i] for i in recent[closest]]

    def _unit_rows(self, rows: np.ndarray) -> np.ndarray:
        """Those books' vectors scaled to length 1 (per request: a normalised copy of the catalogue would double
        the memory of a large bundle)."""
        vectors = self._vectors[rows]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def popular(self, k: int = 10, exclude: list[str] = (), categories: list[str] = (),
                max_per_author: int | None = None) -> list[Recommendation]:
        """The books most read in training, for a visitor with no history yet (or a "bestsellers" slot), with the
        same filters as every other answer; the score is the number of training reads."""
        self.check_k(k)
        cap = check_cap(max_per_author)
        asked = self.item_indices([e for e in _ids(exclude, "exclude") if e in self.parts.items])
        allowed = allowed_mask(self.n_items, np.concatenate([self._withdrawn, asked]),
                               self.category_items(_ids(categories, "categories")))
        ranked = self._by_popularity if allowed is None else self._by_popularity[allowed[self._by_popularity]]
        if cap is not None and self._has_authors:
            ranked = _capped_prefix(ranked, self.author_groups, cap, k)
        top = ranked[:k]
        return self._rows(Hits(top, self.parts.popularity[top].astype(np.float32)))

    def _answer(self, vector: np.ndarray, k: int, seen: np.ndarray, exclude: list[str], categories: list[str],
                max_per_author: int | None = None) -> list[Recommendation]:
        # an excluded id the bundle lacks could not be answered anyway: nothing to exclude, no error
        asked = self.item_indices([e for e in exclude if e in self.parts.items])
        excluded = np.concatenate([seen, self._withdrawn, asked])
        allowed = allowed_mask(self.n_items, excluded, self.category_items(categories))
        overfetch = self.config.index.overfetch
        near = len(seen) + len(asked)  # withdrawn books are not nearer this reader than any others
        if check_cap(max_per_author) is None or not self._has_authors:
            return self._rows(search_filtered(self.index, self._vectors, vector, k, allowed, overfetch, near))
        return self._rows(search_capped(self.index, self._vectors, vector, k, allowed, self.author_groups,
                                        max_per_author, overfetch, near))

    def _rows(self, hits: Hits) -> list[Recommendation]:
        return [Recommendation(self._ids[i], float(score), self._titles[i], self._authors[i], self._categories[i])
                for i, score in zip(hits.ids.tolist(), hits.scores.tolist())]

    def info(self) -> dict[str, Any]:
        return {
            "status": "ok", "n_items": self.n_items, "n_withdrawn": int(self.parts.withdrawn.sum()),
            "n_users": len(self.parts.users), "dim": self.parts.dim,
            "index": self.config.index.kind, "format_version": self.manifest.get("format_version"),
            "reader_features": self.encoder.reader_features() if self.encoder is not None else {},
            "booktower_version": self.manifest.get("booktower_version"), "created": self.manifest.get("created"),
        }


EXPLAIN_RECENT = 200
"""`because` looks among a reader's most recent reads only: what they read years ago explains little."""

NOT_IN_BUNDLE = ("books pruned at prepare for too few interactions, or missing from the training catalogue, are "
                 "not in a bundle; `booktower index add --bundle B --books CATALOGUE --skip-existing` adds them")


def _capped_prefix(ranked: np.ndarray, groups: np.ndarray, cap: int, k: int) -> np.ndarray:
    """The first entries of `ranked` with at most `cap` per group, enough for k: a longer prefix is capped until
    k survive (or the whole list has been)."""
    def attempt(depth: int) -> tuple[np.ndarray, bool]:
        prefix = ranked[:depth]
        kept = prefix[first_per_group(groups[prefix], cap)]
        return kept, len(kept) >= k

    return deepen(4 * k, len(ranked), attempt)


def check_cap(max_per_author: Any) -> int | None:
    if max_per_author is None:
        return None
    if isinstance(max_per_author, bool) or not isinstance(max_per_author, Integral) or max_per_author < 1:
        raise ValueError(f"max_per_author must be a whole number of books, 1 or more (or None: no cap), got "
                         f"{max_per_author!r}")
    return int(max_per_author)


def author_codes(authors: list[str]) -> np.ndarray:
    """(n,) int64 codes of the books' authors, compared as catalogues write one name several ways: without case,
    surrounding or repeated spaces, or spaces after an initial (`J. R. R.` = `J.R.R.`); -1 for none."""
    names = (pl.Series(authors, dtype=pl.String).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
             .str.replace_all(r"\.\s+", "."))
    codes = names.cast(pl.Categorical).to_physical().cast(pl.Int64)
    return pl.select(pl.when(names.is_null() | (names == "")).then(-1).otherwise(codes)).to_series().to_numpy()


def first_reads(ids: list[str]) -> list[str]:
    """Each id once, where it first occurs (a history is oldest first: a re-read keeps its earliest place)."""
    return list(dict.fromkeys(ids))


def _ids(values: Any, name: str) -> list[str]:
    """A list of ids from any iterable of them; one string is refused (it would be read letter by letter)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list of ids, not one string: write {name}=[{values!r}]")
    try:
        return [str(v).strip() for v in values]  # as prepare strips the ids it learns
    except TypeError:
        raise TypeError(f"{name} must be a list of ids, got {type(values).__name__}") from None


def _unknown_category(name: str, tags: dict[str, np.ndarray], n: int = 5) -> str:
    """The 404 text: categories match single tags; suggest the closest ones (and the tags of a path)."""
    import difflib

    parts = [p.strip() for p in name.split(TAG_SEPARATOR.strip()) if p.strip()]
    close = [p for p in parts if p in tags and p != name]
    close += [t for t in difflib.get_close_matches(name, list(tags), n=n, cutoff=0.6) if t not in close]
    hint = f"; closest tags: {close[:n]}" if close else ""
    return (f"category {name!r} is not in the catalogue: a category filter matches one tag of a book's categories "
            f"(`Romance`, not the displayed path `Books > Romance`){hint}")


def _tag_index(categories: list[str]) -> dict[str, np.ndarray]:
    frame = pl.DataFrame({"c": categories}).with_row_index("row").with_columns(pl.col("c").str.split(TAG_SEPARATOR))
    exploded = frame.explode("c").filter(pl.col("c").is_not_null() & (pl.col("c") != ""))
    groups = exploded.group_by("c").agg(pl.col("row"))
    return {tag: np.asarray(rows, dtype=np.int64) for tag, rows in zip(groups["c"].to_list(), groups["row"].to_list())}
