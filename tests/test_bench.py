"""The training-speed benchmark: tiny sizes, no timing assertions."""

import argparse
import json
import math

import pytest
import torch

from workbench import bench
from workbench.errors import ConfigError
from workbench.losses import asc_loss

TINY = dict(size=32, batch=2, unlabeled=2, base_channels=4, steps=2, device="cpu")


@pytest.mark.parametrize("k", [2, 3])
def test_asc_loss_loop_matches_vectorised_value_and_gradient(k):
    gen = torch.Generator().manual_seed(k)
    maps = torch.sigmoid(3 * torch.randn(2, k, 1, 12, 12, generator=gen, dtype=torch.float64))
    grads = []
    for fn in (asc_loss, bench.asc_loss_loop):
        a, b = maps[0].clone().requires_grad_(), maps[1].clone().requires_grad_()
        loss = fn(a, b)
        loss.backward()
        grads.append((loss.detach(), a.grad, b.grad))
    (fast, fa, fb), (slow, sa, sb) = grads
    assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-12)
    assert torch.allclose(fa, sa, rtol=1e-8, atol=1e-12) and torch.allclose(fb, sb, rtol=1e-8, atol=1e-12)


def test_asc_benchmark_checks_and_reports_each_k():
    rows = bench.asc_benchmark(k_values=(2, 3), size=16, repeats=1)
    assert [r["k"] for r in rows] == [2, 3]
    assert all(r["vectorised_ms"] > 0 and r["loop_ms"] > 0 and r["speedup"] > 0 for r in rows)


@pytest.mark.parametrize("method, images", [("semi-cml", (2 + 2) * 2), ("supervised", 2 * 2)])
def test_step_benchmark_counts_images_of_both_modalities(method, images):
    row = bench.step_benchmark(method, warmup=1, **TINY)
    assert row["method"] == method and row["precision"] == "fp32" and row["channels_last"] is False
    assert row["images_per_step"] == images
    assert row["ms_per_step"] > 0
    assert row["img_per_s"] == pytest.approx(images * 1000.0 / row["ms_per_step"])
    assert math.isfinite(row["loss"])
    assert row["device"].startswith("cpu (") and row["torch"] == torch.__version__
    json.dumps(row)


def test_epoch_benchmark_runs_the_trainer_on_generated_data():
    row = bench.epoch_benchmark("semi-cml", patients=4, **TINY)
    assert row["ms_per_step"] > 0 and row["img_per_s"] > 0 and math.isfinite(row["loss"])
    assert row["images_per_step"] == (2 + 2) * 2


def test_bad_settings_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="tf32") as err:
        bench.step_benchmark(precision="tf32", device="cpu", size=32, batch=2, unlabeled=2, base_channels=4)
    assert "\n" not in str(err.value)
    for bad in (dict(size=40), dict(size=0), dict(batch=0)):
        with pytest.raises(ConfigError) as err:
            bench.step_benchmark(**{**TINY, **bad})
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown method"):
        bench.step_benchmark("no-such-method", **TINY)


def test_format_table_is_markdown_with_the_method():
    row = {"method": "semi-cml", "size": 32, "img_per_s": 1234.5, "loss": 0.25, "channels_last": True}
    table = bench.format_table([row])
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].startswith("| method") and lines[1].startswith("|---")
    assert "semi-cml" in table and "1234" in table and "yes" in table


def _args(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_prints_tables_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = _args(
        "--config",
        "custom",
        "--size",
        "32",
        "--batch-size",
        "2",
        "--unlabeled",
        "2",
        "--base-channels",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--no-epoch",
        "--no-asc",
        "--quiet",
        "--json",
        str(out),
    )
    assert bench.run(args) == 0
    text = capsys.readouterr().out
    assert "torch" in text and "| semi-cml |" in text
    payload = json.loads(out.read_text())
    assert len(payload["step"]) == 1 and payload["epoch"] == [] and payload["asc"] == []


def test_run_rejects_tf32_on_cpu_and_sizes_with_paper_config():
    with pytest.raises(ConfigError, match="tf32"):
        bench.run(_args("--device", "cpu", "--precision", "tf32", "--quiet"))
    with pytest.raises(ConfigError, match="--config custom"):
        bench.run(_args("--size", "64", "--quiet"))


def test_cli_bench_error_is_one_line(capsys):
    from workbench.cli import main

    assert main(["bench", "--device", "cpu", "--precision", "tf32", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: precision 'tf32' needs a CUDA device") and err.count("\n") == 1


def test_3d_step_counts_voxels_and_builds_the_vnet():
    row = bench.step_benchmark(
        "cross-view",
        size=(32, 16, 16),
        batch=2,
        unlabeled=1,
        steps=1,
        warmup=0,
        base_channels=4,
        backbone="vnet",
        options={"pretrain_epochs": 0},
    )
    assert row["size"] == "32x16x16" and row["images_per_step"] == (2 + 1) * 2
    assert row["voxels_per_step"] == 3 * 2 * 32 * 16 * 16
    assert row["mvox_per_s"] == pytest.approx(row["voxels_per_step"] / row["ms_per_step"] / 1000)
    assert row["peak_mem_mb"] is None and row["channels_last"] is False  # CPU: no allocator statistics
    with pytest.raises(ConfigError, match="method 'semi-cml' trains in 2D only"):
        bench.step_benchmark("semi-cml", size=(32, 32, 32), batch=2, unlabeled=2, steps=1, base_channels=4)
    with pytest.raises(ConfigError, match="size=32x24x32: must be a multiple of 16"):
        bench.step_benchmark("supervised", size=(32, 24, 32), batch=2, unlabeled=0, steps=1, base_channels=4)
    with pytest.raises(ConfigError, match="not timed here"):
        bench.step_benchmark("multi-condos", size=32, batch=2, unlabeled=2, steps=1, base_channels=4)


def test_epoch_counts_its_validation_in_2d_and_3d():
    row = bench.epoch_benchmark("supervised", patients=4, **TINY)
    assert row["val_s"] > 0 and 0 < row["val_share_pct"] < 100
    train_s = row["ms_per_step"] * row["steps"] / 1000
    assert row["val_share_pct"] == pytest.approx(100 * row["val_s"] / (train_s + row["val_s"]), abs=0.1)
    assert row["epoch_img_per_s"] < row["img_per_s"]
    row3 = bench.epoch_benchmark(
        "supervised", size=(16, 16, 16), batch=2, unlabeled=0, steps=1, base_channels=4, patients=4
    )
    assert row3["size"] == "16x16x16" and row3["mvox_per_s"] > 0 and row3["val_s"] > 0


def test_run_3d_paper_configs_and_custom_patch(capsys):
    tiny = "--config custom --patch 16 16 16 --batch-size 2 --unlabeled 2 --base-channels 2 --steps 1 --warmup 0"
    args = _args("--spatial-dims", "3", *tiny.split(), "--device", "cpu", "--no-epoch", "--quiet")
    assert bench.run(args) == 0
    text = capsys.readouterr().out
    assert "method cross-view (vnet, 3D)" in text and "| cross-view | 16x16x16 |" in text and "mvox_per_s" in text
    assert bench._configs(_args("--spatial-dims", "3")) == list(bench.PAPER_CONFIGS_3D)
    assert bench.PAPER_CONFIGS_3D == (((112, 112, 80), 4, 4), ((96, 96, 96), 4, 4))
    with pytest.raises(ConfigError, match="--size is for 2D runs"):
        bench.run(_args("--spatial-dims", "3", "--config", "custom", "--size", "32", "--quiet"))
