"""Synthetic book data in the Amazon Reviews 2023 Books format, with structure a model can learn.

Planted structure (each a signal a two-tower model can pick up, and popularity cannot):
- genres and sub-genres form the category path; titles use genre-specific words, so title text predicts genre;
- each reader has a taste (a few genres) and a couple of favourite authors who write in those genres;
- about half the books belong to series, written by one author, and readers read a series in order;
- popularity within a genre follows a power law (Zipf), so popularity is a strong but beatable baseline;
- each reader's events are in time order, with gaps of days, between 2016 and 2023.

Everything is vectorised over books and readers (one numpy step per position in the reading history), so
100k readers take seconds. Randomness comes from one `np.random.Generator` built from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from booktower.utils.atomic import atomic_path

# genre -> (sub-genres, title nouns, title adjectives). The words are themed so titles carry genre signal.
GENRES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "Science Fiction & Fantasy": (["Fantasy", "Science Fiction", "Epic"],
                                  ["Dragon", "Crown", "Sword", "Star", "Realm", "Mage", "Throne", "Galaxy"],
                                  ["Shattered", "Hidden", "Iron", "Burning", "Last", "Starborn"]),
    "Mystery, Thriller & Suspense": (["Mystery", "Thrillers & Suspense", "Crime"],
                                     ["Murder", "Detective", "Witness", "Secret", "Alibi", "Grave", "Cipher"],
                                     ["Silent", "Deadly", "Cold", "Final", "Dark", "Missing"]),
    "Romance": (["Contemporary", "Historical Romance", "Romantic Comedy"],
                ["Heart", "Kiss", "Duke", "Wedding", "Promise", "Summer", "Love"],
                ["Sweet", "Secret", "Forbidden", "Perfect", "Wild", "Tender"]),
    "Literature & Fiction": (["Literary Fiction", "Poetry", "Classics"],
                             ["River", "House", "Garden", "Daughter", "Silence", "Light", "Year"],
                             ["Quiet", "Distant", "Small", "Golden", "Lost", "Long"]),
    "History": (["Military", "Americas", "World"],
                ["War", "Empire", "Revolution", "Battle", "Republic", "Campaign", "Frontier"],
                ["Great", "Forgotten", "Bloody", "Ancient", "Civil", "Imperial"]),
    "Biographies & Memoirs": (["Leaders & Notable People", "Memoirs", "Sports"],
                              ["Life", "Journey", "Memoir", "Story", "Legacy", "Road", "Years"],
                              ["Remarkable", "Unlikely", "Brave", "True", "Ordinary", "American"]),
    "Children's Books": (["Animals", "Fairy Tales", "Early Learning"],
                         ["Bunny", "Bear", "Puppy", "Dinosaur", "Bedtime", "Friend", "Tractor"],
                         ["Little", "Happy", "Sleepy", "Big", "Silly", "Brave"]),
    "Cookbooks, Food & Wine": (["Baking", "Quick & Easy", "Vegetarian"],
                               ["Kitchen", "Bread", "Recipes", "Table", "Soup", "Feast", "Pantry"],
                               ["Simple", "Healthy", "Homemade", "Fresh", "Everyday", "Rustic"]),
    "Business & Money": (["Management & Leadership", "Investing", "Marketing"],
                         ["Leader", "Money", "Strategy", "Habits", "Startup", "Markets", "Growth"],
                         ["Effective", "Lean", "Smart", "Rich", "Essential", "Agile"]),
    "Science & Math": (["Biology", "Physics", "Mathematics"],
                       ["Universe", "Gene", "Atom", "Number", "Brain", "Evolution", "Quantum"],
                       ["Elegant", "Hidden", "Infinite", "Curious", "Selfish", "Brief"]),
    "Health, Fitness & Dieting": (["Diets", "Exercise", "Mental Health"],
                                  ["Body", "Diet", "Sleep", "Mind", "Strength", "Gut", "Energy"],
                                  ["Healthy", "Strong", "Whole", "Calm", "Lean", "Mindful"]),
    "Teen & Young Adult": (["Fantasy", "Romance", "Dystopian"],
                           ["Academy", "Rebel", "Rose", "Shadow", "Games", "Curse", "Chosen"],
                           ["Wicked", "Cruel", "Fierce", "Broken", "Stolen", "Midnight"]),
}
SERIES_SUFFIX = ["Chronicles", "Saga", "Trilogy", "Cycle", "Series", "Mysteries", "Files", "Legacy"]
FIRST_NAMES = ["Anna", "James", "Maria", "David", "Sarah", "Michael", "Laura", "Peter", "Emma", "John", "Olivia",
               "Robert", "Grace", "Daniel", "Clara", "Thomas", "Helen", "Samuel", "Nora", "Lucas", "Ruth", "Henry"]
LAST_NAMES = ["Smith", "Walker", "Marshall", "Bennett", "Hughes", "Carter", "Reyes", "Novak", "Khan", "Ford",
              "Ellis", "Moreau", "Okafor", "Lindqvist", "Tanaka", "Silva", "Brennan", "Castillo", "Whitfield",
              "Ashford", "Harlow", "Delacroix", "Mercer", "Quinn", "Sato", "Holloway"]
START_MS = 1_451_606_400_000  # 2016-01-01 UTC
SPAN_MS = 7 * 365 * 86_400_000


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and strengths of the planted structure."""

    n_users: int = 2000
    n_books: int = 1500
    mean_history: float = 26.0  # mean interactions per reader before de-duplication
    zipf_exponent: float = 1.0  # popularity within a genre ~ rank^-exponent
    series_share: float = 0.5  # share of books that belong to a series
    p_continue_series: float = 0.5  # chance a reader's next book continues the series they are reading
    p_favourite_author: float = 0.2  # chance the next book is by a favourite author
    p_off_taste: float = 0.05  # chance the next book is from a random genre

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.n_books < 1:
            raise ValueError(f"synthetic data needs at least one reader and one book (got {self.n_users} readers, "
                             f"{self.n_books} books)")
        if not (np.isfinite(self.mean_history) and self.mean_history >= 1):
            raise ValueError(f"mean_history must be a finite number >= 1, got {self.mean_history}")
        probabilities = (self.series_share, self.p_continue_series, self.p_favourite_author, self.p_off_taste)
        if not all(0 <= p <= 1 for p in probabilities):
            raise ValueError(f"shares and probabilities must lie in [0, 1], got {probabilities}")


