"""LPIPS's AlexNet weights: fetched once into resources/ with the hash checked, the status
recorded, offline and required modes, and the rerun trigger of the lpips_weights rule.

No network: downloads come from ``file://`` URLs of a stand-in file whose name carries
its own sha256 prefix, as torchvision's does (``alexnet-owt-<prefix>.pth``)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from patchpnp import layout
from patchpnp.errors import PatchpnpError
from patchpnp.metrics import lpips_weights as lw
from patchpnp.metrics.lpips_weights import (
    TORCHVISION_URL,
    WEIGHTS_NAME,
    LPIPSWeightsError,
    alexnet_checkpoint_path,
    ensure_weights,
    fetch_weights,
    lpips_weights_command,
    sha256_prefix_ok,
    status_generation,
)

UNREACHABLE = "file:///nonexistent/patchpnp-test/alexnet-owt-7be5be79.pth"


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache, whatever this machine has cached."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    if "torch" in sys.modules:
        monkeypatch.setattr(sys.modules["torch"].hub, "_hub_dir", None)
    return home / "hub" / "checkpoints"


def stand_in(folder: Path, content: bytes = b"stand-in weights " * 64) -> Path:
    """A file named like torchvision's, with its own sha256 prefix in the name."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = hashlib.sha256(content).hexdigest()[:8]
    path = folder / f"alexnet-fake-{prefix}.pth"
    path.write_bytes(content)
    return path


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_names_and_url_are_torchvisions():
    from torchvision.models import AlexNet_Weights

    assert TORCHVISION_URL == AlexNet_Weights.IMAGENET1K_V1.url
    assert Path(layout.LPIPS_WEIGHTS).name == WEIGHTS_NAME
    assert Path(layout.LPIPS_STATUS).parent == Path(layout.LPIPS_WEIGHTS).parent
    assert layout.LPIPS_WEIGHTS.startswith(layout.RESOURCES + "/")


@pytest.mark.parametrize("env", [{"TORCH_HOME": "~/th"}, {"XDG_CACHE_HOME": "/xdg"}, {}])
def test_hub_dir_without_torch_is_torchs(monkeypatch, tmp_path, env):
    import torch

    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert lw._torch_hub_dir() == Path(torch.hub.get_dir())
    assert alexnet_checkpoint_path() == Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def test_download_from_a_file_url(tmp_path):
    source = stand_in(tmp_path / "mirror")
    out = tmp_path / "resources" / "lpips" / source.name
    assert fetch_weights(out, source=source.as_uri()) == f"downloaded from {source.as_uri()}"
    assert out.read_bytes() == source.read_bytes()
    assert leftovers(out.parent) == [out]  # no temporary file left
    # A genuine file already in place is kept, without looking at the source.
    assert fetch_weights(out, source=UNREACHABLE).startswith("already present")


def test_a_download_that_does_not_match_the_hash_leaves_nothing(tmp_path):
    source = tmp_path / "mirror" / "alexnet-fake-00000000.pth"
    source.parent.mkdir()
    source.write_bytes(b"not what the name promises")
    found = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    out = tmp_path / "resources" / "lpips" / source.name
    with pytest.raises(LPIPSWeightsError) as err:
        fetch_weights(out, source=source.as_uri())
    assert "expected 00000000" in str(err.value) and f"found sha256 {found}" in str(err.value)
    assert leftovers(out.parent) == []
    # In auto mode the status says why; still no weights.
    status = json.loads(lpips_weights_command(str(out), source=source.as_uri()))
    assert status["available"] is False and "expected 00000000" in status["reason"]
    assert leftovers(out.parent) == [out.parent / "status.json"]


def test_offline_auto_records_unavailable_and_the_fix(tmp_path, monkeypatch):
    from patchpnp.cli import main

    monkeypatch.chdir(tmp_path)
    out = Path(layout.LPIPS_WEIGHTS)
    assert main(["lpips-weights", "--output", str(out), "--source", UNREACHABLE]) == 0
    status = json.loads(Path(layout.LPIPS_STATUS).read_text())
    assert status["available"] is False and status["mode"] == "auto"
    assert "nonexistent" in status["reason"] and "torch hub's cache" in status["reason"]
    target = str((tmp_path / layout.LPIPS_WEIGHTS).resolve())
    assert status["fix"] == f"curl -fL --create-dirs -o {target} {UNREACHABLE}"
    assert "rerun" in status["then"]
    assert not out.exists()


