"""The data-free paper-scale profile (patchpnp.evaluation.paper_scale)."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from patchpnp.evaluation import paper_scale as ps
from patchpnp.evaluation.profile_table import PAPER_SCALE_COLUMNS, read_paper_scale
from patchpnp.formats import FormatError
from patchpnp.inference.calibration import denoiser_call
from patchpnp.metrics.memory import PeakMemory
from patchpnp.patching.micro_batch import Calibration, MemoryModel
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.prior import ImageSpaceDenoiser
from patchpnp.prior.loading import build_network
from session_runs import background
from workflow_runner import TINY_NETWORK

torch.set_num_threads(1)


def _calibration(forward=(1.0, 0.0, 1000.0), gradient=(4.0, 0.0, 8000.0)) -> Calibration:
    models = {"forward": MemoryModel(*forward), "gradient": MemoryModel(*gradient)}
    return Calibration(models, "cpu", "float32", {"forward": [], "gradient": []})


def _network_file(tmp_path, network=TINY_NETWORK):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"network": network}))
    return path


def test_plan_is_whole_then_each_patch_size_with_each_micro_batch_mode():
    jobs = ps.scale_plan(["diffpir", "dps"], [320, 512], [32, 64, 128, 512])
    assert len(jobs) == 2 * (2 + 3 * 3 + 3 * 3)  # P = 512 is not a patch of N = 512 or 320
    first = [(j["inference_size"], j["patch_batch_mode"]) for j in jobs[:4]]
    assert first == [(320, "whole"), (32, "auto"), (32, "one"), (32, "all")]
    assert {j["solver"] for j in jobs[:20]} == {"diffpir"}


def test_micro_batches_follow_the_mode_and_the_budget():
    cal = _calibration()  # forward: 1000 MiB per Mpx, floor 1 MiB
    job = dict(solver="diffpir", image_size=320, inference_size=32)
    assert ps.micro_batch_for({**job, "patch_batch_mode": "whole"}, cal, "25%") is None
    assert ps.micro_batch_for({**job, "patch_batch_mode": "one"}, cal, "25%") == 1
    assert ps.micro_batch_for({**job, "patch_batch_mode": "all"}, cal, "25%") == 121
    # 25% of 320^2 px = 25600 px = 25 tiles of 32^2.
    assert ps.micro_batch_for({**job, "patch_batch_mode": "auto"}, cal, "25%") == 25
    whole = ps.predicted_working({**job, "patch_batch_mode": "whole"}, cal, None)
    assert whole == pytest.approx(1000 * 0.1024)
    dps = {**job, "solver": "dps", "patch_batch_mode": "one"}
    assert ps.predicted_working(dps, cal, 3) == pytest.approx(8000 * 3 * 1024 / 1e6)  # gradient


def test_time_is_scaled_from_the_sampled_tiles():
    # 0.5 s of tiling and stand-ins; 4 real tiles add 2 s: 0.5 s per tile, 100 tiles.
    assert ps.extrapolated_seconds(2.5, 0.5, 4, 100) == pytest.approx(50.5)
    assert ps.extrapolated_seconds(0.4, 0.5, 4, 100) == pytest.approx(0.5)  # noise: no negative
    with pytest.raises(ValueError):
        ps.extrapolated_seconds(1.0, 0.5, 0, 10)


def test_memory_limit_is_mib_or_a_share_of_the_machine(monkeypatch):
    assert ps.limit_mib(3000, 24000.0) == 3000.0
    assert ps.limit_mib("50%", 24000.0) == 12000.0
    with pytest.raises(ps.MicroBatchError, match="paper_profile.memory_limit"):
        ps.limit_mib("lots", 24000.0)
    # The GPU's memory on CUDA (the logic, without a GPU).
    props = SimpleNamespace(total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: props)
    assert ps.machine_memory_mib("cuda:0") == 80 * 1024
    assert ps.machine_memory_mib("cpu") > 0


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), ("seed: 1\n", "no 'network' section"),
     ("network: {img_channels: 1}\n", "lacks model_channels"), (": [", "not a YAML")],
)  # fmt: skip
def test_bad_network_configs_name_the_file(tmp_path, content, message):
    path = tmp_path / "cfg.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ps.PaperScaleError, match=message) as err:
        ps.read_network(path)
    assert str(path) in str(err.value)


def test_the_paper_config_network_is_readable():
    network = ps.read_network("config/paper.yaml")
    assert network["model_channels"] == 128


def _sampled_call(net, real, mode, patch_batch=1):
    sampled = ps._sampled_network_class()(net, real)
    den = ShiftedGridDenoiser(sampled, 16, "reflect", patch_batch=patch_batch)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 48, 48, generator=g)
    v = torch.randn(x.shape, generator=g)
    denoiser_call(den, x, v, mode)  # first-call costs
    meter = PeakMemory("cpu")
    meter.start()
    sampled.new_call(real)
    denoiser_call(den, x, v, mode)
    return meter.stop().working_mib, sampled


@pytest.mark.parametrize("mode", ["forward", "gradient"])
def test_sampled_micro_batches_have_the_full_calls_memory_peak(mode):
    net = ImageSpaceDenoiser(build_network(TINY_NETWORK).eval().requires_grad_(False))
    full, counted = _sampled_call(net, None, mode)
    sampled, partial = _sampled_call(net, 2, mode)
    assert counted.real_tiles == 16  # 4 x 4 tiles of 16 px at N = 48
    assert partial.real_tiles == 2
    assert sampled == pytest.approx(full, rel=0.05)


def test_an_over_the_limit_configuration_is_reported_not_run(tmp_path):
    cal = tmp_path / "cal.json"
    cal.write_text(_calibration().to_json())
    job = dict(solver="dps", image_size=320, inference_size=320, patch_batch_mode="whole")
    row = ps.measure_job(job, TINY_NETWORK, cal, "25%", 100, 4)
    assert row["status"].startswith("not run: predicted 819 MiB > limit 100 MiB")
    assert "peak_working_mib" not in row


def test_a_sampled_configuration_is_measured_and_marked(tmp_path):
    cal = tmp_path / "cal.json"
    cal.write_text(_calibration().to_json())
    job = dict(solver="diffpir", image_size=48, inference_size=16, patch_batch_mode="one")
    row = ps.measure_job(job, TINY_NETWORK, cal, "25%", "90%", 3)
    assert row["status"] == "measured"
    assert (row["tiles_per_call"], row["patch_batch"], row["timed_tiles"]) == (16, 1, 3)
    assert row["seconds_per_call"] > 0 and row["peak_working_mib"] > 0


def test_ratios_and_targets():
    rows = [
        dict(solver="dps", image_size=64, inference_size=64, patch_batch_mode="whole",
             tiles_per_call=1, peak_working_mib=100.0, seconds_per_call=1.0),
        dict(solver="dps", image_size=64, inference_size=16, patch_batch_mode="auto",
             tiles_per_call=25, peak_working_mib=20.0, seconds_per_call=2.0, patch_batch=5),
        dict(solver="dps", image_size=64, inference_size=32, patch_batch_mode="auto",
             tiles_per_call=9, peak_working_mib=30.0, seconds_per_call=2.0, patch_batch=3),
    ]  # fmt: skip
    table = ps.add_ratios(pd.DataFrame(rows))
    assert table["pixel_ratio"].tolist() == pytest.approx([1.0, 1.5625, 2.25])
    assert table["working_vs_whole"].tolist() == pytest.approx([1.0, 0.2, 0.3])
    assert table["time_vs_pixel_ratio"].tolist() == pytest.approx([1.0, 1.28, 2 / 2.25])
    check = ps.target_check(table, 64, 0.25)
    assert check["memory_ok"].tolist() == [True, False]
    assert check["time_ok"].tolist() == [True, True]


@background("paper_profile_run")
def _paper_profile_run(work: Path, env: dict) -> Path:
    """`patchpnp paper-profile` on a tiny network: one diffpir image of 32 px, 16-px patches."""
    cmd = [
        sys.executable, "-m", "patchpnp.cli", "paper-profile",
        "--output", str(work / "paper_scale.csv"),
        "--network-config", str(_network_file(work)),
        "--calibration", str(work / "cal.json"), "--summary", str(work / "summary.md"),
        "--solvers", "diffpir", "--image-sizes", "32", "--sizes", "16",
        "--sampled-chunks", "2", "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return work


@pytest.mark.slow
def test_paper_profile_end_to_end(paper_profile_run, tmp_path):
    """The command on a tiny network: calibration, four configurations in fresh processes,
    the table, its summary and the figure."""
    from patchpnp.evaluation.figures import paper_scale_figure

    out = paper_profile_run / "paper_scale.csv"
    table = read_paper_scale(out)
    assert list(table.columns) == PAPER_SCALE_COLUMNS
    assert table["patch_batch_mode"].tolist() == ["whole", "auto", "one", "all"]
    assert (table["status"] == "measured").all()
    assert table.loc[table["patch_batch_mode"] == "all", "timed_tiles"].item() == 9
    assert table.loc[table["patch_batch_mode"] == "one", "timed_tiles"].item() == 2
    assert json.loads((paper_profile_run / "cal.json").read_text())["device"] == "cpu"
    assert "Targets at N = 32" in (paper_profile_run / "summary.md").read_text()
    png, pdf = paper_scale_figure(out, tmp_path / "fig")
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0


def test_bad_input_stops_before_any_measurement(tmp_path):
    with pytest.raises(ps.PaperScaleError, match="network config not found"):
        ps.paper_profile_command(
            output=str(tmp_path / "o.csv"), network_config=str(tmp_path / "none.yaml"),
            calibration=str(tmp_path / "c.json"), grid=ps.ScaleGrid(["dps"], [32], [16]),
        )  # fmt: skip
    with pytest.raises(ps.MicroBatchError, match="memory_limit"):
        ps.paper_profile_command(
            output=str(tmp_path / "o.csv"), network_config=str(_network_file(tmp_path)),
            calibration=str(tmp_path / "c.json"), grid=ps.ScaleGrid(["dps"], [32], [16]),
            memory_limit="half",
        )  # fmt: skip
    assert not list(tmp_path.glob("*.csv")) and not (tmp_path / "c.json").exists()
    with pytest.raises(ps.PaperScaleError, match="patch sides, not \\['whole'\\]"):
        ps.ScaleGrid(["dps"], [32], ["whole", 16])  # --sizes parses as profile's does
    with pytest.raises(ps.PaperScaleError, match="no image size"):
        ps.ScaleGrid(["dps"], [], [16])


def test_a_table_without_the_contract_columns_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"solver": ["dps"]}).to_csv(path, index=False)
    with pytest.raises(FormatError, match="missing column"):
        read_paper_scale(path)
