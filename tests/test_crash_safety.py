"""Crash safety of a run folder (issue 10).

* Files are written atomically: every file of a run folder except the append-only
  ``events.jsonl`` goes to ``NAME.tmp`` first and is renamed over ``NAME``; a failed write
  leaves the previous file intact and no temp file behind.
* A ``workbench train`` killed with SIGKILL mid-run resumes with ``--resume`` and ends
  with a ``metrics.json`` byte-identical to an uninterrupted run's (same seed, CPU): once for
  the supervised baseline, once for Semi-CML + PReL killed during stage 2.
* Ctrl-C (SIGINT) stops training with exit status 130 and one line saying which checkpoint
  is kept and how to continue; the continued run ends with the same numbers too.
* ``workbench eval RUN`` recomputes the logged metrics exactly.

The runs are real subprocesses of the console script on tiny data (5 patients at 5 mm,
32x32 slices, U-Net width 4), so each takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from workbench import runs as runs_module
from workbench import train as train_module
from workbench.cli import main
from workbench.events import read_events

COMMON = [
    "--labeled",
    "0.5",
    "--steps-per-epoch",
    "8",
    "--batch-size",
    "4",
    "--base-channels",
    "4",
    "--size",
    "32",
    "--quiet",
]
SUPERVISED = ["--method", "supervised", "--epochs", "3"]
# PReL with stage 2 from epoch L1 = 4 (BMA pool from epoch m + 1 = 2, teacher from m + p + 1 = 3), G joins after L2 = 5
PREL_L1 = 4
PREL = [
    "--method",
    "semi-cml-prel",
    "--epochs",
    "6",
    "--set",
    "unlabeled_batch_size=2",
    "--set",
    "options.m=1",
    "--set",
    "options.p=1",
    "--set",
    f"options.L1={PREL_L1}",
]


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("workbench")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from workbench.cli import main; sys.exit(main())"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from workbench.data.synthetic import generate

    out = tmp_path_factory.mktemp("crash") / "brats"
    generate("brats", out, 5, seed=0, spacing_mm=5.0)
    return out


def _train_argv(data: Path, method: list[str], out: Path) -> list[str]:
    return ["train", *method, "--data", str(data), *COMMON, "--out", str(out)]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run([*_cli(), *argv], capture_output=True, text=True, timeout=600, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs, made once and compared against by every trial."""
    root = tmp_path_factory.mktemp("reference")
    runs = {"supervised": root / "supervised", "prel": root / "prel"}
    _run(_train_argv(data, SUPERVISED, runs["supervised"]))
    _run(_train_argv(data, PREL, runs["prel"]))
    return runs


