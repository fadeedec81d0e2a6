"""Every note the code cites is in the repository, with the section the citation names.

The code cites its design and protocol notes by file name and section, e.g. ``design.md §2``,
``vllm-realtime.md §2.2–2.4``, ``vllm-realtime.md §1.5`` with ``item 5``,
``test-peers.md §3b``, ``test-peers.md finding 3``, ``pjsua2.md P7`` or
``pjsua2.md "Pitfalls"``.  A bare name resolves to ``docs/<name>.md`` (then the citing file's
folder, then the repository root); a path (``benchmarks/README.md``) to that path in the
repository.  Each cited marker must be in the note:

* ``§X`` (also ranges ``§X–Y`` and lists ``§X, §Y``): a heading ``## X.`` / ``### X ...``;
* ``§X item N``: a line ``N. ...`` in section X (also for a bare ``§X item N`` whose note is
  named earlier in the file: some note in docs/ must have it);
* ``finding N``: a line starting ``Finding N``; ``PN``: a line starting ``PN`` (a pitfall);
* ``"Text"``: a heading containing Text.

A bare ``§X`` without a note's name is not checked: it usually cites an RFC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

THIS_FILE = Path(__file__).resolve()
ROOT = THIS_FILE.parents[2]
SCANNED = ("bridge", "storage", "sip_config", "tests", "benchmarks", ".ci", "scripts")
SKIPPED_DIRS = {"__pycache__", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

_SECTION = r"[0-9]+[a-z]?(?:\.[0-9]+)*"
# A note's name or path.  Not preceded by a word character, a slash or a dot, so that a path
# is taken whole, and neither "index.mdx" nor the tail of a dotted file name is half-read.
_NOTE = re.compile(r"(?<![\w/.])((?:[\w.-]+/)*[A-Za-z0-9_-]+\.md)(?![\w-])")
# What follows a note's name, once line breaks and comment leaders are folded into one space.
_REFERENCE = re.compile(
    rf"""\s?(?:
        §\s?(?P<sections>{_SECTION}(?:\s?[–-]\s?{_SECTION})?(?:,\s?§\s?{_SECTION})*)
            (?:\s+item\s+(?P<item>[0-9]+))?
      | finding\s+(?P<finding>[0-9]+)
      | (?P<pitfall>P[0-9]+)\b
      | "(?P<heading>[A-Z][^"\n]{{2,60}})"
    )""",
    re.VERBOSE,
)
_BARE_ITEM = re.compile(rf"§\s?(?P<section>{_SECTION})\s+item\s+(?P<item>[0-9]+)")
_FOLD = re.compile(r"\s*\n\s*(?:#+|--|//|<!--|\*(?!\*))?\s*")


@dataclass(frozen=True, slots=True)
class Citation:
    """One reference to a note: where it is, which note, which marker (if any)."""

    where: str  # path:line
    note: str  # as written: "design.md", "docs/pjsua2.md", "benchmarks/README.md"
    kind: str  # "file", "section", "item", "finding", "pitfall", "heading"
    marker: str = ""  # "2.4"; for items "1.5/7"
    citing_dir: str = ""  # the citing file's folder, relative to the root

    def describe(self) -> str:
        if self.kind == "section":
            return f"{self.note} §{self.marker}"
        if self.kind == "item":
            section, item = self.marker.split("/")
            return f"{self.note} §{section} item {item}"
        if self.kind == "finding":
            return f"{self.note} finding {self.marker}"
        if self.kind == "heading":
            return f'{self.note} "{self.marker}"'
        return f"{self.note} {self.marker}".rstrip()  # a file, or a pitfall "P7"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _expand(sections: str) -> list[str]:
    """ "2.2–2.4, §2.6" -> ["2.2", "2.4", "2.6"]: both ends of a range, every listed one."""
    found: list[str] = []
    for part in re.split(r",\s?§\s?", sections):
        found.extend(s for s in re.split(r"\s?[–-]\s?", part) if s)
    return found


def citations_in(text: str, path: str) -> list[Citation]:
    """Every citation of a note in ``text`` (the contents of ``path``, relative to the root)."""
    found: list[Citation] = []
    attached: set[int] = set()  # offsets of "§X item N" read as part of a named citation
    citing_dir = str(Path(path).parent)
    for match in _NOTE.finditer(text):
        note, where = match.group(1), f"{path}:{_line_of(text, match.start())}"
        tail_start = match.end()
        tail = _FOLD.sub(" ", text[tail_start : tail_start + 160])
        reference = _REFERENCE.match(tail)
        if reference is None:
            found.append(Citation(where, note, "file", citing_dir=citing_dir))
            continue
        if reference.group("sections"):
            sections = _expand(reference.group("sections"))
            if reference.group("item"):
                marker = f"{sections[-1]}/{reference['item']}"
                found.append(Citation(where, note, "item", marker, citing_dir))
                bare = _BARE_ITEM.search(text, tail_start)
                if bare is not None:
                    attached.add(bare.start())
            found.extend(Citation(where, note, "section", s, citing_dir) for s in sections)
        elif reference.group("finding"):
            found.append(Citation(where, note, "finding", reference["finding"], citing_dir))
        elif reference.group("pitfall"):
            found.append(Citation(where, note, "pitfall", reference["pitfall"], citing_dir))
        else:
            found.append(Citation(where, note, "heading", reference["heading"], citing_dir))
    for bare in _BARE_ITEM.finditer(text):
        if bare.start() not in attached:
            where = f"{path}:{_line_of(text, bare.start())}"
            marker = f"{bare['section']}/{bare['item']}"
            found.append(Citation(where, "docs/*.md", "item", marker, citing_dir))
    return found


def resolve(citation: Citation, root: Path) -> list[Path]:
    """The files a citation may mean, best first (a glob for a bare "§X item N")."""
    if citation.note == "docs/*.md":
        return sorted((root / "docs").glob("*.md"))
    if "/" in citation.note:
        return [root / citation.note]
    return [
        root / "docs" / citation.note,
        root / citation.citing_dir / citation.note,
        root / citation.note,
    ]


def _section_pattern(section: str) -> re.Pattern[str]:
    return re.compile(rf"^#{{1,6}}\s+(?:§\s?)?{re.escape(section)}\.?(?:\s|$)", re.MULTILINE)


def has_marker(note_text: str, citation: Citation) -> bool:
    """Whether the note's text carries what the citation points at."""
    if citation.kind == "file":
        return True
    if citation.kind == "section":
        return _section_pattern(citation.marker).search(note_text) is not None
    if citation.kind == "item":
        section, item = citation.marker.split("/")
        heading = _section_pattern(section).search(note_text)
        if heading is None:
            return False
        following = re.compile(r"^#{1,6}\s", re.MULTILINE).search(note_text, heading.end())
        body = note_text[heading.end() : following.start() if following else len(note_text)]
        return re.search(rf"^\s*{item}\.\s", body, re.MULTILINE) is not None
    if citation.kind == "finding":
        return re.search(rf"^\W*finding\s+{citation.marker}\b", note_text, re.I | re.M) is not None
    if citation.kind == "pitfall":
        return re.search(rf"^\W*{citation.marker}\b", note_text, re.MULTILINE) is not None
    wanted = citation.marker.lower()
    return any(wanted in line.lower() for line in note_text.splitlines() if line.startswith("#"))