@dataclass
class Catalogue:
    genre: np.ndarray  # (n,) int genre index
    sub: np.ndarray  # (n,) int sub-genre index within the genre
    author: np.ndarray  # (n,) int author index
    next_in_series: np.ndarray  # (n,) int index of the next book in its series, -1 when none
    first_of_series: np.ndarray  # (n,) int index of the first book of its series (itself when standalone)
    popularity: np.ndarray  # (n,) float sampling weight within the genre
    frame: pl.DataFrame  # the books.csv table


def _codes(rng: np.random.Generator, n: int, width: int, alphabet: str) -> np.ndarray:
    """n distinct random-looking fixed-width codes over `alphabet`.

    The last `unique_width` characters spell a random bijection of 0..n-1 (so codes are distinct); the rest are
    random filler.
    """
    base = len(alphabet)
    unique_width = 1
    while base**unique_width < n:
        unique_width += 1
    if unique_width > min(width, 12):
        raise ValueError(f"{width} characters of base {base} cannot hold {n} distinct codes")
    numbers = rng.permutation(n).astype(np.int64)
    # Spread the numbers over the whole unique range so codes do not all start with the same character.
    spread = max(base**unique_width // max(n, 1), 1)
    numbers = numbers * spread + rng.integers(0, spread, n)
    powers = base ** np.arange(unique_width - 1, -1, -1, dtype=np.int64)
    digits = np.concatenate([rng.integers(0, base, (n, width - unique_width)),
                             (numbers[:, None] // powers) % base], axis=1)  # (n, width)
    chars = np.frombuffer(alphabet.encode(), dtype=np.uint8)[digits]  # (n, width)
    return np.ascontiguousarray(chars).view(f"S{width}").ravel().astype(str)


def _words(words: list[str], index: np.ndarray) -> pl.Series:
    return pl.Series(words, dtype=pl.String).gather(index)


def _assign_series(
    rng: np.random.Generator, genre: np.ndarray, share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group books of one genre into series of 2-6.

    Returns per book: series id (-1 = standalone), position in the series (from 1), the next book of the
    series (-1 = none) and the first book of its series (itself when standalone).
    """
    n = len(genre)
    members = np.flatnonzero(rng.random(n) < share)
    members = members[np.argsort(genre[members], kind="stable")]  # a series stays within one genre
    m = len(members)
    lengths = rng.integers(2, 7, size=m // 2 + 1)
    boundary = np.zeros(m, dtype=bool)
    starts = np.cumsum(lengths)
    boundary[starts[starts < m]] = True
    boundary[1:] |= genre[members][1:] != genre[members][:-1]  # a change of genre starts a new series
    if m:
        boundary[0] = True
    sid = np.cumsum(boundary) - 1  # (m,)
    first = np.flatnonzero(boundary)
    pos = np.arange(m) - first[sid] + 1
    series_id, position = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    series_id[members], position[members] = sid, pos
    next_in_series = np.full(n, -1, dtype=np.int64)
    continues = np.r_[~boundary[1:], False] if m else np.zeros(0, dtype=bool)
    next_in_series[members[continues]] = members[np.flatnonzero(continues) + 1]
    first_of_series = np.arange(n)
    first_of_series[members] = members[first[sid]]
    return series_id, position, next_in_series, first_of_series


def make_catalogue(rng: np.random.Generator, config: SynthConfig) -> Catalogue:
    n = config.n_books
    names = list(GENRES)
    genre_weight = rng.dirichlet(np.full(len(names), 3.0))
    genre = rng.choice(len(names), size=n, p=genre_weight)
    sub = rng.integers(0, 3, size=n)
    _, position, next_in_series, first_of_series = _assign_series(rng, genre, config.series_share)

    # Authors write in one genre; a series has one author.
    n_authors = max(len(names), n // 6)
    author_genre = np.arange(n_authors) % len(names)
    author = np.empty(n, dtype=np.int64)
    for g in range(len(names)):  # 12 genres: a tiny loop; the work inside is vectorised
        pool = np.flatnonzero(author_genre == g)
        members = np.flatnonzero(genre == g)
        author[members] = pool[rng.integers(0, len(pool), size=len(members))]
    author = author[first_of_series]

    # Zipf popularity within each genre; a series' later books are read less (readers drop out).
    rank = np.empty(n, dtype=np.float64)
    order = rng.permutation(n)
    rank[order] = np.arange(1, n + 1)
    popularity = rank ** -config.zipf_exponent * np.where(position > 1, 0.6 ** (position - 1), 1.0)
    frame = _books_frame(rng, genre, sub, author, first_of_series, position, popularity, names)
    return Catalogue(genre, sub, author, next_in_series, first_of_series, popularity, frame)


def _title_parts(rng: np.random.Generator, genre: np.ndarray, names: list[str]) -> tuple[pl.Series, pl.Series]:
    """A core title ("The Hidden Crown") and a series name ("Crown Chronicles") per book, genre-themed."""
    n = len(genre)
    nouns, adjs = [GENRES[name][1] for name in names], [GENRES[name][2] for name in names]
    max_n, max_a = min(map(len, nouns)), min(map(len, adjs))  # equal-width tables: index = genre * width + k
    noun_table = [w for g in range(len(names)) for w in nouns[g][:max_n]]
    adj_table = [w for g in range(len(names)) for w in adjs[g][:max_a]]
    noun_index = rng.integers(0, max_n, n)
    noun = _words(noun_table, genre * max_n + noun_index)
    noun2 = _words(noun_table, genre * max_n + (noun_index + rng.integers(1, max_n, n)) % max_n)
    adj = _words(adj_table, genre * max_a + rng.integers(0, max_a, n))
    template = rng.integers(0, 3, n)
    frame = pl.DataFrame({"noun": noun, "noun2": noun2, "adj": adj, "t": template})
    core = frame.select(
        pl.when(pl.col("t") == 0).then(pl.concat_str([pl.lit("The "), "adj", pl.lit(" "), "noun"]))
        .when(pl.col("t") == 1).then(pl.concat_str(["noun", pl.lit(" of the "), "adj", pl.lit(" "), "noun2"]))
        .otherwise(pl.concat_str([pl.lit("A "), "noun", pl.lit(" for the "), "noun2"]))
    ).to_series()
    suffix = _words(SERIES_SUFFIX, rng.integers(0, len(SERIES_SUFFIX), n))
    series_name = noun2 + " " + suffix
    return core, series_name


def _books_frame(
    rng: np.random.Generator, genre: np.ndarray, sub: np.ndarray, author: np.ndarray, first_of_series: np.ndarray,
    position: np.ndarray, popularity: np.ndarray, names: list[str],
) -> pl.DataFrame:
    n = len(genre)
    core, series_name = _title_parts(rng, genre, names)
    # Every book of a series shares the series name (and sub-genre) of its first book.
    has_series = position > 0
    series_name = series_name.gather(first_of_series)
    sub = sub[first_of_series]
    title = pl.select(
        pl.when(pl.Series(has_series))
        .then(pl.concat_str([core, pl.lit(" ("), series_name, pl.lit(" Book "), pl.Series(position).cast(pl.String),
                             pl.lit(")")]))
        .otherwise(core)
    ).to_series()
    sub_names = [s for name in names for s in GENRES[name][0]]
    genre_name = _words(names, genre)
    sub_name = _words(sub_names, genre * 3 + sub)
    author_name = _words(FIRST_NAMES, author % len(FIRST_NAMES)) + " " + _words(
        LAST_NAMES, (author // len(FIRST_NAMES)) % len(LAST_NAMES))
    # Authors beyond the name grid get an initial so every author name is distinct.
    initial = _words([f" {c}." for c in "ABCDEFGHIJKLMNOPRSTW"], (author // (len(FIRST_NAMES) * len(LAST_NAMES))) % 20)
    author_name = pl.select(
        pl.when(pl.Series(author >= len(FIRST_NAMES) * len(LAST_NAMES)))
        .then(_words(FIRST_NAMES, author % len(FIRST_NAMES)) + initial + " "
              + _words(LAST_NAMES, (author // len(FIRST_NAMES)) % len(LAST_NAMES)))
        .otherwise(author_name)
    ).to_series()
    rating_number = np.maximum(1, np.round(popularity / popularity.max() * 20_000 * rng.lognormal(0, 0.5, n)))
    average_rating = np.clip(np.round(rng.normal(4.3, 0.3, n), 1), 1.0, 5.0)
    price = np.round(rng.lognormal(np.log(12.0), 0.5, n), 2)
    price_text = pl.Series(price).cast(pl.String)
    price_text = pl.select(pl.when(pl.Series(rng.random(n) < 0.05)).then(None).otherwise(price_text)).to_series()
    asin = _codes(rng, n, 9, "0123456789")
    kindle = rng.random(n) < 0.3
    asin = np.where(kindle, np.char.add("B0", _codes(rng, n, 8, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")),
                    np.char.add("1", asin))
    return pl.DataFrame({
        "title": '["' + title + '"]',
        "author": author_name,
        "average_rating": average_rating,
        "rating_number": rating_number.astype(np.int64),
        "price": price_text,
        "categories": '["Books", "' + genre_name + '", "' + sub_name + '"]',
        "parent_asin": asin,
    })


@dataclass
class Readers:
    taste: np.ndarray  # (U, G) probability of each genre
    favourite_authors: np.ndarray  # (U, 2) author indices
    history_length: np.ndarray  # (U,) planned number of reads


def make_readers(rng: np.random.Generator, catalogue: Catalogue, config: SynthConfig) -> Readers:
    n_genres = len(GENRES)
    # Sparse tastes: a Dirichlet with a small concentration puts most mass on one to three genres.
    taste = rng.dirichlet(np.full(n_genres, 0.25), size=config.n_users)  # (U, G)
    main_genre = _sample_rows(rng, taste)
    # Favourite authors: two authors of the reader's main genre (weighted by how much they wrote).
    books_by_genre = np.argsort(catalogue.genre, kind="stable")
    genre_start = np.searchsorted(catalogue.genre[books_by_genre], np.arange(n_genres + 1))
    picks = np.empty((config.n_users, 2), dtype=np.int64)
    for j in range(2):
        start, stop = genre_start[main_genre], genre_start[main_genre + 1]
        offset = np.floor(rng.random(config.n_users) * np.maximum(stop - start, 1)).astype(np.int64)
        book = books_by_genre[np.minimum(start + offset, len(books_by_genre) - 1)]
        picks[:, j] = catalogue.author[book]
    length = 3 + np.floor(rng.lognormal(np.log(max(config.mean_history - 3, 1.0)) - 0.32, 0.8, config.n_users))
    return Readers(taste, picks, np.minimum(length, 400).astype(np.int64))


def _sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (rows, k) probability matrix."""
    cdf = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities))[:, None] * cdf[:, -1:]
    return np.minimum((u > cdf).sum(axis=1), probabilities.shape[1] - 1)


class _GroupSampler:
    """Draw a book from a group (genre or author) with probability proportional to popularity, vectorised."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int) -> None:
        self.order = np.argsort(group, kind="stable")
        self.start = np.searchsorted(group[self.order], np.arange(n_groups + 1))
        cum = np.cumsum(weight[self.order])
        self.cum = cum
        self.base = np.r_[0.0, cum][self.start]  # cumulative weight before each group

    def draw(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        lo, hi = self.base[groups], self.base[groups + 1]
        target = lo + rng.random(len(groups)) * (hi - lo)
        pos = np.searchsorted(self.cum, target, side="right")
        pos = np.clip(pos, self.start[groups], np.maximum(self.start[groups + 1] - 1, self.start[groups]))
        return self.order[np.minimum(pos, len(self.order) - 1)]


def simulate_reading(rng: np.random.Generator, catalogue: Catalogue, readers: Readers, config: SynthConfig) -> pl.DataFrame:
    """Reading histories, one vectorised step per history position: (user, book, timestamp ms)."""
    n_users, n_genres = len(readers.taste), len(GENRES)
    by_genre = _GroupSampler(catalogue.genre, catalogue.popularity, n_genres)
    by_author = _GroupSampler(catalogue.author, catalogue.popularity, int(catalogue.author.max()) + 1)
    first_of_series = catalogue.first_of_series
    clock = START_MS + (rng.random(n_users) * 0.8 * SPAN_MS).astype(np.int64)  # (U,) time of the next read
    pending = np.full(n_users, -1, dtype=np.int64)  # next unread book of the series in progress
    users, books, stamps = [], [], []
    for t in range(int(readers.history_length.max())):
        active = np.flatnonzero(readers.history_length > t)
        k = len(active)
        genre = _sample_rows(rng, readers.taste[active])
        off_taste = rng.random(k) < config.p_off_taste
        genre[off_taste] = rng.integers(0, n_genres, int(off_taste.sum()))
        book = by_genre.draw(rng, genre)
        # Readers who meet a series by chance start it at book 1.
        book = np.where(rng.random(k) < 0.7, first_of_series[book], book)
        fav = rng.random(k) < config.p_favourite_author
        author = readers.favourite_authors[active, rng.integers(0, 2, k)]
        book = np.where(fav, by_author.draw(rng, author), book)
        cont = (pending[active] >= 0) & (rng.random(k) < config.p_continue_series)
        book = np.where(cont, pending[active], book)
        pending[active] = np.where(catalogue.next_in_series[book] >= 0, catalogue.next_in_series[book],
                                   np.where(cont, -1, pending[active]))
        gap = (rng.exponential(5.0, k) * 86_400_000).astype(np.int64) + rng.integers(60_000, 3_600_000, k)
        clock[active] += gap
        users.append(active)
        books.append(book)
        stamps.append(clock[active].copy())
    frame = pl.DataFrame({
        "user": np.concatenate(users), "book": np.concatenate(books), "timestamp": np.concatenate(stamps),
    })
    # A reader reviews a book once: keep the first read of each (user, book).
    return frame.sort(["user", "timestamp"]).unique(["user", "book"], keep="first", maintain_order=True)


def generate(config: SynthConfig, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(books, users) tables in the Amazon Reviews 2023 Books CSV format."""
    rng = np.random.default_rng(seed)
    catalogue = make_catalogue(rng, config)
    readers = make_readers(rng, catalogue, config)
    reads = simulate_reading(rng, catalogue, readers, config)
    user_ids = np.char.add("A", _codes(rng, config.n_users, 27, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
    users = pl.DataFrame({
        "parent_asin": catalogue.frame["parent_asin"].gather(reads["book"]),
        "userId": pl.Series(user_ids).gather(reads["user"]),
        "timestamp": reads["timestamp"],
    })
    return catalogue.frame, users


def write_synthetic(output_dir: Path, config: SynthConfig, seed: int) -> dict[str, int | str]:
    """Write books.csv and users.csv atomically; returns what was written (for the CLI to print)."""
    books, users = generate(config, seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("books.csv", books), ("users.csv", users)):
        with atomic_path(output_dir / name) as tmp:
            frame.write_csv(tmp)
    return {
        "books": books.height, "users": int(users["userId"].n_unique()), "interactions": users.height,
        "books_path": str(output_dir / "books.csv"), "users_path": str(output_dir / "users.csv"),
    }
