"""Entity matching for Russian text: normalisation, compile-time morphology, one Aho-Corasick pass.

Pure functions and values; nothing here does I/O except the optional on-disk cache of a compiled
watchlist (``Watchlist.compile(..., cache_dir=...)``). Nothing else from ``monitor`` is imported.
"""

from monitor.matching.matcher import (
    LANGUAGES,
    MAX_HITS,
    MAX_TEXT,
    REGEX_TIMEOUT,
    EntitySpec,
    Match,
    Watchlist,
    WatchlistError,
    entity_id,
    validate_regex,
)
from monitor.matching.normalize import Normalized, normalize

__all__ = [
    "LANGUAGES",
    "MAX_HITS",
    "MAX_TEXT",
    "REGEX_TIMEOUT",
    "EntitySpec",
    "Match",
    "Normalized",
    "Watchlist",
    "WatchlistError",
    "entity_id",
    "normalize",
    "validate_regex",
]
