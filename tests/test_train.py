import json

import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import events_frame, read_events
from workbench.train import TrainConfig, Trainer, lr_factor


def test_lr_warmup_then_multistep():
    factors = [lr_factor(s, 100, 10, [0.5, 0.8], 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == 1.0 and factors[49] == 1.0
    assert factors[50] == pytest.approx(0.1) and factors[80] == pytest.approx(0.01)


def test_supervised_run_writes_a_complete_run_folder(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir), tmp_path / "run", quiet=True)
    result = trainer.fit()
    trainer.close()
    run = tmp_path / "run"
    for name in ("config.json", "checkpoint.pt", "events.jsonl", "metrics.json", "per_patient.csv"):
        assert (run / name).exists(), name
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["method"] == "supervised" and "torch" in config["versions"]
    assert [r["epoch"] for r in read_events(run, "train")] == [1, 2, 3]
    val = events_frame(run, "val")
    assert list(val.columns) >= ["event", "epoch", "step"] and "dsc.t1" in val.columns and "dsc.flair" in val.columns
    rows = result["per_patient"]
    assert {r["modality"] for r in rows} == {"t1", "flair"}
    assert len(rows) == 2 * len(trainer.splits.test_cases)
    assert all(0.0 <= r["dsc"] <= 1.0 for r in rows)
    assert set(result["summary"]["t1"]) >= {"dsc", "dsc_std", "sens", "hd95", "asd", "biou"}


def test_resumed_run_matches_uninterrupted_run(brats_dir, tmp_path):
    config = tiny_config(brats_dir, epochs=3)
    full = Trainer(config, tmp_path / "full", quiet=True)
    full_result = full.fit()
    full.close()

    first = Trainer(tiny_config(brats_dir, epochs=3), tmp_path / "stopped", quiet=True)
    assert first.fit(stop_after=1) is None  # stops after epoch 1, checkpointed
    first.close()
    resumed = Trainer.resume(tmp_path / "stopped", quiet=True)
    assert resumed.epoch == 1
    resumed_result = resumed.fit()
    resumed.close()

    for (name, a), (_, b) in zip(full.method.state_dict().items(), resumed.method.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed_result["per_patient"] == full_result["per_patient"]
    strip = lambda rs: [{k: v for k, v in r.items()} for r in rs]  # noqa: E731
    assert strip(read_events(tmp_path / "full", "val")) == strip(read_events(tmp_path / "stopped", "val"))
    assert strip(read_events(tmp_path / "full", "train")) == strip(read_events(tmp_path / "stopped", "train"))


def test_same_seed_same_numbers_bit_for_bit(brats_dir, tmp_path):
    results = []
    for name in ("a", "b"):
        trainer = Trainer(tiny_config(brats_dir, epochs=1), tmp_path / name, quiet=True)
        results.append(trainer.fit())
        trainer.close()
    assert results[0]["per_patient"] == results[1]["per_patient"]
    assert read_events(tmp_path / "a", "train") == read_events(tmp_path / "b", "train")


def test_existing_run_folder_is_not_overwritten(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir, epochs=1), tmp_path / "run", quiet=True)
    trainer.fit()
    trainer.close()
    with pytest.raises(ConfigError, match="already has a run"):
        Trainer(tiny_config(brats_dir, epochs=1), tmp_path / "run", quiet=True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "nope"}, "unknown method 'nope'; choose one of: .*supervised"),
        ({"labeled": 1.5}, "labeled fraction 1.5"),
        ({"labeled": 0.0}, "labeled fraction 0.0"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"size": 40}, "size=40: must be a multiple of 16"),
        ({"epochs": 0}, "epochs=0"),
        ({"precision": "fp16"}, "unknown precision 'fp16'; choose one of: auto, fp32, tf32, bf16"),
        ({"precision": "tf32"}, "precision 'tf32' needs a CUDA device, not 'cpu'"),
        ({"micro_batches": 0}, "micro_batches=0: must be >= 1"),
    ],
)
def test_bad_config_is_one_clear_line(brats_dir, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        tiny_config(brats_dir, **overrides).validate()
    assert "\n" not in str(info.value)


def test_unknown_config_key():
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})


def test_precision_auto_is_fp32_on_cpu(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir, epochs=1), tmp_path / "auto", quiet=True)
    assert trainer.config.precision == "auto" and trainer.precision == "fp32"
    start = json.loads((tmp_path / "auto" / "events.jsonl").read_text().splitlines()[0])
    assert start["precision"] == "fp32" and start["processes"] == 1


def test_bf16_autocast_runs_on_cpu(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir, epochs=1, precision="bf16"), tmp_path / "bf16", quiet=True)
    result = trainer.fit()
    trainer.close()
    assert all(0.0 <= r["dsc"] <= 1.0 for r in result["per_patient"])


def test_checkpoint_is_written_atomically(brats_dir, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(brats_dir, epochs=2), tmp_path / "run", quiet=True)
    trainer.fit(stop_after=1)
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        trainer.save_checkpoint()
    trainer.close()
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == good  # the previous checkpoint survives
    assert not list((tmp_path / "run").glob("*.tmp"))  # and no half-written temp file is left
    resumed = Trainer.resume(tmp_path / "run", quiet=True)
    assert resumed.epoch == 1
    resumed.close()
