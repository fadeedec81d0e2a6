"""Redaction of one leg's transcript before it leaves the leg (issue 17): what is found
(:mod:`.entities`, numbers read from speech by :mod:`.spoken`), and the stream of segment
revisions held and released redacted (:mod:`.stream`)."""

from bridge.core.redact.entities import ENTITIES, LABELS
from bridge.core.redact.stream import RedactionPolicy, Redactor

__all__ = ["ENTITIES", "LABELS", "RedactionPolicy", "Redactor"]
