"""What redaction costs and how well it finds (issue 17): per segment and per partial (µs), the
partial latency added by holding what may become an entity (p50/p99), and precision/recall on
a generated test set per entity type and language.

Run by hand, from the repository root::

    .venv/bin/python benchmarks/bench_redaction.py [--per-case 200] [--seed 1]

The test set: for English, Spanish, French and German, sentences that say a card (Luhn-valid),
a card with its security code, an IBAN (DE, mod-97 valid), a phone number (valid in a region
of the language), an e-mail address, a date of birth - digits said one by one as words (with
"double" in English), or written in groups - each sentence once as one segment and once split
at a pause in the middle of the number; and as negatives, prices, times, flight and order
numbers.  *Recall*: entities with no digit (or address word) of theirs left visible.
*Precision*: redacted tokens that stand where an entity was said.  The policy is every type.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import phonenumbers  # noqa: E402
from stdnum import iban, luhn  # noqa: E402

from bridge.core.redact import ENTITIES, RedactionPolicy, Redactor  # noqa: E402
from bridge.core.types import CallId, LegId, Segment, Word  # noqa: E402

DIGITS = {
    "en": "zero one two three four five six seven eight nine".split(),
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve".split(),
    "fr": "zéro un deux trois quatre cinq six sept huit neuf".split(),
    "de": "null eins zwei drei vier fünf sechs sieben acht neun".split(),
}
FRAMES = {  # what is said around each entity, per language ({} is the entity)
    "card": {"en": "my card number is {} thanks", "es": "mi número de tarjeta es {} gracias",
             "fr": "mon numéro de carte est {} merci", "de": "meine Kartennummer ist {} danke"},
    "cvv": {"en": "card {} and the security code is {}", "es": "tarjeta {} y el código de "
            "seguridad es {}", "fr": "carte {} et le cryptogramme est {}",
            "de": "Karte {} und die Prüfnummer ist {}"},
    "iban": {"en": "my IBAN is {} thanks", "es": "mi IBAN es {} gracias",
             "fr": "mon IBAN est {} merci", "de": "meine IBAN ist {} danke"},
    "phone": {"en": "call me back on {} please", "es": "llámeme al {} por favor",
              "fr": "rappelez-moi au {} s'il vous plaît", "de": "rufen Sie mich unter {} an"},
    "email": {"en": "my email is {} thanks", "es": "mi correo es {} gracias",
              "fr": "mon courriel est {} merci", "de": "meine E-Mail ist {} danke"},
    "dob": {"en": "my date of birth is {} okay", "es": "mi fecha de nacimiento es {} vale",
            "fr": "ma date de naissance est le {} d'accord", "de": "mein Geburtsdatum ist {} gut"},
}  # fmt: skip
NEGATIVES = {
    "en": ["it costs {} dollars", "the order number is {}", "flight {} leaves at nine",
           "see you at {} tomorrow"],
    "es": ["cuesta {} euros", "el número de pedido es {}", "el vuelo {} sale a las nueve",
           "nos vemos a las {} mañana"],
    "fr": ["ça coûte {} euros", "le numéro de commande est {}", "le vol {} part à neuf heures",
           "à {} demain"],
    "de": ["es kostet {} Euro", "die Bestellnummer ist {}", "Flug {} startet um neun",
           "bis {} morgen"],
}  # fmt: skip
AT = {"en": "at", "es": "arroba", "fr": "arobase", "de": "at"}
DOT = {"en": "dot", "es": "punto", "fr": "point", "de": "punkt"}
MONTHS = {"en": "March", "es": "marzo", "fr": "mars", "de": "März"}
PHONES = {"en": ["202", "212", "415", "617"], "es": ["6"], "fr": ["06"], "de": ["0151"]}


def spoken(digits: str, lang: str, rng: random.Random, *, style: str) -> str:
    """``digits`` as a person says them: one word each (``words``), "double" for a repeated
    digit in English (``double``), or written in groups of four (``written``)."""
    if style == "written":
        return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    out, i = [], 0
    while i < len(digits):
        word = DIGITS[lang][int(digits[i])]
        if style == "double" and i + 1 < len(digits) and digits[i + 1] == digits[i]:
            out += ["double", word]
            i += 2
        else:
            out.append(word)
            i += 1
    return " ".join(out)


def phone_number(lang: str, rng: random.Random) -> str:
    """A number that is allocated in the language's first region (libphonenumber's plan: the
    test set holds numbers that can be dialled, as callers give them)."""
    region = {"en": "US", "es": "ES", "fr": "FR", "de": "DE"}[lang]
    rest = {"en": 7, "es": 8, "fr": 8, "de": 8}[lang]
    for _ in range(10_000):
        number = rng.choice(PHONES[lang]) + "".join(rng.choice("0123456789") for _ in range(rest))
        if phonenumbers.is_valid_number(phonenumbers.parse(number, region)):
            return number
    raise AssertionError(f"no valid {region} number with prefix {PHONES[lang]}")


def card_number(rng: random.Random) -> str:
    body = rng.choice("45") + "".join(rng.choice("0123456789") for _ in range(14))
    return body + luhn.calc_check_digit(body)


def entity(kind: str, lang: str, rng: random.Random, style: str) -> tuple[str, list[str]]:
    """A sentence saying one entity of ``kind``, and the words that must not stay visible."""
    if kind in ("card", "cvv"):
        card = spoken(card_number(rng), lang, rng, style=style)
        if kind == "card":
            return FRAMES[kind][lang].format(card), card.split()
        code = spoken("".join(rng.choice("0123456789") for _ in range(3)), lang, rng, style="words")
        return FRAMES[kind][lang].format(card, code), card.split() + code.split()
    if kind == "iban":
        bban = "".join(rng.choice("0123456789") for _ in range(18))
        number = "DE" + iban.calc_check_digits("DE00" + bban) + bban
        said = "D E " + spoken(number[2:], lang, rng, style=style)
        return FRAMES[kind][lang].format(said), said.split()[2:]
    if kind == "phone":
        number = phone_number(lang, rng)
        said = spoken(number, lang, rng, style=style)
        return FRAMES[kind][lang].format(said), said.split()
    if kind == "email":
        name, surname = (
            rng.choice(["john", "maria", "pierre", "anna"]),
            rng.choice(["smith", "garcia", "martin", "schmidt"]),
        )
        said = f"{name} {DOT[lang]} {surname} {AT[lang]} example {DOT[lang]} com"
        return FRAMES[kind][lang].format(said), [name, surname, "example"]
    day = rng.randint(1, 28)
    year = spoken(str(rng.randint(1940, 2005)), lang, rng, style="words")
    said = f"{day} {MONTHS[lang]} {year}" if lang != "en" else f"{MONTHS[lang]} {day} {year}"
    return FRAMES[kind][lang].format(said), [str(day), *year.split()]


def negative(lang: str, rng: random.Random) -> str:
    template = rng.choice(NEGATIVES[lang])
    number = rng.choice(
        [str(rng.randint(2, 999)), "".join(rng.choice("0123456789") for _ in range(8)),
         spoken(str(rng.randint(1000, 9999)), lang, rng, style="words")]
    )  # fmt: skip
    return template.format(number)


def segment(seq: int, text: str, *, final: bool = True, at_ms: int = 0) -> Segment:
    words = tuple(
        Word(w, at_ms + 300 * i, at_ms + 300 * i + 250) for i, w in enumerate(text.split())
    )
    return Segment(CallId("c"), LegId("l"), seq, words[0].start_ms, words[-1].end_ms, text, final,
                   words)  # fmt: skip


def redact(text: str, *, split: bool) -> str:
    """Redacted text of ``text`` said as one segment, or as two with a pause mid-sentence."""
    redactor = Redactor(RedactionPolicy(entities=ENTITIES))
    words = text.split()
    parts = [words[: len(words) // 2], words[len(words) // 2 :]] if split else [words]
    out = [s for n, p in enumerate(parts) for s in redactor.receive(segment(n, " ".join(p)))]
    return " ".join(s.text for s in out + redactor.finish())


def quality(per_case: int, rng: random.Random) -> dict[str, dict[str, dict[str, float]]]:
    kinds = ["card", "cvv", "iban", "phone", "email", "dob"]
    found: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for lang in DIGITS:
        for kind in kinds:
            for n in range(per_case):
                style = ["words", "written", "double" if lang == "en" else "words"][n % 3]
                text, secret = entity(kind, lang, rng, style)
                out = redact(text, split=bool(n % 2))
                leaked = [w for w in secret if w.lower() in out.lower().split()]
                counts = found[lang][kind]
                counts[0] += not leaked  # recalled
                counts[1] += 1  # said
        for _ in range(per_case * 2):
            text = negative(lang, rng)
            out = redact(text, split=False)
            found[lang]["negatives"][2] += "[" in out  # a false redaction
            found[lang]["negatives"][1] += 1
    report: dict[str, dict[str, dict[str, float]]] = {}
    for lang, kinds_found in found.items():
        negatives = kinds_found.pop("negatives")
        said = sum(c[1] for c in kinds_found.values())
        report[lang] = {
            kind: {"recall": round(c[0] / c[1], 3), "cases": c[1]}
            for kind, c in kinds_found.items()
        }
        wrong = negatives[2]
        recalled = sum(c[0] for c in kinds_found.values())
        report[lang]["all"] = {
            "recall": round(recalled / said, 3),
            "precision": round(recalled / (recalled + wrong), 3) if recalled + wrong else 1.0,
            "negatives": negatives[1],
            "false_redactions": wrong,
        }
    return report


def cost_us(run: Callable[[], None], count: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return round(best / count * 1e6, 1)


def costs(rng: random.Random) -> dict[str, float]:
    """µs per final segment and per partial revision (vLLM's: a revision per 80 ms step, a
    character each), for plain speech and for speech with a card or a phone number."""
    plain = ["thank you very much for calling how can I help you today"] * 100
    numbers = [entity(rng.choice(["card", "phone"]), "en", rng, "words")[0] for _ in range(100)]
    policy = RedactionPolicy()
    out: dict[str, float] = {}
    for name, sentences in (("plain", plain), ("numbers", numbers)):

        def finals(sentences: list[str] = sentences) -> None:
            redactor = Redactor(policy)
            for n, text in enumerate(sentences):
                redactor.receive(segment(n, text))

        steps = [(n, t[:k]) for n, t in enumerate(sentences[:20]) for k in range(1, len(t) + 1)]

        def partials(steps: list[tuple[int, str]] = steps) -> None:
            redactor = Redactor(policy)
            for n, text in steps:
                if text.strip():
                    redactor.receive(segment(n, text, final=False))

        out[f"final_us_per_segment_{name}"] = cost_us(finals, len(sentences))
        out[f"partial_us_per_revision_{name}"] = cost_us(partials, len(steps))
    return out


def hold(rng: random.Random) -> dict[str, float]:
    """How long a *kept* word waits because what came before it might have become an entity:
    from the step its last character came (a space after it) to the first partial that shows
    it, in ms (80 ms per step).  Sentences: plain, with prices, times and order numbers, and
    with a card or a phone number (only the words before the entity count there)."""
    sentences = [negative("en", rng) + " thank you" for _ in range(30)]
    sentences += [entity("card", "en", rng, "words")[0] for _ in range(10)]
    sentences += ["thank you very much for calling how can I help you today"] * 10
    redactor = Redactor(RedactionPolicy())
    delays: list[int] = []
    step = 0
    for n, text in enumerate(sentences):
        said = text.split()
        complete_at: dict[int, int] = {}
        shown_at: dict[int, int] = {}
        for k in range(1, len(text) + 1):
            step += 1
            for i, word in enumerate(text[:k].split()):  # its last character has come
                if word == said[i]:
                    complete_at.setdefault(i, step)
            if not text[:k].strip():
                continue
            for out in redactor.receive(segment(n, text[:k], final=False)):
                words = [w.text for w in out.words]
                pairs = enumerate(zip(words, said, strict=False))
                prefix = next((i for i, (a, b) in pairs if a != b), min(len(words), len(said)))
                for i in range(prefix):
                    shown_at.setdefault(i, step)
        for out in redactor.receive(segment(n, text)):
            first_token = next((i for i, w in enumerate(out.words) if w.text.startswith("[")),
                               len(said))  # fmt: skip
            for i in range(first_token):
                shown_at.setdefault(i, step)
                delays.append(80 * (shown_at[i] - complete_at.get(i, step)))
    delays.sort()
    return {
        "hold_ms_p50": float(statistics.median(delays)),
        "hold_ms_p99": float(delays[int(0.99 * (len(delays) - 1))]),
        "hold_ms_max": float(delays[-1]),
        "held_words_share": round(sum(d > 0 for d in delays) / len(delays), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-case", type=int, default=200, help="sentences per type, language")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    report = {"costs": {**costs(rng), **hold(rng)}, "quality": quality(args.per_case, rng)}
    for key, value in report["costs"].items():
        print(f"{key:26} {value}")
    for lang, kinds in report["quality"].items():
        print(lang, " ".join(f"{k}={v.get('recall')}" for k, v in kinds.items()), kinds["all"])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
