"""torchrun + DistributedDataParallel on CPU: 2 processes, gloo backend (workbench.distributed).

The reference for a 2-process run is one process with ``micro_batches=2``: the same
global batch split into the same strided halves, each with its own BatchNorm batch, batch
Dice, ASC matrix and random stream, gradients averaged. Parameters must agree to float
rounding. BatchNorm running statistics are not compared: DDP keeps rank 0's (broadcast at
every forward) where one process updates them with both halves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from workbench import distributed
from workbench.errors import ConfigError
from workbench.train import Trainer

ARGS = [
    "--labeled",
    "0.4",
    "--size",
    "32",
    "--base-channels",
    "4",
    "--epochs",
    "3",
    "--steps-per-epoch",
    "2",
    "--batch-size",
    "4",
    "--set",
    "unlabeled_batch_size=4",
    "--quiet",
]


def _torchrun(tmp_path: Path, data: Path, out: Path, method: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="true")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "workbench",
        "train",
        "--method",
        method,
        "--data",
        str(data),
        "--out",
        str(out),
        *ARGS,
        *extra,
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _parameters(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["method"]
    return {k: v for k, v in state.items() if v.is_floating_point() and "running_" not in k}


@pytest.mark.parametrize("method", ["semi-cml", "cmc"])
def test_two_processes_equal_one_process_with_two_micro_batches(method, brats_dir, tmp_path):
    ddp = tmp_path / "ddp"
    proc = _torchrun(tmp_path, brats_dir, ddp, method)
    assert proc.stdout.count("run folder:") == 1  # rank 0 reports, rank 1 is silent

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1): the same reduction order
    try:
        reference = Trainer(
            tiny_config(brats_dir, method=method, unlabeled_batch_size=4, micro_batches=2),
            tmp_path / "one",
            quiet=True,
        )
        reference.fit()
        reference.close()
    finally:
        torch.set_num_threads(threads)

    a, b = _parameters(ddp), _parameters(tmp_path / "one")
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    # the DDP run really trained: its parameters moved away from the initialisation
    init = Trainer(tiny_config(brats_dir, method=method, unlabeled_batch_size=4), tmp_path / "init", quiet=True)
    moved = max((a[k] - init.method.state_dict()[k]).abs().max().item() for k in a)
    assert moved > 1e-3

    events = _events(ddp)
    assert [e["event"] for e in events].count("run_start") == 1  # one writer
    assert events[0]["processes"] == 2
    assert [e["epoch"] for e in events if e["event"] == "train"] == [1, 2, 3]
    in_sync = [e for e in events if e["event"] == "ranks_in_sync"]
    assert [e["identical"] for e in in_sync] == [True, True, True]
    assert (ddp / "metrics.json").exists()


def test_bma_teacher_stays_identical_across_processes(brats_dir, tmp_path):
    """PReL with the BMA teacher: rank 0's validation scores are broadcast, so both
    processes update their pools alike; every parameter, teachers included, is compared
    across processes after every epoch (the run stops if they differ)."""
    run = tmp_path / "prel"
    _torchrun(
        tmp_path, brats_dir, run, "semi-cml-prel", "--epochs", "4", "--set", "options.m=1", "--set", "options.L1=2"
    )
    events = _events(run)
    assert any(e["event"].startswith("bma") for e in events), sorted({e["event"] for e in events})
    in_sync = [e["identical"] for e in events if e["event"] == "ranks_in_sync"]
    assert in_sync == [True] * 4


def test_batch_must_split_over_processes_and_micro_batches(brats_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"batch_size=4 does not split into 3 equal parts"):
        Trainer(tiny_config(brats_dir, micro_batches=3), tmp_path / "r", quiet=True)


def test_shard_is_the_strided_split():
    world = distributed.World(rank=1, size=2)
    assert distributed.shard(torch.arange(6), world).tolist() == [1, 3, 5]
    with pytest.raises(ConfigError, match="does not split over 2 processes"):
        distributed.shard(torch.arange(5), world)


def test_one_process_without_micro_batches_keeps_the_global_random_stream(brats_dir, tmp_path):
    """micro_batches=1 on one process must not reseed (old runs stay bit-for-bit)."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    from workbench.train import _PartStreams

    streams = _PartStreams(0, 1, distributed.World(), 1, torch.device("cpu"))
    with streams.of(0):
        pass
    assert torch.equal(torch.rand(3), expected)


def test_pretrain_refuses_torchrun(monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["pretrain", "--method", "multi-condos", "--data", "x"]) == 2
    assert "launch it without torchrun" in capsys.readouterr().err