def problem(citation: Citation, root: Path) -> str | None:
    """None if the citation resolves inside the repository, else one line saying what to fix."""
    candidates = [path for path in resolve(citation, root) if path.is_file()]
    inside = [path for path in candidates if path.resolve().is_relative_to(root.resolve())]
    if not inside:
        return (
            f"{citation.where}: cites {citation.describe()}, but no such file is in the "
            f"repository: add docs/{Path(citation.note).name} or fix the citation"
        )
    if any(has_marker(path.read_text(encoding="utf-8"), citation) for path in inside):
        return None
    named = ", ".join(str(path.relative_to(root)) for path in inside)
    return (
        f"{citation.where}: cites {citation.describe()}, but {named} has no such "
        "heading or line: add it to the note or fix the citation"
    )


def scanned_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            if path == THIS_FILE or SKIPPED_DIRS.intersection(path.parts):
                continue  # this file cites made-up notes on purpose
            if path.is_file():
                files.append(path)
    return files


def all_citations(root: Path) -> list[Citation]:
    found: list[Citation] = []
    for path in scanned_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # audio, pcaps, wheels: not prose
        if "\0" not in text:
            found.extend(citations_in(text, str(path.relative_to(root))))
    return found


# -- the repository ---------------------------------------------------------------------------


def test_every_cited_note_and_section_is_in_the_repository() -> None:
    citations = all_citations(ROOT)
    cited = {Path(c.note).name for c in citations}
    assert {"design.md", "pjsua2.md", "vllm-realtime.md"} <= cited, "the scan found too little"
    problems = [p for c in citations if (p := problem(c, ROOT)) is not None]
    assert problems == [], "\n".join(problems)


