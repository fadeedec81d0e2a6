"""The ``bridge`` command line: ``parser`` (every command and option), ``runner`` (a command to
its exit code; :func:`main` is the ``bridge`` console script and ``python -m bridge``),
``commands`` (what each command does), ``view`` (what a terminal shows during a transcription).
``bridge serve`` reads its settings here and runs :func:`bridge.app.serve`."""

from bridge.cli.runner import main

__all__ = ["main"]
