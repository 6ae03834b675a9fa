"""How a text becomes tokens: the rules `vocab.tokens` names, as regular expressions.

- `words`: scikit-learn's default token pattern `(?u)\\b\\w\\w+\\b`, the maximal runs of two or
  more word characters. In Chinese, Japanese or Thai, written without spaces between words, such
  a run is a whole clause.
- `scripts`: the same, except that in the scripts written without spaces between words (Thai,
  Lao, Myanmar, Khmer, Chinese, Japanese kana, Bopomofo, Yi: `UNSPACED_BLOCKS`) every word
  character is a token of its own, together with the combining marks that follow it (a Thai
  vowel or tone mark, a kana voicing mark). The configured word n-grams become character n-grams
  there, as BERT's basic tokenizer makes every CJK character a token. A text without such
  characters gives exactly the tokens of `words`.

The compiled featuriser (`_ngrams.c`) implements both; the patterns here are its reference:
scikit-learn's `CountVectorizer(token_pattern=pattern(rule, ...))` gives the same n-grams, which
the tests check, and the Python paths that need a text's tokens (pool selection, the unseen
words' vectors, augmentation) use them.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable

TOKEN_RULES = ("words", "scripts")
# scikit-learn's default; `(?u)` is the default for str patterns, so both spellings are it.
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
COMPILED_PATTERNS = frozenset({DEFAULT_TOKEN_PATTERN, r"\b\w\w+\b"})

# Inclusive code point ranges of the blocks whose scripts do not put spaces between words. The
# compiled featuriser's is_unspaced() holds the same ranges (a test compares every code point).
# Hangul is left out: Korean puts spaces between words.
UNSPACED_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),    # Thai
    (0x0E80, 0x0EFF),    # Lao
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x19E0, 0x19FF),    # Khmer symbols
    (0x2E80, 0x2FFF),    # CJK radicals, Kangxi radicals, ideographic description
    (0x3000, 0x303F),    # CJK symbols and punctuation: only its word characters (々 〆 〇) count
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x3100, 0x312F),    # Bopomofo
    (0x3190, 0x31FF),    # Kanbun, Bopomofo extended, CJK strokes, Katakana extensions
    (0x3400, 0x4DBF),    # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xA000, 0xA4CF),    # Yi syllables and radicals
    (0xA9E0, 0xA9FF),    # Myanmar extended B
    (0xAA60, 0xAA7F),    # Myanmar extended A
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # half-width Katakana
    (0x1AFF0, 0x1B16F),  # Kana extended B, Kana supplement, Kana extended A, small kana
    (0x20000, 0x323AF),  # CJK extensions B-H, compatibility ideographs supplement
)

_WORD = re.compile(r"\w")


def is_unspaced(code_point: int) -> bool:
    """Whether the code point lies in one of `UNSPACED_BLOCKS`."""
    return any(lo <= code_point <= hi for lo, hi in UNSPACED_BLOCKS)


def is_unspaced_mark(code_point: int) -> bool:
    """A combining mark (category M*) of an unspaced block of the Basic Multilingual Plane: not
    a word character, it belongs to the unspaced character before it."""
    ch = chr(code_point)
    return (code_point < 0x10000 and is_unspaced(code_point) and not _WORD.match(ch)
            and unicodedata.category(ch).startswith("M"))


def _char_class(ranges: list[tuple[int, int]]) -> str:
    return "".join(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
                   for lo, hi in ranges)


def _runs(code_points: list[int]) -> list[tuple[int, int]]:
    """Sorted code points -> inclusive (first, last) ranges of consecutive ones."""
    out: list[tuple[int, int]] = []
    for c in code_points:
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


@functools.cache
def _unspaced() -> str:
    """`UNSPACED_BLOCKS` as the inside of a character class."""
    return _char_class(list(UNSPACED_BLOCKS))


@functools.cache
def _marks() -> str:
    """The unspaced scripts' combining marks as the inside of a character class."""
    return _char_class(_runs([c for lo, hi in UNSPACED_BLOCKS
                              for c in range(lo, min(hi, 0xFFFF) + 1) if is_unspaced_mark(c)]))


@functools.cache
def scripts_pattern() -> str:
    """The `scripts` rule as a pattern for `re.findall`: an unspaced word character and the marks
    after it, or a run of two or more other word characters (maximal: the greedy match stops
    only at a non-word or an unspaced character)."""
    unspaced = _unspaced()
    return rf"(?u)(?=\w)[{unspaced}][{_marks()}]*|(?:(?![{unspaced}])\w){{2,}}"


@functools.cache
def _unspaced_char() -> re.Pattern[str]:
    return re.compile(rf"(?=\w)[{_unspaced()}]")


def unspaced_share(texts: Iterable[str]) -> float:
    """The share of `texts` that hold a word character of an unspaced script (0 for none)."""
    search = _unspaced_char().search
    n = hits = 0
    for text in texts:
        n += 1
        hits += search(text) is not None
    return hits / n if n else 0.0


@functools.cache
def _unit() -> re.Pattern[str]:
    unspaced = _unspaced()
    return re.compile(rf"(?=\w)[{unspaced}][{_marks()}]*|(?:(?!(?=\w)[{unspaced}])\S)+")


@functools.cache
def _block_char() -> re.Pattern[str]:
    return re.compile(f"[{_unspaced()}]")


def split_units(text: str) -> list[str]:
    """The units a perturbation drops, replaces or cuts at (training.augment): the text's
    whitespace-separated words, except that each word character of an unspaced script (with
    its marks) is a unit of its own. `text.split()` for a text without one."""
    if not _unspaced_char().search(text):
        return text.split()
    return _unit().findall(text)


def join_units(units: list[str]) -> str:
    """Units back to a text: a space between two, except where either side is a character of
    an unspaced script (Chinese gets no spaces; `" ".join` for text without one)."""
    if not units:
        return ""
    block = _block_char().match
    out = [units[0]]
    for left, right in itertools.pairwise(units):
        if not (block(left[-1]) or block(right[0])):
            out.append(" ")
        out.append(right)
    return "".join(out)


def segment(text: str) -> str:
    """`text` with a space between its units (`split_units`): Chinese pre-segmented a character
    at a time for a tool that splits on whitespace (fastText)."""
    return " ".join(split_units(text))


def pattern(rule: str, token_pattern: str) -> str:
    """The regular expression the rule `rule` tokenises with (`token_pattern` for `words`)."""
    if rule == "scripts":
        return scripts_pattern()
    return token_pattern


NORMALIZATIONS = ("none", "nfkc")


def normalizer(normalize: str) -> Callable[[str], str] | None:
    """The Unicode normalisation `vocab.normalize` names, or None: NFKC makes full-width and
    half-width forms one (ＡＢＣ and ABC, ｶ and カ) and compatibility characters their plain
    ones (ﬁ and fi, ² and 2)."""
    if normalize == "nfkc":
        return functools.partial(unicodedata.normalize, "NFKC")
    return None


def tokenizer(rule: str, token_pattern: str, lowercase: bool, normalize: str = "none"
              ) -> Callable[[str], list[str]]:
    """text -> its tokens, as the vocabulary and the featuriser see them."""
    find = re.compile(pattern(rule, token_pattern)).findall
    norm = normalizer(normalize)
    if norm is not None:
        return lambda text: find(norm(text).lower() if lowercase else norm(text))
    if lowercase:
        return lambda text: find(text.lower())
    return find
