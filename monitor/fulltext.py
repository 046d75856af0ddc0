"""Full-text search helpers shared by the store (indexing) and the archive (querying).

PostgreSQL searches with its own ``russian`` text-search configuration (Snowball stems). SQLite has no
Russian stemmer, so every post also gets a *lemmatised shadow text* (``posts.search_lemmas``): each
word replaced by its pymorphy3 lemma, which an FTS5 table indexes. A query is lemmatised the same way,
so «кислота» finds «кислоты» on both databases.

The shadow text keeps one lemma per word in the original order (so phrase queries stay positional) and
appends, after the words, the other plausible lemmas of ambiguous words («стали» → стать, and сталь
after the text), so a one-word query for either reading finds the post.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # SQLAlchemy is imported where it is used: matching worker processes load this module
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

__all__ = [
    "ParsedQuery",
    "QueryError",
    "build_index",
    "forms_of",
    "fts5_query",
    "lemmas_of",
    "lemmatize",
    "mark_snippet",
    "parse_query",
    "pending",
    "sync_index",
    "text_hash",
    "websearch_query",
]

WORD = re.compile(r"\w+(?:-\w+)*")
# An alternative reading must have at least this pymorphy3 score to be indexed: rarer readings
# («путин» as a form of «путина», the fishing season) only add false hits.
_ALT_MIN_SCORE = 0.01
_MAX_FORMS = 48  # a verb's lexeme has ~100 forms (participles); a noun or name needs far fewer
_MAX_WORD = 64  # longer "words" are hashes, URLs or base64: indexed as they are, never parsed


def _fold(word: str) -> str:
    return word.lower().replace("ё", "е")


@lru_cache(maxsize=200_000)
def lemmas_of(word: str) -> tuple[str, tuple[str, ...]]:
    """(primary lemma, other plausible lemmas) of one lower-cased, ё-folded word.

    Cached: Russian text is Zipf-distributed, so after a few thousand posts nearly every word is a
    cache hit and lemmatising costs a dict lookup instead of a pymorphy3 parse (~15 µs)."""
    if len(word) > _MAX_WORD or word.isdigit() or word.isascii():
        # Latin words, numbers and tokens have no Russian morphology; pymorphy3 would return them as is.
        return word, ()
    from monitor.matching.forms import morph  # the shared analyser, loaded once per process

    parses = morph().parse(word)
    if not parses:
        return word, ()
    primary = _fold(parses[0].normal_form)
    alts: list[str] = []
    for p in parses[1:]:
        lemma = _fold(p.normal_form)
        if p.score >= _ALT_MIN_SCORE and lemma != primary and lemma not in alts:
            alts.append(lemma)
    return primary, tuple(alts)


@lru_cache(maxsize=20_000)
def forms_of(word: str) -> tuple[str, ...]:
    """Every inflected form of the word's plausible lemmas (the word itself first), for PostgreSQL.

    Snowball stems a form at a time and is inconsistent on names («Газпром» → газпр, «Газпромом» →
    газпром), so a PostgreSQL query ORs the stems of all of a word's forms instead of trusting one."""
    word = _fold(word)
    if len(word) > _MAX_WORD or word.isdigit() or word.isascii():
        return (word,)
    from monitor.matching.forms import morph

    out: dict[str, None] = {word: None}
    parses = morph().parse(word)
    for i, p in enumerate(parses):
        if i and p.score < _ALT_MIN_SCORE:
            continue
        for f in p.lexeme:
            out.setdefault(_fold(f.word), None)
            if len(out) >= _MAX_FORMS:
                return tuple(out)
    return tuple(out)


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def text_hash(text: str) -> str | None:
    """A hash of the text with case, punctuation and spacing folded, to spot the same story reposted."""
    folded = _NON_WORD.sub(" ", _fold(text)).strip()
    if len(folded) < 40:  # short texts ("Фото", "Видео") repeat by chance, not as reposts
        return None
    return hashlib.sha1(folded.encode()).hexdigest()


def lemmatize(text: str) -> str:
    """The shadow text of ``text`` for the SQLite FTS5 index (empty for empty text)."""
    if not text:
        return ""
    words = WORD.findall(_fold(text))
    if not words:
        return ""
    primaries: list[str] = []
    extra: set[str] = set()
    for w in words:
        primary, alts = lemmas_of(w)
        primaries.append(primary)
        if alts:
            extra.update(alts)
    if extra:
        extra.difference_update(primaries)
        if extra:
            return " ".join(primaries) + " " + " ".join(sorted(extra))
    return " ".join(primaries)


