"""``[redaction]``: what never leaves a leg unredacted (bridge/core/redact).

::

    [redaction]
    entities = ["card", "cvv"]           # BRIDGE_REDACTION_ENTITIES; the default: payment
    #   cards and their security codes / expiry dates.  Also: iban, national_id, phone,
    #   bank_account, email, dob.  [] turns redaction off.
    languages = ["en", "es", "fr", "de"] # BRIDGE_REDACTION_LANGUAGES: how numbers are spoken
    mask_dtmf = true                     # BRIDGE_REDACTION_MASK_DTMF: keyed digits stored as *
"""

from __future__ import annotations

from bridge.config.reader import Read, Schema, Setting
from bridge.core.redact import ENTITIES, RedactionPolicy
from bridge.core.redact.lexicon import LANGUAGES

SCHEMA: Schema = {
    "redaction": {
        "entities": Setting("BRIDGE_REDACTION_ENTITIES", list),
        "languages": Setting("BRIDGE_REDACTION_LANGUAGES", list),
        "mask_dtmf": Setting("BRIDGE_REDACTION_MASK_DTMF", bool),
    },
}


def build_redaction(read: Read) -> RedactionPolicy:
    """The policy; an unknown entity type or language is a problem, told with the known ones."""
    get, problems = read.value, read.problems
    entities = tuple(get("redaction", "entities", ("card", "cvv")))
    languages = tuple(get("redaction", "languages", LANGUAGES))
    for what, values, known in (
        ("entities", entities, ENTITIES),
        ("languages", languages, LANGUAGES),
    ):
        unknown = [v for v in values if v not in known]
        if unknown:
            problems.append(
                f"{read.origin('redaction', what)}: unknown {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(known)})"
            )
    if not languages:
        problems.append(f"{read.origin('redaction', 'languages')}: name at least one language")
    return RedactionPolicy(
        entities=tuple(e for e in entities if e in ENTITIES),
        languages=tuple(lang for lang in languages if lang in LANGUAGES) or LANGUAGES,
        dtmf=get("redaction", "mask_dtmf", True),
    )
