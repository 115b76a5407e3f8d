"""What an action means, whatever its spelling.

A rule such as "critical actions go to a human" is only as good as the comparison behind it:
`transfer-money`, `Transfer Money`, `transfer_money` followed by a zero-width space, and
`tr\u0430nsfer_money` (a Cyrillic `a`) all mean `transfer_money`. `action_key` turns an action
into one canonical form, and two actions mean the same when their keys are equal:

1. NFKC with case folding and default-ignorable characters removed (ICU's NFKC_Casefold:
   full-width letters, ligatures and case collapse; zero-width and other invisible
   characters vanish), then any remaining format character (category Cf) removed;
2. the Unicode TR39 confusable skeleton (ICU's SpoofChecker, the reference implementation):
   letters that look alike map to one prototype (Cyrillic U+0430 → Latin `a`, `m` → `rn`);
3. every run of separators (white space, hyphens and other dashes, dots, underscores, and
   other punctuation that only joins words) becomes one `_`, none at either end.

The key is for comparing, never for showing: skeletons are not readable text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import icu

_NFKC_CASEFOLD = icu.Normalizer2.getNFKCCasefoldInstance()
_SPOOF = icu.SpoofChecker()
# A lone surrogate cannot reach ICU; it is no letter of any action either.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Dots and slashes that join words like a space does (dashes and underscores are categories).
_JOINERS = frozenset(".·•‧⋅∙/\\")


def _separator(char: str) -> bool:
    """White space, every dash (Pd), connector punctuation (Pc: `_` and its kin), dots."""
    return char.isspace() or char in _JOINERS or unicodedata.category(char) in {"Pd", "Pc"}


# Actions are agent text up to a frame's size: only short ones (every real action name) are
# remembered, so distinct long ones cannot fill memory.
CACHED_LENGTH = 256


def action_key(action: str) -> str:
    """The canonical form actions are compared in (see the module docstring)."""
    return _cached_key(action) if len(action) <= CACHED_LENGTH else _key(action)


def cached_keys() -> int:
    return _cached_key.cache_info().currsize


def _key(action: str) -> str:
    folded = _NFKC_CASEFOLD.normalize(_SURROGATE.sub("\ufffd", action))
    visible = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    # Words first (a dash's skeleton may be a letter-like mark), then each word's skeleton,
    # split again in case a skeleton holds a separator.
    skeletons = (_NFKC_CASEFOLD.normalize(_SPOOF.getSkeleton(0, w)) for w in _words(visible))
    return "_".join(word for skeleton in skeletons for word in _words(skeleton))


_cached_key = lru_cache(maxsize=4096)(_key)


def _words(text: str) -> list[str]:
    words: list[str] = []
    word: list[str] = []
    for char in text:
        if _separator(char):
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(char)
    if word:
        words.append("".join(word))
    return words


def keys(actions: Iterable[str]) -> frozenset[str]:
    """The keys of a list of actions (for example the critical ones), for lookups."""
    return frozenset(key for key in map(action_key, actions) if key)