def _lemmatized(rows: Sequence[Any]) -> list[tuple[int, str, str]]:
    """(id, text, lemmas) of stored (id, text) rows: run in a thread by the caller, off the event loop."""
    return [(i, t or "", lemmatize(t or "")) for i, t in rows]


_FTS_INSERT_RAW = "INSERT INTO posts_fts (rowid, search_lemmas)"
# An external-content FTS5 table forgets a row only when told the exact text it indexed.
_FTS_DELETE_RAW = "INSERT INTO posts_fts (posts_fts, rowid, search_lemmas)"

async def sync_index(session: AsyncSession, *, removed: Sequence[tuple[int, str]] = (),
                     added: Sequence[tuple[int, str]] = ()) -> None:
    """Update the SQLite FTS5 index inside the caller's transaction, straight through the driver (a batch
    of 2,000 posts through SQLAlchemy's parameter handling cost more than the indexing).

    ``removed``: (post id, the shadow text that was indexed); ``added``: (post id, new shadow text)."""
    if not removed and not added:
        return
    from monitor.db import driver_connection, sqlite_insert  # (not at the top: worker processes import this)

    drv = await driver_connection(session)
    if removed:
        await sqlite_insert(drv, _FTS_DELETE_RAW, [("delete", i, lem) for i, lem in removed])
    if added:
        await sqlite_insert(drv, _FTS_INSERT_RAW, added)


class QueryError(ValueError):
    """A search query that cannot be run (nothing to find, unbalanced quotes are forgiven)."""


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A search query: words and phrases that must all occur, and words/phrases that must not.

    Each item is a tuple of words (a one-word tuple for a plain word, several for a phrase)."""

    include: tuple[tuple[str, ...], ...]
    exclude: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def words(self) -> list[str]:
        """Every word the results should show marked."""
        return [w for item in self.include for w in item]


_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def parse_query(query: str) -> ParsedQuery:
    """Parse ``word "a phrase" -excluded -"excluded phrase"`` (all included parts are required).

    Punctuation inside words is dropped the way the indexes drop it; a query with nothing left to
    find raises :class:`QueryError`."""
    include: list[tuple[str, ...]] = []
    exclude: list[tuple[str, ...]] = []
    for m in _TOKEN.finditer(query.replace("«", '"').replace("»", '"').replace("“", '"').replace("”", '"')):
        neg, phrase, bare = m.group(1), m.group(2), m.group(3)
        if bare is not None:
            neg = "-" if bare.startswith("-") and len(bare) > 1 else ""
            body = bare[1:] if neg else bare
        else:
            body = phrase or ""
        words = tuple(WORD.findall(_fold(body)))
        if not words:
            continue
        (exclude if neg else include).append(words)
    if not include:
        raise QueryError("the search query has no word to find (a query of only -exclusions finds nothing); "
                         'example: tgmonitor search \'кислота "серная кислота" -уран\'')
    return ParsedQuery(tuple(include), tuple(exclude))


def _fts5_string(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _fts5_item(words: tuple[str, ...]) -> str:
    if len(words) == 1:
        primary, alts = lemmas_of(words[0])
        options = [primary, *alts]
        if len(options) == 1:
            return _fts5_string(primary)
        return "(" + " OR ".join(_fts5_string(o) for o in options) + ")"
    # A phrase matches consecutive primary lemmas: the shadow text keeps only those in word order.
    return _fts5_string(" ".join(lemmas_of(w)[0] for w in words))


def fts5_query(q: ParsedQuery) -> str:
    """The FTS5 MATCH expression over the lemmatised shadow text."""
    expr = " AND ".join(_fts5_item(item) for item in q.include)
    for item in q.exclude:
        expr = f"({expr}) NOT {_fts5_item(item)}"
    return expr


def websearch_query(q: ParsedQuery) -> str:
    """The query re-written for PostgreSQL's ``websearch_to_tsquery('russian', ...)``."""
    parts = [f'"{" ".join(item)}"' if len(item) > 1 else item[0] for item in q.include]
    parts += [f'-"{" ".join(item)}"' if len(item) > 1 else f"-{item[0]}" for item in q.exclude]
    return " ".join(parts)


def mark_snippet(text: str, words: Iterable[str], *, width: int = 160, mark: tuple[str, str] = ("**", "**")) -> str:
    """A one-line extract of ``text`` around the words whose lemmas match ``words``, hits marked.

    The window is placed where the most hits fall within ``width`` characters."""
    targets: set[str] = set()
    for w in words:
        primary, alts = lemmas_of(_fold(w))
        targets.add(primary)
        targets.update(alts)
    spans: list[tuple[int, int]] = []
    for m in WORD.finditer(text):
        primary, alts = lemmas_of(_fold(m.group()))
        if primary in targets or any(a in targets for a in alts):
            spans.append((m.start(), m.end()))
    return mark_spans(text, spans, width=width, mark=mark)


