"""Spoken numbers as digits, each digit tied to the words that said it.

``text2num`` (``alpha2digit``, one Rust parser per language) turns "four one one one", "forty one
eleven", "quarante et un onze", "einundvierzig elf", "cuatro mil ciento once" into digits; it
leaves every other word as it was.  So the words it replaced are found by aligning its output
with its input (``difflib``: unchanged words are equal runs, numbers are replaced runs), and each
run of digits is tied to the words it came from.  What text2num does not read is prepared first
(:mod:`.lexicon`): "double five" becomes "five five", "oh" becomes "o".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from text_to_num import alpha2digit

from bridge.core.redact.lexicon import FILLERS, MULTIPLIERS, ZERO

_EDGES: Final = re.compile(r"^[^\w@+]+|[^\w@]+$")
_DIGITS: Final = re.compile(r"\d")
_WRITTEN_NUMBER: Final = re.compile(r"^\+?[\d][\d\-./]*$")


@dataclass(frozen=True, slots=True)
class Unit:
    """Words ``first``..``last`` (inclusive) of the input and what they say.

    ``chars``: the digits (or the one upper-case letter) they spell, ``""`` for a word that is
    neither; ``filler``: a hesitation that does not end a number.
    """

    first: int
    last: int
    chars: str
    filler: bool = False


def clean(word: str) -> str:
    """Lower case, without the punctuation around it ("Eleven," -> "eleven")."""
    return _EDGES.sub("", word.lower())


def units(words: Sequence[str], lang: str) -> list[Unit]:
    """The input words as units in order, number words merged into the digits they say."""
    tokens, origin, multipliers = _prepare([clean(w) for w in words], lang)
    if not tokens:
        return []
    said = alpha2digit(" ".join(tokens), lang).split()
    out: list[Unit] = []
    matcher = difflib.SequenceMatcher(None, tokens, [s.lower() for s in said], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out += [_word_unit(tokens[i], origin[i]) for i in range(i1, i2)]
        elif i2 > i1:
            digits = "".join(_DIGITS.findall(" ".join(said[j1:j2])))
            if digits:
                out.append(Unit(origin[i1], origin[i2 - 1], digits))
            else:
                out += [_word_unit(tokens[i], origin[i]) for i in range(i1, i2)]
    return _merge(out, multipliers)


def _prepare(cleaned: list[str], lang: str) -> tuple[list[str], list[int], set[int]]:
    """Tokens for text2num, the input word each came from, and the multipliers' words."""
    multipliers, zero = MULTIPLIERS.get(lang, {}), ZERO.get(lang, {})
    tokens: list[str] = []
    origin: list[int] = []
    at: set[int] = set()
    repeat = 1
    for i, word in enumerate(cleaned):
        if not word:
            continue
        if word in multipliers:
            repeat = multipliers[word]  # the word itself is left out: "double five" -> "5 5"
            at.add(i)
            continue
        word = zero.get(word, word)
        for _ in range(repeat if repeat > 1 else 1):
            tokens.append(word)
            origin.append(i)
        repeat = 1
    return tokens, origin, at


def _word_unit(token: str, at: int) -> Unit:
    if _WRITTEN_NUMBER.match(token):
        return Unit(at, at, "".join(_DIGITS.findall(token)))
    if len(token) == 1 and token.isalpha():
        return Unit(at, at, token.upper())
    return Unit(at, at, "", filler=token in FILLERS)


def _merge(units_: list[Unit], multipliers: set[int]) -> list[Unit]:
    """Tokens of one input word (a digit said twice) become one unit, and a multiplier joins the
    digits it multiplied, so every unit covers whole words."""
    merged: list[Unit] = []
    for unit in units_:
        last = merged[-1] if merged else None
        if last is not None and unit.first <= last.last:
            merged[-1] = Unit(last.first, max(last.last, unit.last), last.chars + unit.chars)
        else:
            merged.append(unit)
    out: list[Unit] = []
    for unit in merged:
        if unit.chars and unit.first - 1 in multipliers:
            unit = Unit(unit.first - 1, unit.last, unit.chars)
        out.append(unit)
    # A multiplier's own word: part of its number when one followed, else like a hesitation
    # (it does not end a number: "one double" may go on "six six" in the next segment).
    covered = {i for u in out if u.chars for i in range(u.first, u.last + 1)}
    words = [Unit(i, i, "", filler=True) for i in multipliers if i not in covered]
    return sorted(out + words, key=lambda u: u.first)
