import json
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError, DataError
from workbench.events import events_frame, read_events
from workbench.train import TrainConfig, Trainer, lr_factor


def test_lr_warmup_then_multistep():
    factors = [lr_factor(s, 100, 10, [0.5, 0.8], 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == 1.0 and factors[49] == 1.0
    assert factors[50] == pytest.approx(0.1) and factors[80] == pytest.approx(0.01)


def test_poly_schedule_and_sgd_the_volumetric_papers_optimiser(brats_dir, tmp_path):
    factors = [lr_factor(s, 100, 0, [], 0.1, schedule="poly") for s in range(100)]
    assert factors[0] == 1.0 and factors[50] == pytest.approx(0.5**0.9) and factors[99] == pytest.approx(0.01**0.9)
    assert lr_factor(2, 100, 5, [], 0.1, schedule="poly") == pytest.approx(3 / 5)  # the warm-up first
    config = tiny_config(brats_dir, optimizer="sgd", lr=0.01, lr_schedule="poly", warmup_epochs=0, epochs=2)
    trainer = Trainer(config, tmp_path / "run", quiet=True)
    trainer.fit()
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.defaults["momentum"] == 0.9
    steps = trainer.total_steps
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * (1 - (steps - 1) / steps) ** 0.9)
    trainer.close()
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'; choose one of: adam, sgd"):
        tiny_config(brats_dir, optimizer="lion").validate()
    with pytest.raises(ConfigError, match="unknown lr_schedule 'cosine'"):
        tiny_config(brats_dir, lr_schedule="cosine").validate()


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


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_overwrite_that_fails_to_start_leaves_the_old_run_as_it_was(brats_dir, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(brats_dir, epochs=1), run, quiet=True).fit()
    before = _files(run)
    with pytest.raises(DataError, match="nonexistent"):
        Trainer(tiny_config(tmp_path / "nonexistent", epochs=1), run, quiet=True, overwrite=True)
    with pytest.raises(ConfigError, match="unknown method"):
        Trainer(tiny_config(brats_dir, method="nope"), run, quiet=True, overwrite=True)
    assert _files(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder behind


def test_overwrite_replaces_the_run_at_its_first_checkpoint(brats_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    Trainer(tiny_config(brats_dir, epochs=1), run, quiet=True).fit()
    before = _files(run)
    trainer = Trainer(tiny_config(brats_dir, epochs=2, seed=1), run, quiet=True, overwrite=True)
    assert _files(run) == before  # built, config written beside it: the old run is still whole
    calls = []
    real_epoch = trainer.train_epoch

    def epoch_after_the_swap(epoch):
        calls.append(json.loads((run / "config.json").read_text())["config"]["seed"])
        return real_epoch(epoch)

    monkeypatch.setattr(trainer, "train_epoch", epoch_after_the_swap)
    trainer.fit()
    trainer.close()
    assert calls == [1, 1]  # the epoch-0 checkpoint swapped the new run in before training
    assert json.loads((run / "metrics.json").read_text())["epoch"] == 2
    assert [r["epoch"] for r in read_events(run, "train")] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failed_start_leaves_no_empty_folder(brats_dir, tmp_path):
    with pytest.raises(DataError):
        Trainer(tiny_config(tmp_path / "nonexistent"), tmp_path / "new", quiet=True)
    assert not (tmp_path / "new").exists()


def test_the_run_folder_works_from_any_directory(brats_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(brats_dir.parent)
    Trainer(tiny_config(Path(brats_dir.name), epochs=1), tmp_path / "run", quiet=True).fit()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["data"] == str(brats_dir.resolve())
    monkeypatch.chdir(tmp_path)
    result = Trainer.resume("run", quiet=True, read_only=True, overrides={"device": "cpu"}).evaluate(write=False)
    assert result["per_patient"]


def test_a_moved_data_folder_is_given_on_resume_and_checked(brats_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(brats_dir, data)
    Trainer(tiny_config(data, epochs=1), tmp_path / "run", quiet=True).fit()
    expected = json.loads((tmp_path / "run" / "metrics.json").read_text())["per_patient"]
    data.rename(tmp_path / "moved")
    with pytest.raises(DataError, match=r"its data folder .*data does not exist here; give the folder .*\(--data\)"):
        Trainer.resume(tmp_path / "run", read_only=True)
    moved = Trainer.resume(tmp_path / "run", quiet=True, read_only=True, overrides={"data": tmp_path / "moved"})
    assert moved.evaluate(write=False)["per_patient"] == expected
    (tmp_path / "moved" / "BraTS-SYN-00000" / "extra.txt").write_text("other data")
    with pytest.raises(DataError, match="holds other data than"):
        Trainer.resume(tmp_path / "run", read_only=True, overrides={"data": tmp_path / "moved"})


def test_resume_refuses_what_would_change_the_training(brats_dir, tmp_path):
    Trainer(tiny_config(brats_dir, epochs=1), tmp_path / "run", quiet=True).fit()
    with pytest.raises(ConfigError, match="^lr cannot be changed on resume: only data, device can"):
        Trainer.resume(tmp_path / "run", overrides={"lr": 1.0})
    with pytest.raises(ConfigError, match="test_slices cannot be changed on resume.*only when evaluating"):
        Trainer.resume(tmp_path / "run", overrides={"test_slices": "tumour"})


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


# ----------------------------------------------------------------------------- the protocol rule
NO_LEAK_PREL = {"m": 1, "p": 1, "L1": 6, "r": 0.5, "high_modality": "auto", "teacher": "bma"}


def _mirror_labels(src, dst, cases):
    """A copy of the BraTS folder ``src`` whose ``cases`` have their labels mirrored left-right."""
    import shutil

    import nibabel as nib
    import numpy as np

    shutil.copytree(src, dst)
    for case in cases:
        path = dst / case / f"{case}_seg.nii.gz"
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.flip(np.asarray(img.dataobj), axis=0).copy(), img.affine, img.header), path)


def _prel_run(data, out, selection):
    config = tiny_config(
        data, method="semi-cml-prel", epochs=8, unlabeled_batch_size=3, selection=selection, options=dict(NO_LEAK_PREL)
    )
    trainer = Trainer(config, out, quiet=True)
    result = trainer.fit()
    trainer.close()
    decisions = [{k: v for k, v in r.items() if k not in ("time",)} for r in read_events(out, "bma")]
    high = [r["high"] for r in read_events(out, "high_modality")]
    return trainer, result, read_events(out, "train"), decisions, high


def test_changing_only_the_test_labels_changes_nothing_in_training(brats_dir, tmp_path):
    """The protocol rule: every training loss, BMA decision, the high-modality choice and every
    weight are bit-identical when only the test patients' labels change; the test metrics are not."""
    from workbench.data.slices import split_patients

    ids = sorted(p.name for p in brats_dir.iterdir() if p.is_dir())
    test_cases = split_patients(ids, 0.4).test
    mirrored = tmp_path / "mirrored"
    _mirror_labels(brats_dir, mirrored, test_cases)

    a, result_a, train_a, bma_a, high_a = _prel_run(brats_dir, tmp_path / "a", "val")
    b, result_b, train_b, bma_b, high_b = _prel_run(mirrored, tmp_path / "b", "val")
    assert a.splits.test_cases == b.splits.test_cases == test_cases
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(train_a) == strip(train_b) and len(train_a) == 8
    assert bma_a == bma_b and {r["action"] for r in bma_a} >= {"fill", "init"}
    assert high_a == high_b and len(high_a) == 1
    state_a, state_b = a.method.state_dict(), b.method.state_dict()
    assert list(state_a) == list(state_b)
    for name, wa in state_a.items():  # weights, teachers and the pools' extra state
        assert torch.equal(wa, state_b[name]) if isinstance(wa, torch.Tensor) else wa == state_b[name], name
    dsc = lambda r: [row["dsc"] for row in r["per_patient"]]  # noqa: E731
    assert dsc(result_a) != dsc(result_b)  # the test patients do judge


def test_the_no_leak_check_catches_test_feedback(brats_dir, tmp_path):
    """The same check with selection=test (the paper's protocol): the BMA scores come from the
    test patients, so mirroring their labels changes what the teacher sees; every such run's
    metrics and events carry the stamp."""
    from workbench.data.slices import split_patients

    ids = sorted(p.name for p in brats_dir.iterdir() if p.is_dir())
    mirrored = tmp_path / "mirrored"
    _mirror_labels(brats_dir, mirrored, split_patients(ids, 0.4).test)
    _, result_a, _, bma_a, _ = _prel_run(brats_dir, tmp_path / "a", "test")
    _, _, _, bma_b, _ = _prel_run(mirrored, tmp_path / "b", "test")
    assert [r["acc"] for r in bma_a] != [r["acc"] for r in bma_b]
    assert result_a["protocol"]["selection"] == "test"
    assert result_a["protocol"]["stamp"] == "test feedback (paper protocol)"
    assert read_events(tmp_path / "a", "run_start")[0]["protocol"]["stamp"] == "test feedback (paper protocol)"


def test_split_and_protocol_are_recorded(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir, epochs=1, test_curve=True), tmp_path / "run", quiet=True)
    result = trainer.fit()
    trainer.close()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    split = config["split"]
    assert set(split) == {"labeled", "unlabeled", "val", "test"}
    assert [len(split[k]) for k in ("labeled", "unlabeled", "val", "test")] == [2, 2, 1, 1]
    assert read_events(tmp_path / "run", "run_start")[0]["split"] == split
    protocol = result["protocol"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"] == protocol == config["protocol"]
    assert protocol["selection"] == "val" and protocol["stamp"] is None and protocol["unlabeled_slices"] == "body"
    assert protocol["patients"] == {"labeled": 2, "unlabeled": 2, "val": 1, "test": 1}
    assert protocol["data"]["builtin"] == {"kind": "brats", "patients": 6, "seed": 0, "difficulty": "paper"}
    assert protocol["data"]["folder"] == str(brats_dir.resolve()) and len(protocol["data"]["sha256"]) == 64
    assert read_events(tmp_path / "run", "val")[0]["on"] == "val"
    curve = read_events(tmp_path / "run", "test_curve")[0]
    assert curve["note"] == "test (not used in training)" and set(curve["dsc"]) == {"t1", "flair"}


@pytest.mark.parametrize(
    "values, match",
    [
        ({"selection": "best"}, "unknown selection 'best'"),
        ({"selection": "val", "val_fraction": 0.0}, "selection='val' needs validation patients"),
        ({"unlabeled_slices": "tumour"}, "unknown unlabeled_slices 'tumour'"),
        ({"val_scores": "never"}, "unknown val_scores 'never'"),
        ({"val_fraction": 1.2}, r"val_fraction=1.2: must be in \[0, 1\)"),
        ({"test_fraction": 0.5, "val_fraction": 0.5}, "leave no training patients"),
    ],
)
def test_bad_protocol_options(brats_dir, values, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(brats_dir, **values).validate()


def test_val_scores_if_used_skips_scores_no_method_reads_and_changes_nothing_else(brats_dir, tmp_path):
    results = {}
    for mode in ("always", "if_used"):
        trainer = Trainer(
            tiny_config(brats_dir, method="semi-cml", epochs=2, unlabeled_batch_size=2, val_scores=mode),
            tmp_path / mode,
            quiet=True,
        )
        results[mode] = (trainer.fit(), trainer.method.state_dict())
        trainer.close()
    assert len(read_events(tmp_path / "always", "val")) == 2 and read_events(tmp_path / "if_used", "val") == []
    assert results["always"][0]["per_patient"] == results["if_used"][0]["per_patient"]
    for name, weight in results["always"][1].items():
        assert torch.equal(weight, results["if_used"][1][name]), name
    prel = Trainer(
        tiny_config(
            brats_dir,
            method="semi-cml-prel",
            epochs=3,
            unlabeled_batch_size=2,
            val_scores="if_used",
            options={"m": 0, "p": 1, "L1": 2},
        ),
        tmp_path / "prel",
        quiet=True,
    )
    prel.fit()
    prel.close()
    assert len(read_events(tmp_path / "prel", "val")) == 3  # PReL's teachers read them


def test_a_run_made_before_the_validation_split_is_read_as_it_was_trained(brats_dir, tmp_path):
    """A checkpoint whose config has no ``selection`` (the earlier protocol) resumes with its old
    80/20 split, label-based unlabeled slices and test feedback, and says so in its metrics."""
    from workbench.train import EARLIER_PROTOCOL

    trainer = Trainer(tiny_config(brats_dir, epochs=1, **EARLIER_PROTOCOL), tmp_path / "run", quiet=True)
    expected = trainer.fit()
    trainer.close()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    for key in ("selection", "val_fraction", "unlabeled_slices", "test_curve", "val_scores"):
        del state["config"][key]
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    old = Trainer.resume(tmp_path / "run", quiet=True, read_only=True)
    assert old.splits.val == [] and old.splits.test_cases == trainer.splits.test_cases
    result = old.evaluate(write=False)
    assert result["per_patient"] == expected["per_patient"]
    assert result["protocol"]["stamp"] == "test feedback (paper protocol)"
    assert result["protocol"]["unlabeled_slices"] == "label"


def test_too_few_patients_names_the_skipped_folders(brats_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for case in sorted(p for p in brats_dir.iterdir() if p.is_dir())[:2]:
        shutil.copytree(case, data / case.name)
    (data / "BraTS-SYN-00099").mkdir()  # left empty
    with pytest.raises(DataError, match="need at least 3 patients; skipped 1 folder without images: BraTS-SYN-00099"):
        Trainer(tiny_config(data), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_steps_per_epoch_zero_is_one_pass_over_the_labeled_slices(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir, steps_per_epoch=0, epochs=1), tmp_path / "pass", quiet=True)
    n = trainer._x_l.shape[0]
    assert trainer.steps_per_epoch == n // 4 >= 1 and trainer.method.steps_per_epoch == trainer.steps_per_epoch
    assert trainer.total_steps == trainer.steps_per_epoch
    trainer.fit()
    trainer.close()
    assert trainer.step == n // 4
    start = read_events(tmp_path / "pass", "run_start")[0]
    assert start["steps_per_epoch"] == n // 4
    with pytest.raises(ConfigError, match="steps_per_epoch=-1: must be >= 1, or 0"):
        tiny_config(brats_dir, steps_per_epoch=-1).validate()


def test_val_every_scores_every_kth_epoch_and_the_last(brats_dir, tmp_path):
    trainer = Trainer(tiny_config(brats_dir, epochs=5, val_every=2), tmp_path / "v", quiet=True)
    trainer.fit()
    trainer.close()
    assert [e["epoch"] for e in read_events(tmp_path / "v", "val")] == [2, 4, 5]
    with pytest.raises(ConfigError, match="val_every=2: method 'semi-cml-prel' reads the validation scores"):
        tiny_config(brats_dir, method="semi-cml-prel", val_every=2).validate()