def mark_spans(text: str, spans: list[tuple[int, int]], *, width: int = 160,
               mark: tuple[str, str] = ("**", "**")) -> str:
    """A one-line extract of ``text`` (about ``width`` characters) with ``spans`` marked.

    Chooses the window holding the most spans; cuts at word boundaries; ``…`` shows a cut."""
    if not text:
        return ""
    spans = sorted(spans)
    if spans:
        best, best_n = spans[0][0], 0
        j = 0
        for i, (s, _e) in enumerate(spans):
            while j < len(spans) and spans[j][1] <= s + width:
                j += 1
            if j - i > best_n:
                best, best_n = s, j - i
        first_end = next(e for s, e in spans if s >= best)
        room = max(0, width - (first_end - best))
        lo = max(0, best - room // 3)
    else:
        lo = 0
    hi = min(len(text), lo + width)
    if hi - lo < width:
        lo = max(0, hi - width)
    # widen to word boundaries so a word is never cut in half
    while lo > 0 and text[lo - 1].isalnum():
        lo -= 1
    while hi < len(text) and text[hi].isalnum():
        hi += 1
    out: list[str] = []
    pos = lo
    for s, e in spans:
        if e <= lo or s >= hi:
            continue
        s, e = max(s, lo), min(e, hi)
        if s < pos:
            continue
        out += [text[pos:s], mark[0], text[s:e], mark[1]]
        pos = e
    out.append(text[pos:hi])
    body = " ".join("".join(out).split())
    return ("…" if lo > 0 else "") + body + ("…" if hi < len(text) else "")


# ------------------------------------------------------------------------------ (re)building the index

async def pending(engine: AsyncEngine) -> bool:
    """True when SQLite has posts not in the search index yet (stored before migration 0003, or after
    ``build_index(rebuild=True)`` started). Always False on PostgreSQL, which indexes by itself."""
    from sqlalchemy import text as sql

    if engine.dialect.name != "sqlite":
        return False
    async with engine.connect() as conn:
        # ix_posts_search_pending
        return (await conn.execute(sql("SELECT 1 FROM posts WHERE search_lemmas IS NULL LIMIT 1"))).first() is not None


async def build_index(
    engine: AsyncEngine,
    *,
    rebuild: bool = False,
    chunk: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Index every SQLite post whose shadow text is missing; ``rebuild=True`` redoes all of them (after a
    pymorphy3 dictionary upgrade, or if the FTS table was damaged). Returns the number of posts indexed.

    Safe beside a running service: each chunk is one short write transaction that re-checks, under the
    write lock, that a post is still unindexed and its text unchanged (the store may have indexed or
    edited it meanwhile). Lemmatising runs in a worker thread, off the event loop."""
    from sqlalchemy import text as sql

    if engine.dialect.name != "sqlite":
        return 0
    if rebuild:
        async with engine.begin() as conn:
            await conn.execute(sql("UPDATE posts SET search_lemmas = NULL"))
            await conn.execute(sql("INSERT INTO posts_fts (posts_fts) VALUES ('delete-all')"))
    done = 0
    last = 0
    while True:
        async with engine.connect() as conn:
            rows = (await conn.execute(
                sql("SELECT id, text FROM posts WHERE search_lemmas IS NULL AND id > :last ORDER BY id LIMIT :n"),
                {"last": last, "n": chunk})).all()
        if not rows:
            return done
        last = rows[-1][0]
        shadow = await asyncio.to_thread(_lemmatized, rows)
        async with engine.begin() as conn:
            # A write first, so this transaction holds SQLite's write lock before it reads the chunk again.
            await conn.execute(sql("UPDATE posts SET search_lemmas = NULL WHERE 0"))
            still = {i: t for i, t in (await conn.execute(
                sql("SELECT id, text FROM posts WHERE search_lemmas IS NULL AND id BETWEEN :lo AND :hi"),
                {"lo": rows[0][0], "hi": last})).all()}
            todo = [(i, lem) for i, t, lem in shadow if still.get(i) == t]
            if todo:
                await conn.execute(sql("UPDATE posts SET search_lemmas = :lemmas WHERE id = :id"),
                                   [{"id": i, "lemmas": lem} for i, lem in todo])
                await conn.execute(sql("INSERT INTO posts_fts (rowid, search_lemmas) VALUES (:id, :lemmas)"),
                                   [{"id": i, "lemmas": lem} for i, lem in todo])
        done += len(todo)
        if progress is not None:
            progress(done)
