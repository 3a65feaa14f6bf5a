import pytest
import torch

from tests.conftest import tiny_config
from workbench.errors import ConfigError
from workbench.events import events_frame, read_events
from workbench.methods import get_method
from workbench.train import Trainer

PREL = {"m": 1, "p": 1, "L1": 4, "r": 0.5, "high_modality": "flair"}


def _config(brats_dir, **options):
    return tiny_config(brats_dir, method="semi-cml-prel", epochs=6, unlabeled_batch_size=3, options={**PREL, **options})


def test_bma_run_logs_pool_teacher_and_stages(brats_dir, tmp_path):
    trainer = Trainer(_config(brats_dir), tmp_path / "run", quiet=True)
    trainer.fit()
    trainer.close()
    bma = events_frame(tmp_path / "run", "bma")
    # m = 1, p = 1: epoch 1 waits, epoch 2 fills the pool, epoch 3 initialises the teacher; L1 = 4
    assert bma["epoch"].tolist() == [1, 2, 3]
    assert bma["action"].tolist() == ["wait", "fill", "init"]
    assert bma["modality"].unique().tolist() == ["flair"]
    stages = read_events(tmp_path / "run", "stage")
    assert stages[0]["stage"] == 2 and stages[0]["epoch"] == 4 and stages[0]["L2"] == 5
    assert stages[1]["stage"] == "2b" and stages[1]["epoch"] == 6  # G joins after L2 = 5
    train = read_events(tmp_path / "run", "train")
    assert "asc" in train[2] and "rel_t1" in train[3] and "rel_flair" not in train[4] and "rel_flair" in train[5]
    assert read_events(tmp_path / "run", "asc_rel_matrix")[0]["epoch"] == 4
    # after stage 1 the teacher is frozen: it equals the high model's weights at the init epoch
    teacher = trainer.method.teacher.state_dict()
    student = trainer.method.nets["flair"].state_dict()
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)


def test_prel_resume_in_stage_2_is_exact(brats_dir, tmp_path):
    full = Trainer(_config(brats_dir), tmp_path / "full", quiet=True)
    expected = full.fit()
    full.close()
    first = Trainer(_config(brats_dir), tmp_path / "cut", quiet=True)
    first.fit(stop_after=4)  # inside stage 2, after the teacher was built
    first.close()
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    assert resumed.method.high == "flair" and resumed.method.teacher_ready
    result = resumed.fit()
    resumed.close()
    assert result["per_patient"] == expected["per_patient"]
    for name, value in full.method.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.method.state_dict()[name]), name
    assert read_events(tmp_path / "full", "bma") == read_events(tmp_path / "cut", "bma")


@pytest.mark.parametrize("teacher", ["ema", "base"])
def test_ablation_teachers_run(brats_dir, tmp_path, teacher):
    trainer = Trainer(_config(brats_dir, teacher=teacher), tmp_path / teacher, quiet=True)
    trainer.fit()
    trainer.close()
    assert not read_events(tmp_path / teacher, "bma")
    assert read_events(tmp_path / teacher, "stage")[0]["teacher"] == teacher


def test_auto_high_modality_is_decided_from_stage_one(brats_dir, tmp_path):
    """auto: every modality keeps a BMA pool in stage 1; at L1 - 1 the higher mean validation
    DSC over epochs m+1..L1-1 wins, and a resumed run continues with the same teacher."""
    run = tmp_path / "auto"
    first = Trainer(_config(brats_dir, high_modality="auto", L1=4), run, quiet=True)
    first.fit(stop_after=5)
    first.close()
    decision = read_events(run, "high_modality")
    assert len(decision) == 1 and decision[0]["epoch"] == 3 and decision[0]["window"] == [2, 3]
    val = {r["epoch"]: r["dsc"] for r in read_events(run, "val")}
    means = {m: (val[2][m] + val[3][m]) / 2 for m in ("t1", "flair")}
    assert decision[0]["high"] == max(means, key=means.get)
    assert decision[0]["mean_val_dsc"] == pytest.approx(means)
    bma = read_events(run, "bma")
    assert {r["modality"] for r in bma} == {"t1", "flair"} and max(r["epoch"] for r in bma) == 3
    assert read_events(run, "stage")[0]["high"] == decision[0]["high"]
    resumed = Trainer.resume(run, quiet=True)
    assert resumed.method.high == decision[0]["high"] and resumed.method.teacher_ready
    assert resumed.fit()["summary"]


def test_bad_prel_options(brats_dir):
    with pytest.raises(ConfigError, match="unknown teacher 'mean'"):
        get_method("semi-cml-prel")(["t1", "flair"], _config(brats_dir, teacher="mean"))
    with pytest.raises(ConfigError, match="high_modality 'ct'"):
        get_method("semi-cml-prel")(["t1", "flair"], _config(brats_dir, high_modality="ct"))
    with pytest.raises(ConfigError, match="L1=9"):
        get_method("semi-cml-prel")(["t1", "flair"], _config(brats_dir, L1=9))


@pytest.mark.parametrize("epochs, m, L1", [(20, 8, 14), (12, 4, 8), (81, 32, 57)])
def test_default_schedule_initialises_the_teacher_before_l1(brats_dir, epochs, m, L1):
    """m = 40% of the epochs, but at most L1 - p - 2 so that m + p + 1 < L1."""
    config = tiny_config(brats_dir, method="semi-cml-prel", epochs=epochs)
    method = get_method("semi-cml-prel")(["t1", "flair"], config)
    assert (method.m, method.L1) == (m, L1)
    assert method.m + method.opts.p + 1 < method.L1
