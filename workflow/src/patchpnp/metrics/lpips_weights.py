"""torchvision's ImageNet AlexNet weights for LPIPS: fetched once, hash-checked, recorded.

LPIPS measures distances in the feature space of an ImageNet-trained AlexNet, whose
weights torchvision publishes at :data:`TORCHVISION_URL`. The file name carries the
first hex digits of the file's SHA-256 (torch hub's convention, ``name-<prefix>.ext``),
so a copy is genuine when its digest starts with that prefix (:func:`sha256_prefix_ok`).

The workflow's local rule ``lpips_weights`` runs :func:`lpips_weights_command` once, on
the submitting node, to put the file at ``patchpnp.layout.LPIPS_WEIGHTS`` (under
``resources/``): a genuine copy already there is kept, one in torch hub's cache is
copied, else the file is downloaded to a temporary name and moved into place only
after its hash checks out, so a failed or corrupt download leaves nothing behind. It
always writes a status file beside it (``patchpnp.layout.LPIPS_STATUS``): whether the
weights are available and, when they are not, why and the one command that fixes it.
Inference cells read only that file; they never download.

Modes (config ``metrics.lpips``): ``auto`` records "unavailable" and carries on (LPIPS
is n/a), ``required`` fails, ``off`` skips LPIPS altogether.

Torch-free: the workflow calls :func:`status_generation` and, in ``required`` mode,
:func:`ensure_weights` while it plans, and planning must stay quick.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shlex
import shutil
import sys
import urllib.request
from pathlib import Path

from patchpnp.atomic import atomic_path
from patchpnp.errors import PatchpnpError
from patchpnp.params import LPIPS_MODES

log = logging.getLogger(__name__)

__all__ = [
    "LPIPSWeightsError",
    "TORCHVISION_URL",
    "WEIGHTS_NAME",
    "alexnet_checkpoint_path",
    "ensure_weights",
    "fetch_weights",
    "lpips_settings",
    "lpips_weights_command",
    "sha256_prefix_ok",
    "status_generation",
]

# torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url, written out so that this module
# (and the workflow's planning) does not import torchvision; a test checks they agree.
TORCHVISION_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
WEIGHTS_NAME = TORCHVISION_URL.rsplit("/", 1)[1]
DOWNLOAD_TIMEOUT = 20.0  # seconds without a byte before a download attempt gives up

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's convention: name-<sha256 prefix>.ext


class LPIPSWeightsError(PatchpnpError, RuntimeError):
    """The AlexNet weights cannot be had (or are not genuine); the message says why and
    how to fix it."""


def lpips_settings(config: dict) -> tuple[str, str]:
    """``(mode, source)`` of a workflow config (``metrics.lpips``, ``metrics.lpips_source``):
    the mode ``auto`` (absent), ``required`` or ``off`` (YAML's ``false``, an unquoted
    off, included); the source torchvision's URL unless the config names another."""
    metrics = config.get("metrics") or {}
    mode = metrics.get("lpips", "auto")
    return ("off" if mode is False else mode), (metrics.get("lpips_source") or TORCHVISION_URL)


# -- where the weights may be ------------------------------------------------------------------
def _torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` without importing torch: ``$TORCH_HOME/hub``, where
    ``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` and that to ``~/.cache/torch``."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default))) / "hub"


def alexnet_checkpoint_path(name: str = WEIGHTS_NAME) -> Path:
    """Where torchvision caches the ImageNet AlexNet weights (the file may not exist).

    ``torch.hub.get_dir()/checkpoints/<name>``, exactly where torchvision looks before it
    would download. When torch is already imported its own answer is used (it honours
    ``torch.hub.set_dir``); otherwise the same rule is applied without importing it.
    """
    torch = sys.modules.get("torch")
    hub = Path(torch.hub.get_dir()) if torch is not None else _torch_hub_dir()
    return hub / "checkpoints" / name


