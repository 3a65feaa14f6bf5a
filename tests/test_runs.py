"""Run folders: a new run is written beside the one it replaces and swapped in at its first
checkpoint (workbench.runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import ConfigError
from workbench.runs import NewRunFolder, absolute_path, check_out_folder


def make_run(folder: Path, text: str = "old") -> Path:
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_text(text)
    (folder / "notes.txt").write_text(text)
    return folder


def test_an_existing_run_needs_overwrite(tmp_path):
    make_run(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"run folder .*run already has a run: use --resume, --overwrite"):
        NewRunFolder(tmp_path / "run")


def test_out_naming_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^--out .*file is a file, not a folder$"):
        NewRunFolder(tmp_path / "file")
    with pytest.raises(ConfigError, match="--init .* is a file"):
        check_out_folder(tmp_path / "file", "--init")


def test_nothing_is_created_before_open(tmp_path):
    NewRunFolder(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()


def test_a_new_folder_is_written_in_place_and_leftovers_removed(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.jsonl").write_text("an earlier failed start")
    (tmp_path / "run" / "mine.txt").write_text("kept")
    folder = NewRunFolder(tmp_path / "run")
    assert folder.open(leftovers=("events.jsonl",)) == tmp_path / "run"
    assert not (tmp_path / "run" / "events.jsonl").exists() and (tmp_path / "run" / "mine.txt").exists()
    assert folder.commit() == tmp_path / "run"


def test_a_replacement_leaves_the_old_run_until_commit(tmp_path):
    old = make_run(tmp_path / "run")
    folder = NewRunFolder(old, overwrite=True)
    staging = folder.open()
    assert staging != old and staging.parent == old.parent
    (staging / "checkpoint.pt").write_text("new")
    assert (old / "checkpoint.pt").read_text() == "old" and (old / "notes.txt").exists()
    with open(staging / "events.jsonl", "w") as log:  # an open file survives the swap
        assert folder.commit() == old
        log.write("after the swap\n")
    assert (old / "checkpoint.pt").read_text() == "new"
    assert (old / "events.jsonl").read_text() == "after the swap\n"
    assert not (old / "notes.txt").exists()  # the whole old run is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or old copy left


def test_a_stale_staging_folder_is_cleared(tmp_path):
    old = make_run(tmp_path / "run")
    (tmp_path / ".run.overwrite").mkdir()
    (tmp_path / ".run.overwrite" / "checkpoint.pt").write_text("a replacement that never committed")
    staging = NewRunFolder(old, overwrite=True).open()
    assert list(staging.iterdir()) == []


def test_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_path("data/x") == str(tmp_path / "data" / "x")
    assert absolute_path("") == "" and absolute_path(None) is None


def test_cached_run_trains_once_and_is_shared_by_data_content(brats_dir, tmp_path, monkeypatch):
    import shutil

    from tests.conftest import tiny_config
    from workbench import train
    from workbench.cache import cached_run, run_key
    from workbench.methods import get_method

    cache = tmp_path / "cache"
    first = cached_run(tiny_config(brats_dir, epochs=1), cache, quiet=True)
    assert (first / "metrics.json").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(brats_dir, copy)  # another notebook's folder with the same data
    monkeypatch.setattr(train.Trainer, "fit", lambda self: pytest.fail("a cached run was trained again"))
    assert cached_run(tiny_config(copy, epochs=1), cache, quiet=True) == first
    assert run_key(tiny_config(brats_dir, epochs=2)) != run_key(tiny_config(brats_dir, epochs=1))
    semi = dict(method="semi-cml")
    assert run_key(tiny_config(brats_dir, **semi, options={"w2": 0.25})) != run_key(tiny_config(brats_dir, **semi))
    default_w2 = get_method("semi-cml").options_class().w2
    assert run_key(tiny_config(brats_dir, **semi, options={"w2": default_w2})) == run_key(
        tiny_config(brats_dir, **semi)
    )


def test_cached_run_resumes_an_interrupted_run(brats_dir, tmp_path):
    from tests.conftest import tiny_config
    from workbench.cache import cached_run, run_key
    from workbench.events import read_events
    from workbench.train import Trainer

    config = tiny_config(brats_dir, epochs=2)
    run_dir = tmp_path / "cache" / f"supervised-{run_key(config)}"
    stopped = Trainer(config, run_dir, quiet=True)
    stopped.fit(stop_after=1)  # as if the kernel died after epoch 1
    stopped.close()
    assert cached_run(config, tmp_path / "cache", quiet=True) == run_dir
    assert [r["epoch"] for r in read_events(run_dir, "train")] == [1, 2]
    assert len(read_events(run_dir, "resume")) == 1


def test_builtin_data_is_generated_once(tmp_path, monkeypatch):
    from workbench.cache import builtin_data
    from workbench.data import synthetic

    folder = builtin_data("brats", 3, cache=tmp_path)
    assert folder.name == "data-brats-p3-s0-paper" and (folder / "workbench-synthetic.json").is_file()
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("generated twice"))
    assert builtin_data("brats", 3, cache=tmp_path) == folder


def test_builtin_data_made_side_by_side_is_made_once(tmp_path, monkeypatch):
    """Two notebooks asking for the same built-in dataset at once: one generates it, the other
    waits for the lock and reads it (no half-written folder, no second generation)."""
    import threading

    from workbench.cache import builtin_data
    from workbench.data import synthetic

    calls, generate = [], synthetic.generate

    def slow_generate(*args, **kwargs):
        calls.append(args)
        threading.Event().wait(0.5)  # long enough for the other caller to arrive
        return generate(*args, **kwargs)

    monkeypatch.setattr(synthetic, "generate", slow_generate)
    folders, errors = [], []

    def ask():
        try:
            folders.append(builtin_data("brats", 3, cache=tmp_path))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1 and folders[0] == folders[1]
    assert (folders[0] / "workbench-synthetic.json").is_file()


class _Smuggled:
    """An object whose unpickling calls a function: what a hostile checkpoint would carry."""

    def __reduce__(self):
        return (print, ("this ran while the checkpoint was loaded",))


def test_a_checkpoint_that_smuggles_an_object_is_refused(tmp_path, capsys):
    import torch

    from workbench.errors import DataError
    from workbench.runs import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "method": {"w": torch.zeros(2)}, "payload": _Smuggled()}, path)
    with pytest.raises(DataError, match="holds objects other than tensors and plain containers; refused") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert "this ran" not in capsys.readouterr().out  # nothing was executed


def test_resume_and_open_run_refuse_a_smuggling_checkpoint(brats_dir, tmp_path):
    import torch

    from tests.conftest import tiny_config
    from workbench.errors import DataError
    from workbench.inference import open_run
    from workbench.train import Trainer

    trainer = Trainer(tiny_config(brats_dir, epochs=1), tmp_path / "run", quiet=True)
    trainer.save_checkpoint()
    trainer.close()
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)  # a real checkpoint loads as weights only
    torch.save({**state, "payload": _Smuggled()}, path)
    for opening in (lambda: Trainer.resume(tmp_path / "run", quiet=True), lambda: open_run(tmp_path / "run")):
        with pytest.raises(DataError, match="objects other than tensors"):
            opening()


def test_open_run_gives_the_trained_method_without_a_loop(brats_dir, tmp_path):
    import torch

    from tests.conftest import tiny_config
    from workbench.inference import open_run, predict_volume
    from workbench.train import Trainer

    trainer = Trainer(tiny_config(brats_dir, epochs=1), tmp_path / "run", quiet=True)
    trainer.fit()
    trainer.close()
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    opened = open_run(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == files  # nothing written
    assert opened.epoch == 1 and opened.config == trainer.config and not opened.method.training
    volume = opened.splits.test[0]
    got = predict_volume(opened.method, volume, opened.device)
    want = predict_volume(trainer.method, volume, trainer.device)
    assert all(torch.equal(got[m], want[m]) for m in want)