def test_offline_required_fails_with_the_fix_and_writes_nothing(tmp_path, capsys):
    from patchpnp.cli import main

    out = tmp_path / "lpips" / WEIGHTS_NAME
    with pytest.raises(LPIPSWeightsError) as err:
        lpips_weights_command(str(out), mode="required", source=UNREACHABLE)
    assert isinstance(err.value, PatchpnpError)
    assert "required" in str(err.value) and "curl -fL" in str(err.value)
    assert not out.parent.exists()  # not even the folder
    argv = ["lpips-weights", "--output", str(out), "--mode", "required", "--source", UNREACHABLE]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("patchpnp lpips-weights: error: LPIPS is required")


def test_weights_in_torch_hubs_cache_are_copied_not_downloaded(tmp_path, empty_hub):
    cached = stand_in(empty_hub)
    out = tmp_path / "resources" / cached.name
    origin = fetch_weights(out, source=UNREACHABLE)
    assert origin == f"copied from torch hub's cache {cached}"
    assert out.read_bytes() == cached.read_bytes() and cached.exists()


def test_off_writes_only_the_status(tmp_path):
    out = tmp_path / "lpips" / WEIGHTS_NAME
    status = json.loads(lpips_weights_command(str(out), mode="off", source=UNREACHABLE))
    assert status["available"] is False and status["mode"] == "off"
    assert leftovers(out.parent) == [out.parent / "status.json"]
    with pytest.raises(LPIPSWeightsError, match="expected one of"):
        lpips_weights_command(str(out), mode="sometimes")


def test_status_generation_reruns_the_rule_only_when_the_disk_changed(tmp_path, empty_hub):
    """The rule's generation param: stable while the disk matches the status, one up once
    weights appear after 'unavailable' or vanish after 'available'."""
    mirror = stand_in(tmp_path / "mirror")
    out = tmp_path / "resources" / mirror.name
    status = tmp_path / "resources" / "status.json"

    def run(generation, source=UNREACHABLE):
        lpips_weights_command(str(out), source=source, status=str(status), generation=generation)
        return json.loads(status.read_text())

    assert status_generation(status, out) == 0  # no status yet
    assert run(0)["available"] is False
    assert status_generation(status, out) == 0  # offline, nothing changed: stays
    # A file that is not genuine appears: rerun once, and not again (no retry loop).
    out.write_bytes(b"truncated")
    assert status_generation(status, out) == 1
    assert "does not match the hash" in run(1)["reason"]
    assert status_generation(status, out) == 1
    # The user runs the fix: rerun, and then stay.
    out.write_bytes(mirror.read_bytes())
    assert status_generation(status, out) == 2
    assert run(2)["available"] is True
    assert status_generation(status, out) == 2
    # The hub cache coming or going does not matter once the weights are in place...
    stand_in(empty_hub, mirror.read_bytes())
    assert status_generation(status, out) == 2
    # ...but the weights vanishing does.
    out.unlink()
    assert status_generation(status, out) == 3
    assert run(3)["origin"].startswith("copied from torch hub's cache")
    assert status_generation(status, out) == 3


def test_status_generation_after_a_download_is_stable(tmp_path):
    """A run that downloads changes the disk itself: that must not rerun the rule."""
    mirror = stand_in(tmp_path / "mirror")
    out = tmp_path / "resources" / mirror.name
    status = tmp_path / "resources" / "status.json"
    generation = status_generation(status, out)
    lpips_weights_command(
        str(out), source=mirror.as_uri(), status=str(status), generation=generation
    )
    assert status_generation(status, out) == generation == 0