def sha256_prefix_ok(path: str | os.PathLike, name: str | None = None) -> tuple[bool, str]:
    """Whether the file at ``path`` has the SHA-256 prefix that ``name`` (default: the
    file's own name) carries, as ``(ok, why not)``."""
    path = Path(path)
    name = name or path.name
    match = _HASH_IN_NAME.search(name)
    if match is None:
        return False, f"no hash in the checkpoint name {name!r}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if not digest.startswith(match.group(1)):
        return False, (
            f"{path} does not match the hash in its name {name!r} (found sha256 "
            f"{digest[:12]}..., expected {match.group(1)}...): not the genuine torchvision weights"
        )
    return True, ""


def _genuine(path: Path, name: str) -> tuple[bool, str]:
    if not path.is_file():
        return False, f"no file at {path}"
    return sha256_prefix_ok(path, name)


# -- getting them ------------------------------------------------------------------------------
def fetch_weights(
    output: str | os.PathLike,
    *,
    source: str = TORCHVISION_URL,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> str:
    """Put genuine weights at ``output``; return where they came from.

    The expected SHA-256 prefix is the one in ``output``'s file name (torchvision's
    ``alexnet-owt-7be5be79.pth`` for the workflow). In order: a genuine file already at
    ``output`` is kept; one in torch hub's cache (:func:`alexnet_checkpoint_path` of the
    same name) is copied; else ``source`` (any URL urllib opens, ``file://`` included) is
    downloaded. Copies and downloads go to a temporary file beside ``output`` that
    replaces it only once its hash checks out: on any failure nothing new is left there.

    Raises :class:`LPIPSWeightsError` naming every place tried and why it failed.
    """
    output = Path(output)
    name = output.name
    ok, why = _genuine(output, name)
    if ok:
        return f"already present at {output}"
    tried = [why]
    hub = alexnet_checkpoint_path(name)
    ok, why = _genuine(hub, name)
    if ok:
        with atomic_path(output) as tmp:
            shutil.copyfile(hub, tmp)
            ok, why = sha256_prefix_ok(tmp, name)  # the copy, not just the original
            if not ok:
                raise LPIPSWeightsError(f"copying {hub} to {output}: {why}")
        return f"copied from torch hub's cache {hub}"
    tried.append(f"torch hub's cache: {why}")
    try:
        # Connect first: an unreachable source leaves not even the folder behind.
        response = urllib.request.urlopen(source, timeout=timeout)
        with response, atomic_path(output) as tmp:
            with open(tmp, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
            ok, why = sha256_prefix_ok(tmp, name)
            if not ok:
                raise LPIPSWeightsError(f"the download from {source} is not genuine: {why}")
    except LPIPSWeightsError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as err:
        # URLError (no network, no such file), timeouts, a bad URL, a cut connection
        tried.append(f"download from {source} failed: {type(err).__name__}: {err}")
        raise LPIPSWeightsError("; ".join(tried)) from err
    return f"downloaded from {source}"


def fix_command(output: str | os.PathLike, source: str = TORCHVISION_URL) -> str:
    """The one shell command that puts the weights at ``output`` (run it where ``source``
    is reachable), to be followed by rerunning the workflow."""
    target = Path(output).resolve()
    return f"curl -fL --create-dirs -o {shlex.quote(str(target))} {shlex.quote(source)}"


def ensure_weights(
    output: str | os.PathLike,
    *,
    source: str = TORCHVISION_URL,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> str:
    """``metrics.lpips: required`` while the workflow plans: succeed at once when a genuine
    copy is at ``output`` or in torch hub's cache (the rule copies it later); otherwise
    try the download now. Raises :class:`LPIPSWeightsError` with the fix when that fails."""
    output = Path(output)
    for place in (output, alexnet_checkpoint_path(output.name)):
        if _genuine(place, output.name)[0]:
            return f"found at {place}"
    try:
        return fetch_weights(output, source=source, timeout=timeout)
    except LPIPSWeightsError as err:
        raise LPIPSWeightsError(
            f"config key 'metrics.lpips' is 'required', but torchvision's AlexNet weights "
            f"cannot be had ({err}). Fix: run `{fix_command(output, source)}` where "
            f"{source} is reachable, then rerun; or set metrics.lpips to 'auto' to "
            f"record LPIPS as n/a"
        ) from err


# -- the status file and when to rewrite it -----------------------------------------------------
def _fingerprint(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _places(weights: Path) -> list[Path]:
    return [weights, alexnet_checkpoint_path(weights.name)]


def _read_status(status: Path) -> dict | None:
    try:
        return json.loads(status.read_text())
    except (OSError, ValueError):
        return None


def status_generation(status: str | os.PathLike, weights: str | os.PathLike) -> int:
    """The rerun trigger of the ``lpips_weights`` rule (one of its params).

    The status records its generation and the files it saw (size and modification time
    of the weights at ``weights`` and in torch hub's cache). While the disk still matches
    that record, the generation stays the same and Snakemake keeps the status; once it
    does not, the generation goes up by one and the params change reruns the rule:

    - the status says unavailable, and a file has since appeared at either place (a
      user ran the fix, or torchvision cached the weights), or changed;
    - the status says available, and the weights file is gone or changed.

    Only file metadata is read (no hashing): cheap enough to run at every planning.
    A status that records "unavailable" stays put while nothing changed, so a file
    that is not genuine is not retried at every run.
    """
    recorded = _read_status(Path(status))
    if recorded is None:
        return 0
    generation = int(recorded.get("generation", 0))
    weights = Path(weights)
    seen = recorded.get("seen", {})
    places = [weights] if recorded.get("available") else _places(weights)
    if any(_fingerprint(p) != seen.get(str(p)) for p in places):
        return generation + 1
    return generation


def _write_status(status: Path, record: dict) -> None:
    with atomic_path(status) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def lpips_weights_command(
    output: str,
    mode: str = "auto",
    source: str | None = None,
    status: str | None = None,
    generation: int = 0,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> str:
    """``patchpnp lpips-weights``: fetch the weights to ``output`` and write the status.

    ``status`` defaults to ``status.json`` beside ``output``; ``generation`` is recorded
    in it (the workflow passes :func:`status_generation`). In mode ``auto`` a failure is
    recorded (``available: false``, the reason and the fix) and the command succeeds; in
    ``required`` it raises :class:`LPIPSWeightsError` and writes nothing; ``off`` only
    records that LPIPS is off. Returns the status as text.
    """
    if mode not in LPIPS_MODES:
        raise LPIPSWeightsError(f"LPIPS mode {mode!r}: expected one of {LPIPS_MODES}")
    weights = Path(output)
    status_path = Path(status) if status else weights.with_name("status.json")
    source = source or TORCHVISION_URL
    record: dict = {"mode": mode, "weights": str(weights), "source": source}
    if mode == "off":
        record.update(available=False, reason="metrics.lpips is off: LPIPS is not computed")
    else:
        try:
            record.update(
                available=True, origin=fetch_weights(weights, source=source, timeout=timeout)
            )
            log.info("LPIPS weights at %s: %s", weights, record["origin"])
        except LPIPSWeightsError as err:
            fix = fix_command(weights, source)
            if mode == "required":
                raise LPIPSWeightsError(
                    f"LPIPS is required, but {err}. Fix: run `{fix}` where {source} is "
                    f"reachable, then rerun"
                ) from err
            then = (
                "then rerun the workflow (the lpips_weights rule sees the new file, checks "
                "its hash, and the inference cells rerun with LPIPS)"
            )
            record.update(available=False, reason=str(err), fix=fix, then=then)
            log.warning(
                "LPIPS will be recorded as n/a: %s. To fix, where %s is reachable run: %s; %s",
                err,
                source,
                fix,
                then,
            )
    record["generation"] = int(generation)
    places = [weights] if record["available"] else _places(weights)
    record["seen"] = {str(p): _fingerprint(p) for p in places}
    _write_status(status_path, record)
    return json.dumps(record, indent=2)
