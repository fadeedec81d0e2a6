"""``[redaction]``: what never leaves a leg unredacted (bridge/core/redact).

::

    [redaction]
    entities = ["card", "cvv"]           # BRIDGE_REDACTION_ENTITIES; the default: payment
    #   cards and their security codes / expiry dates.  Also: iban, national_id, phone,
    #   bank_account, email, dob.  [] turns redaction off.
    languages = ["en", "es", "fr", "de"] # BRIDGE_REDACTION_LANGUAGES: how numbers are spoken
    mask_dtmf = true                     # BRIDGE_REDACTION_MASK_DTMF: keyed digits stored as *
    pause_keys = "*7"                    # BRIDGE_REDACTION_PAUSE_KEYS: DTMF that pauses the call's
    resume_keys = "*8"                   # transcription (a payment step), and resumes it; none
"""

from __future__ import annotations

from bridge.config.reader import Read, Schema, Setting
from bridge.core.redact import ENTITIES, RedactionPolicy
from bridge.core.redact.lexicon import LANGUAGES
from bridge.core.redact.stream import DTMF_KEYS

SCHEMA: Schema = {
    "redaction": {
        "entities": Setting("BRIDGE_REDACTION_ENTITIES", list),
        "languages": Setting("BRIDGE_REDACTION_LANGUAGES", list),
        "mask_dtmf": Setting("BRIDGE_REDACTION_MASK_DTMF", bool),
        "pause_keys": Setting("BRIDGE_REDACTION_PAUSE_KEYS"),
        "resume_keys": Setting("BRIDGE_REDACTION_RESUME_KEYS"),
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
    keys = {}
    for name in ("pause_keys", "resume_keys"):
        value = str(get("redaction", name, "")).upper()
        if len(value) > 8 or set(value) - set(DTMF_KEYS):
            problems.append(
                f"{read.origin('redaction', name)}: {value!r}: up to 8 of the DTMF keys {DTMF_KEYS}"
            )
            value = ""
        keys[name] = value
    if keys["pause_keys"] and keys["pause_keys"] == keys["resume_keys"]:
        problems.append(f"{read.origin('redaction', 'resume_keys')}: must differ from pause_keys")
        keys["resume_keys"] = ""
    return RedactionPolicy(
        entities=tuple(e for e in entities if e in ENTITIES),
        languages=tuple(lang for lang in languages if lang in LANGUAGES) or LANGUAGES,
        dtmf=get("redaction", "mask_dtmf", True),
        **keys,
    )