def _checkpoint_epoch(run: Path) -> int:
    return int(torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"])


def _stop_after_checkpoint(argv: list[str], run: Path, epoch: int, sig: int, delay: float = 0.05):
    """Start ``workbench train``; when the checkpoint of ``epoch`` appears (the epoch-0 one
    is written first, then one per epoch), wait ``delay`` s and send ``sig``."""
    # a shell's background job (CI runners, `cmd &`) inherits SIGINT as ignored, and Python keeps an
    # ignored SIGINT ignored: give the child the default disposition so that Ctrl-C reaches it
    proc = subprocess.Popen(
        [*_cli(), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 600
    try:
        while proc.poll() is None and len(seen) < epoch + 1:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            try:
                st = os.stat(run / "checkpoint.pt")
                seen.add((st.st_ino, st.st_mtime_ns))
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be stopped:\n{proc.stderr.read()[-2000:]}"
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def _assert_same_run(run: Path, ref: Path) -> None:
    """Same metrics files byte for byte, and the same event log but for the ``resume`` record."""
    assert (run / "metrics.json").read_text() == (ref / "metrics.json").read_text()
    assert (run / "per_patient.csv").read_text() == (ref / "per_patient.csv").read_text()
    events = [e for e in read_events(run) if e["event"] != "resume"]
    assert events == read_events(ref)


@pytest.mark.parametrize("method", ["supervised", "prel"])
def test_sigkill_mid_run_then_resume_gives_the_same_metrics(method, data, reference, tmp_path):
    args, stop_at = (SUPERVISED, 1) if method == "supervised" else (PREL, PREL_L1)
    run = tmp_path / "killed"
    code, _, _ = _stop_after_checkpoint(_train_argv(data, args, run), run, stop_at, signal.SIGKILL)
    assert code == -signal.SIGKILL
    kept = _checkpoint_epoch(run)
    epochs = int(args[args.index("--epochs") + 1])
    assert stop_at <= kept < epochs and not (run / "metrics.json").exists()  # killed mid-run
    if method == "prel":
        assert kept >= PREL_L1  # the kill fell in stage 2 (epoch > L1), after the teacher was frozen
    _run(["train", "--resume", str(run), "--quiet"])
    _assert_same_run(run, reference[method])
    assert [e["epoch"] for e in read_events(run, "resume")] == [kept]


def test_ctrl_c_keeps_a_checkpoint_and_exits_cleanly(data, reference, tmp_path):
    run = tmp_path / "interrupted"
    # stopped right after the epoch-0 checkpoint: three epochs and the evaluation are left
    code, _, err = _stop_after_checkpoint(_train_argv(data, SUPERVISED, run), run, 0, signal.SIGINT, delay=0.05)
    assert code == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), err
    kept = _checkpoint_epoch(run)
    assert f"checkpoint of epoch {kept} is kept" in lines[0] and f"--resume {run}" in lines[0]
    assert not list(run.glob("*.tmp"))
    _run(["train", "--resume", str(run), "--quiet"])
    _assert_same_run(run, reference["supervised"])


def test_ctrl_c_in_the_first_epoch_can_resume_from_the_epoch_0_checkpoint(brats_dir, tmp_path, monkeypatch):
    from tests.conftest import tiny_config

    trainer = train_module.Trainer(tiny_config(brats_dir, epochs=2), tmp_path / "run", quiet=True)
    real_step = trainer.method.training_step

    def interrupt_on_the_second_step(batch, step):
        if step == 1:
            raise KeyboardInterrupt
        return real_step(batch, step)

    monkeypatch.setattr(trainer.method, "training_step", interrupt_on_the_second_step)
    with pytest.raises(train_module.TrainingInterrupted, match="checkpoint of epoch 0 is kept"):
        trainer.fit()
    trainer.close()
    assert _checkpoint_epoch(tmp_path / "run") == 0
    resumed = train_module.Trainer.resume(tmp_path / "run", quiet=True)
    resumed.fit()
    resumed.close()
    full = train_module.Trainer(tiny_config(brats_dir, epochs=2), tmp_path / "full", quiet=True)
    full.fit()
    full.close()
    assert (tmp_path / "run" / "metrics.json").read_text() == (tmp_path / "full" / "metrics.json").read_text()


@pytest.mark.parametrize("method", ["supervised", "prel"])
def test_eval_reproduces_the_logged_metrics(method, reference, tmp_path, capsys):
    run = reference[method]
    events_before = (run / "events.jsonl").read_bytes()
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--json", str(out), "--quiet"]) == 0
    logged = json.loads((run / "metrics.json").read_text())
    evaluated = json.loads(out.read_text())
    for key in ("epoch", "per_patient", "summary"):
        assert json.dumps(evaluated[key], sort_keys=True) == json.dumps(logged[key], sort_keys=True), key
    assert (run / "events.jsonl").read_bytes() == events_before


def test_run_files_are_written_through_a_temp_file_and_a_rename(brats_dir, tmp_path, monkeypatch):
    from tests.conftest import tiny_config

    opened, renamed = [], []
    real_open, real_replace = open, os.replace

    def spy_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            opened.append(Path(file))
        return real_open(file, mode, *args, **kwargs)

    def spy_replace(src, dst):
        renamed.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(runs_module, "open", spy_open, raising=False)  # where the run's files are written
    monkeypatch.setattr(runs_module.os, "replace", spy_replace)
    run = tmp_path / "run"
    trainer = train_module.Trainer(tiny_config(brats_dir, epochs=2), run, quiet=True)
    trainer.fit()
    trainer.close()
    assert opened and all(p.name.endswith(".tmp") for p in opened), opened
    assert all(src == dst.with_name(dst.name + ".tmp") for src, dst in renamed)
    names = [dst.name for _, dst in renamed]
    assert names.count("checkpoint.pt") == 3  # epoch 0, 1, 2
    assert {"config.json", "metrics.json", "per_patient.csv"} <= set(names)
    written = {p.name for p in run.iterdir()}
    assert written == {"config.json", "checkpoint.pt", "events.jsonl", "metrics.json", "per_patient.csv"}


def test_a_failed_metrics_write_keeps_the_previous_file(brats_dir, tmp_path, monkeypatch):
    from tests.conftest import tiny_config

    run = tmp_path / "run"
    trainer = train_module.Trainer(tiny_config(brats_dir, epochs=1), run, quiet=True)
    trainer.fit()
    good = (run / "metrics.json").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs_module.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        trainer.evaluate()
    monkeypatch.undo()
    trainer.close()
    assert (run / "metrics.json").read_bytes() == good
    assert not list(run.glob("*.tmp"))