def test_the_notes_are_in_docs() -> None:
    for name in ("design", "vllm-realtime", "vllm-cpu", "test-peers", "speech", "pjsua2"):
        text = (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith("# "), f"docs/{name}.md starts with its title"
        assert "/work/" not in text, f"docs/{name}.md names a path outside the repository"


# -- the reader itself (pure) -------------------------------------------------------------------


NOTE = """# A note
## 1. First
### 1.5 Sequencing
1. one
7. seven
### 2.4 Timing
## 3. Peers
### 3b. Kamailio
**Finding 3.** graveyard
## Pitfalls
* **P7** two slots
"""


def test_citations_are_read_in_every_form_the_code_uses() -> None:
    text = (
        "x (design.md §2.2–2.4, pjsua2.md §4)\n"
        "# vllm-realtime.md §1.5 item 7, and vllm-cpu.md §2.2, §2.4\n"
        '* test-peers.md finding 3; speech.md P7; media-forks.md "Pitfalls"; '
        "docs/design.md §4.1-4.2\n"
        "  wrapped over lines (pjsua2.md\n  # §3b) and a bare §1.5 item 5 and RFC 3261 §7.3.1\n"
        "plain speech.md, and not index.mdx\n"
    )
    got = [(c.where, c.note, c.kind, c.marker) for c in citations_in(text, "m/x.py")]
    assert got == [
        ("m/x.py:1", "design.md", "section", "2.2"),
        ("m/x.py:1", "design.md", "section", "2.4"),
        ("m/x.py:1", "pjsua2.md", "section", "4"),
        ("m/x.py:2", "vllm-realtime.md", "item", "1.5/7"),
        ("m/x.py:2", "vllm-realtime.md", "section", "1.5"),
        ("m/x.py:2", "vllm-cpu.md", "section", "2.2"),
        ("m/x.py:2", "vllm-cpu.md", "section", "2.4"),
        ("m/x.py:3", "test-peers.md", "finding", "3"),
        ("m/x.py:3", "speech.md", "pitfall", "P7"),
        ("m/x.py:3", "media-forks.md", "heading", "Pitfalls"),
        ("m/x.py:3", "docs/design.md", "section", "4.1"),
        ("m/x.py:3", "docs/design.md", "section", "4.2"),
        ("m/x.py:4", "pjsua2.md", "section", "3b"),
        ("m/x.py:6", "speech.md", "file", ""),
        ("m/x.py:5", "docs/*.md", "item", "1.5/5"),
    ]


def test_a_missing_note_section_or_item_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "speech.md").write_text(NOTE, encoding="utf-8")
    absent = f"{tmp_path.name}.md"  # no such note anywhere
    code = (
        "speech.md §1.5 item 7, speech.md §3b, speech.md finding 3, speech.md P7,\n"
        'speech.md "Pitfalls", speech.md §1\n'
        "speech.md §2, speech.md §1.5 item 2, speech.md §3b item 1, speech.md finding 4,\n"
        f"speech.md P8, {absent}\n"
        'speech.md "Refusing", ../speech.md, speech.md §1.50, speech.md §1.5.1\n'
    )
    problems = [p for c in citations_in(code, "x.py") if (p := problem(c, tmp_path))]
    assert [p.split(": cites ")[1].split(",")[0] for p in problems] == [
        "speech.md §2",
        "speech.md §1.5 item 2",
        "speech.md §3b item 1",
        "speech.md finding 4",
        "speech.md P8",
        absent,
        'speech.md "Refusing"',
        "../speech.md",
        "speech.md §1.50",
        "speech.md §1.5.1",
    ]
    assert problems[0] == (
        "x.py:3: cites speech.md §2, but docs/speech.md has no such heading or line: "
        "add it to the note or fix the citation"
    )