def test_required_mode_at_planning(tmp_path, empty_hub):
    out = tmp_path / "resources" / "lpips" / WEIGHTS_NAME
    with pytest.raises(LPIPSWeightsError) as err:
        ensure_weights(out, source=UNREACHABLE)
    message = str(err.value)
    assert "'metrics.lpips' is 'required'" in message and "curl -fL" in message
    assert "metrics.lpips to 'auto'" in message
    # A genuine copy in torch hub's cache is enough; the rule copies it later.
    cached = stand_in(empty_hub)
    assert ensure_weights(tmp_path / cached.name, source=UNREACHABLE) == f"found at {cached}"
    assert not (tmp_path / cached.name).exists()
    # Otherwise the download is tried now.
    mirror = stand_in(tmp_path / "mirror", b"other bytes")
    assert ensure_weights(tmp_path / "r" / mirror.name, source=mirror.as_uri()).startswith(
        "downloaded"
    )


def test_sha256_prefix_ok_checks_against_a_given_name(tmp_path):
    path = stand_in(tmp_path)
    assert sha256_prefix_ok(path) == (True, "")
    ok, why = sha256_prefix_ok(path, "alexnet-owt-7be5be79.pth")
    assert not ok and "expected 7be5be79" in why
    assert sha256_prefix_ok(path, "weights.pth") == (
        False,
        "no hash in the checkpoint name 'weights.pth'",
    )


def test_planning_imports_no_torch(repo_root):
    """The workflow calls status_generation and ensure_weights while it plans."""
    code = (
        "import sys\n"
        "from patchpnp.metrics.lpips_weights import status_generation, ensure_weights\n"
        "status_generation('resources/lpips/status.json', 'resources/lpips/x-00.pth')\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr


# -- the metric given a file --------------------------------------------------------------------
def test_lpips_metric_refuses_a_given_file_that_is_not_genuine(tmp_path):
    from patchpnp.metrics.quality import LPIPSMetric, LPIPSUnavailableWarning

    wrong = tmp_path / WEIGHTS_NAME
    wrong.write_bytes(b"not the torchvision AlexNet weights")
    metric = LPIPSMetric(checkpoint=wrong)
    assert metric.available is False and "expected 7be5be79" in metric.reason
    # The hash in the name matches, but the file is no AlexNet: still no number.
    matching = stand_in(tmp_path / "m")
    metric = LPIPSMetric(checkpoint=matching)
    assert metric.available is False and metric.reason
    x = np.zeros((1, 1, 16, 16))
    with pytest.warns(LPIPSUnavailableWarning):
        assert np.isnan(metric(x, x)).all()


def test_lpips_metric_modes(tmp_path, caplog):
    import logging

    from patchpnp.metrics.quality import LPIPSUnavailableWarning, lpips_metric

    missing = tmp_path / WEIGHTS_NAME
    x = np.zeros((2, 1, 16, 16))
    with caplog.at_level(logging.INFO), warnings.catch_warnings():
        warnings.simplefilter("error", LPIPSUnavailableWarning)
        off = lpips_metric(weights=missing, mode="off")
        assert np.isnan(off(x, x)).all() and np.isnan(off(x, x)).all()  # no warning
    assert [r.getMessage() for r in caplog.records].count(
        "LPIPS is off: it is recorded as missing (NaN)"
    ) == 1
    auto = lpips_metric(weights=missing, mode="auto")
    assert auto.available is False and str(missing) in auto.reason
    with pytest.raises(LPIPSWeightsError, match="LPIPS is required"):
        lpips_metric(weights=missing, mode="required")
    with pytest.raises(LPIPSWeightsError, match="expected one of"):
        lpips_metric(mode="sometimes")


@pytest.mark.parametrize(
    "metrics, expected",
    [
        (None, ("auto", TORCHVISION_URL)),
        ({"lpips": "required"}, ("required", TORCHVISION_URL)),
        ({"lpips": False}, ("off", TORCHVISION_URL)),  # YAML's unquoted off
        ({"lpips": "off", "lpips_source": "file:///m/a-1.pth"}, ("off", "file:///m/a-1.pth")),
    ],
)
def test_lpips_settings_of_a_config(metrics, expected):
    import yaml
    from patchpnp.metrics.lpips_weights import lpips_settings
    from patchpnp.pipeline.config import validate_config

    config = {} if metrics is None else {"metrics": metrics}
    assert lpips_settings(config) == expected
    demo = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    assert lpips_settings(demo) == ("auto", TORCHVISION_URL)
    unquoted = yaml.safe_load("metrics:\n  lpips: off\n")
    validate_config({**demo, **unquoted})
    assert lpips_settings(unquoted)[0] == "off"
