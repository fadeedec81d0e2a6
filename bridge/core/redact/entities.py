"""Which words of a stretch of one leg's speech say something sensitive, and what.

The words are read once per language (:func:`.spoken.units`); digits said one after another
(hesitations between them allowed) form a *run*, which the detectors read as one string:

* ``card`` - 13 to 19 digits that pass the Luhn check and start like a card number (2-6);
* ``cvv`` - 3 or 4 digits within a few words after a card, or after "security code",
  "expiry", ... (labelled ``CVV`` or ``EXPIRY``);
* ``iban`` - two letters and up to 32 letters and digits that pass the IBAN check (ISO 13616);
* ``national_id`` - a US social security number (9 digits, with its words nearby: it has no
  check digit), a Spanish DNI, a French NIR, a German tax id (each with its check digit);
* ``phone`` - a whole run of 7 to 15 digits that is a valid number in a region of the language
  (``phonenumbers``);
* ``bank_account`` - 6 or more digits after "account number", "número de cuenta", ...;
* ``email`` - a written address, or a spoken one ("john dot smith at example dot com");
* ``dob`` - the date after "date of birth", "born on", "fecha de nacimiento", ...

Checksums come from python-stdnum, phone numbers from phonenumbers: maintained libraries, so a
card, an IBAN or an id is redacted when it *is* one and an order number of the same length is
kept.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers

from bridge.core.redact import lexicon
from bridge.core.redact.spoken import Unit, clean, units

ENTITIES: Final = (
    "card", "cvv", "iban", "national_id", "phone", "bank_account", "email", "dob",
)  # fmt: skip
LABELS: Final = {
    "card": "CARD", "cvv": "CVV", "iban": "IBAN", "national_id": "ID", "phone": "PHONE",
    "bank_account": "ACCOUNT", "email": "EMAIL", "dob": "DOB",
}  # fmt: skip
_CARD_LENGTHS: Final = (16, 15, 14, 13, 19, 18, 17)
_NEAR_CARD_WORDS: Final = 15  # a CVV or expiry this many words after a card is the card's
_CUE_WORDS: Final = 8  # what a cue announces comes within this many words
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
#: German writes numbers as one word: "einundvierzig", "dreihundertzwölf".
_GERMAN_NUMBER: Final = re.compile(r"(und|hundert|tausend)\w*(zig|ßig|zehn|eins|zwei|drei|vier|"
                                   r"fünf|sechs|sieben|acht|neun|elf|zwölf)$")  # fmt: skip
#: One telling word of each cue (its longest: "born" of "i was born"), to decide cheaply
#: whether a stretch of speech may hold one.
_CUE_WORDS_SEEN: Final = frozenset(
    max(cue.split(), key=len)
    for cues in (lexicon.CVV_CUES, lexicon.EXPIRY_CUES, lexicon.BIRTH_CUES, lexicon.ACCOUNT_CUES,
                 lexicon.NATIONAL_ID_CUES)
    for cue in cues
) | lexicon.EMAIL_CUES  # fmt: skip


@dataclass(frozen=True, slots=True)
class Found:
    """Words ``first``..``last`` (inclusive) say an entity of ``kind``, shown as ``label``."""

    first: int
    last: int
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class _Run:
    units: tuple[Unit, ...]  # the units with characters, in order (no plain words)

    @property
    def text(self) -> str:
        return "".join(u.chars for u in self.units)

    def words(self, start: int, end: int) -> tuple[int, int]:
        """The words that said characters ``start``..``end - 1`` of :attr:`text`."""
        first = last = -1
        at = 0
        for unit in self.units:
            if at < end and at + len(unit.chars) > start:
                first = unit.first if first < 0 else first
                last = unit.last
            at += len(unit.chars)
        return first, last


def find(words: Sequence[str], enabled: Iterable[str], languages: Sequence[str]) -> list[Found]:
    """Every entity of the ``enabled`` kinds in ``words``, in any of ``languages``."""
    return scan(words, enabled, languages, ended=True)[0]


def scan(
    words: Sequence[str],
    enabled: Iterable[str],
    languages: Sequence[str],
    *,
    growing: bool = False,
    ended: bool = False,
) -> tuple[list[Found], int | None]:
    """The entities in ``words`` (as :func:`find`), and where the words stop being safe to show
    while more may follow: the first word of a run of digits or letters that reaches the end
    (it may grow into a card), or of an e-mail address or a date still being said (None: the
    end is in the middle of nothing, or ``ended``).

    ``growing``: the last word may be a piece of one (a partial's last step: "ei" of "eins"),
    so a run that reaches the word before it is open too.  Each language's reading of the
    words is made once; speech with no number word, no cue and no "at" is not read at all.
    """
    cleaned = [clean(w) for w in words]
    if not any(map(worth_reading, cleaned)):
        return [], None
    kinds = set(enabled)
    found: list[Found] = []
    starts: list[int] = []
    read_all: list[Unit] = []
    for lang in languages:
        read = units(words, lang)
        read_all += read
        runs = _runs(read)
        cards = _cards(runs) if kinds & {"card", "cvv"} else []
        found += [f for f in cards if "card" in kinds]
        if "cvv" in kinds:
            found += _security_codes(runs, cards, cleaned)
        if "iban" in kinds:
            found += _ibans(runs)
        if "national_id" in kinds:
            found += _national_ids(runs, cleaned)
        if "phone" in kinds:
            found += _phones(runs, lang, cleaned)
        if "bank_account" in kinds:
            found += _after_cue(runs, cleaned, lexicon.ACCOUNT_CUES, 6, "bank_account")
        if runs and runs[-1].units[-1].last >= _last_content(read, len(words) - growing):
            starts.append(runs[-1].units[0].first)
    if "email" in kinds:
        found += _emails(words, cleaned)
    if "dob" in kinds:
        found += _birth_dates(cleaned, read_all)
    if ended:
        return found, None
    mail = _address_being_said(cleaned)
    starts += [mail] if mail is not None else []
    recent = range(max(0, len(cleaned) - _CUE_WORDS), len(cleaned))
    starts += [i for i in recent if _cue_at(cleaned, i, lexicon.BIRTH_CUES)]
    return found, min(starts) if starts else None


def worth_reading(word: str) -> bool:
    """A word that can be part of an entity or announce one."""
    return (
        any(c.isdigit() for c in word)
        or word in lexicon.NUMBER_WORDS
        or word in lexicon.EMAIL_AT
        or word in lexicon.MONTHS
        or word in _CUE_WORDS_SEEN
        or "@" in word
        or any(part in lexicon.NUMBER_WORDS for part in word.split("-")[1:])
        or _GERMAN_NUMBER.search(word) is not None
    )


def _address_being_said(cleaned: list[str]) -> int | None:
    """The first word of an e-mail address that reaches the end: names joined by "dot" around
    one "at" ("smith at example dot"), or after an e-mail cue names joined by "dot" before the
    "at" has come ("my email is john dot smith")."""
    for at in range(len(cleaned) - 1, max(0, len(cleaned) - 2 * _CUE_WORDS), -1):
        if cleaned[at] in lexicon.EMAIL_AT:
            after = cleaned[at + 1 :]
            if not _dotted(after) or not cleaned[at - 1]:
                return None
            begin = at - 1
            while begin >= 2 and cleaned[begin - 1] in lexicon.EMAIL_DOT and cleaned[begin - 2]:
                begin -= 2
            return begin
    for cue in range(len(cleaned) - 1, max(-1, len(cleaned) - 3 * _CUE_WORDS), -1):
        if cleaned[cue] in lexicon.EMAIL_CUES:
            start = cue + 1
            while start < len(cleaned) and cleaned[start] in lexicon.DATE_GLUE:  # "is", "es"
                start += 1
            return start if start < len(cleaned) and _dotted(cleaned[start:]) else None
    return None


def _dotted(words: list[str]) -> bool:
    """Names joined by "dot" (or nothing yet): ``john``, ``john dot``, ``john dot smith``."""
    names, joins = words[0::2], words[1::2]
    return all(names) and all(j in lexicon.EMAIL_DOT for j in joins)


# -- runs --------------------------------------------------------------------------------------


def _runs(read: list[Unit]) -> list[_Run]:
    """Characters said one after another; a plain word ends a run, a hesitation does not."""
    runs: list[_Run] = []
    current: list[Unit] = []
    for unit in read:
        if unit.chars:
            current.append(unit)
        elif not unit.filler and current:
            runs.append(_Run(tuple(current)))
            current = []
    if current:
        runs.append(_Run(tuple(current)))
    return runs


def _last_content(read: list[Unit], words: int) -> int:
    """The last word (of the first ``words``) that is not a hesitation."""
    return max((min(u.last, words - 1) for u in read if not u.filler and u.first < words),
               default=-1)  # fmt: skip


def _digit_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]


def _check(scheme: str, number: str) -> bool:
    """python-stdnum's check of ``number`` by ``scheme`` ("luhn", "iban", "es.dni", ...).

    stdnum is imported on first use, not with this module: ``stdnum.util`` imports ``socket``
    (for its online checks), and the pure SIP modules import the configuration, which imports
    this package (tests/sip/test_sip_imports.py keeps them free of I/O modules).
    """
    module = _SCHEMES.get(scheme)
    if module is None:
        module = _SCHEMES[scheme] = importlib.import_module(f"stdnum.{scheme}")
    return bool(module.is_valid(number))


_SCHEMES: dict[str, Any] = {}


# -- detectors ---------------------------------------------------------------------------------


def _cards(runs: list[_Run]) -> list[Found]:
    found = []
    for run in runs:
        text = run.text
        for start, end in _digit_spans(text):
            at = start
            while at <= end - 13:
                length = next(
                    (
                        n
                        for n in _CARD_LENGTHS
                        if at + n <= end
                        and text[at] in "23456"
                        and _check("luhn", text[at : at + n])
                    ),
                    0,
                )
                if length:
                    found.append(Found(*run.words(at, at + length), "card", "CARD"))
                    at += length
                else:
                    at += 1
    return found


def _security_codes(runs: list[_Run], cards: list[Found], cleaned: list[str]) -> list[Found]:
    found = []
    for run in runs:
        text = run.text
        if not text.isdigit() or len(text) not in (3, 4):
            continue
        first, last = run.words(0, len(text))
        after_card = any(0 < first - c.last <= _NEAR_CARD_WORDS for c in cards)
        expiry_cue = _cue_before(cleaned, first, lexicon.EXPIRY_CUES)
        if expiry_cue or (after_card and len(text) == 4 and 1 <= int(text[:2]) <= 12):
            found.append(Found(first, last, "cvv", "EXPIRY"))
        elif after_card or _cue_before(cleaned, first, lexicon.CVV_CUES):
            found.append(Found(first, last, "cvv", "CVV"))
    return found


def _ibans(runs: list[_Run]) -> list[Found]:
    found = []
    for run in runs:
        text = run.text
        for start in range(len(text) - 14):
            if not text[start : start + 2].isalpha():
                continue
            for end in range(min(len(text), start + 34), start + 14, -1):
                if _check("iban", text[start:end]):
                    found.append(Found(*run.words(start, end), "iban", "IBAN"))
                    break
    return found


def _national_ids(runs: list[_Run], cleaned: list[str]) -> list[Found]:
    found = []
    for run in runs:
        text = run.text
        first, last = run.words(0, len(text))
        checked = (
            (len(text) == 9 and text[:8].isdigit() and _check("es.dni", text))  # + a letter
            or (len(text) == 15 and text.isdigit() and _check("fr.nir", text))
            or (len(text) == 11 and text.isdigit() and _check("de.idnr", text))
        )
        cued = len(text) == 9 and text.isdigit() and _check("us.ssn", text)
        if _cue_before(cleaned, first, lexicon.SAFE_CUES):
            continue
        if checked or (cued and _cue_before(cleaned, first, lexicon.NATIONAL_ID_CUES)):
            found.append(Found(first, last, "national_id", "ID"))
    return found


def _phones(runs: list[_Run], lang: str, cleaned: list[str]) -> list[Found]:
    found = []
    for run in runs:
        text = run.text
        # National numbers are 9 to 12 digits where these languages are spoken; with the country
        # code up to 15.  An order or ticket number is announced as one: kept.
        if not text.isdigit() or not 9 <= len(text) <= 15:
            continue
        if _cue_before(cleaned, run.units[0].first, lexicon.SAFE_CUES):
            continue
        for region in lexicon.PHONE_REGIONS.get(lang, ("US",)):
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                found.append(Found(*run.words(0, len(text)), "phone", "PHONE"))
                break
    return found


def _after_cue(
    runs: list[_Run], cleaned: list[str], cues: tuple[str, ...], digits: int, kind: str
) -> list[Found]:
    found = []
    for run in runs:
        first, last = run.words(0, len(run.text))
        if sum(c.isdigit() for c in run.text) >= digits and _cue_before(cleaned, first, cues):
            found.append(Found(first, last, kind, LABELS[kind]))
    return found


def _emails(words: Sequence[str], cleaned: list[str]) -> list[Found]:
    found = [Found(i, i, "email", "EMAIL") for i, w in enumerate(words) if _EMAIL.search(w)]
    for at, word in enumerate(cleaned):
        # Spoken: name (dot name)* AT name (dot name)+ ("example.com" may come as one word).
        end = at + 1
        if word not in lexicon.EMAIL_AT or at == 0 or end >= len(cleaned):
            continue
        if not cleaned[at - 1] or not cleaned[end] or cleaned[end] in lexicon.EMAIL_DOT:
            continue
        dots = cleaned[end].count(".")
        while end + 2 < len(cleaned) and cleaned[end + 1] in lexicon.EMAIL_DOT and cleaned[end + 2]:
            end += 2
            dots += 1
        begin = at - 1
        while begin >= 2 and cleaned[begin - 1] in lexicon.EMAIL_DOT and cleaned[begin - 2]:
            begin -= 2
        if dots:
            found.append(Found(begin, end, "email", "EMAIL"))
    return found


def _birth_dates(cleaned: list[str], read: list[Unit]) -> list[Found]:
    digits_at = {i for u in read if u.chars.isdigit() for i in range(u.first, u.last + 1)}
    found = []
    for i in range(len(cleaned)):
        cue = _cue_at(cleaned, i, lexicon.BIRTH_CUES)
        if not cue:
            continue
        start = i + cue
        end = start
        while (
            end < len(cleaned)
            and end - start < 2 * _CUE_WORDS
            and (
                end in digits_at
                or cleaned[end] in lexicon.MONTHS
                or cleaned[end] in lexicon.DATE_GLUE
            )
        ):
            end += 1
        dated = [j for j in range(start, end) if j in digits_at or cleaned[j] in lexicon.MONTHS]
        if dated:
            found.append(Found(min(dated), max(dated), "dob", "DOB"))
    return found


def _cue_at(cleaned: list[str], i: int, cues: tuple[str, ...]) -> int:
    """The number of words of the cue that starts at word ``i`` (0: none)."""
    for cue in cues:
        parts = cue.split()
        if cleaned[i : i + len(parts)] == parts:
            return len(parts)
    return 0


def _cue_before(cleaned: list[str], first: int, cues: tuple[str, ...]) -> bool:
    """A cue ends within the few words before word ``first``."""
    return any(
        (n := _cue_at(cleaned, i, cues)) and i + n <= first
        for i in range(max(0, first - _CUE_WORDS), first)
    )
