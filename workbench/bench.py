"""Training-speed benchmark (``workbench bench``).

Three measurements, each a list of rows printed as Markdown tables:

* **step** (:func:`step_benchmark`): the training step alone of a registered method, at
  epoch 1 (cross-view's pre-training unless ``options`` set ``pretrain_epochs: 0``, as
  ``workbench bench`` does for it: its self-training step is the one that runs most) -
  forward under the precision's autocast, ``zero_grad``, backward, optimiser step and the
  method's ``after_optimizer_step`` hook - on synthetic tensors already on the device
  (random-normal images, disc-shaped binary labels). The method, optimiser, precision
  and memory format are built as :class:`~workbench.train.Trainer` builds them; on CUDA
  the model and inputs are channels_last for every precision. Nothing is read back
  inside the timed loop: the device is synchronised only before and after it.
* **epoch** (:func:`epoch_benchmark`): one full training epoch of the real ``Trainer``
  (batch sampling from the data on the device, learning-rate schedule, loss bookkeeping,
  event log) on the built-in synthetic BraTS data, after one warm-up epoch. Comparing
  its images/s with the step's shows the loop's overhead; the target is an epoch at
  >= 90% of the pure step throughput.
* **asc** (:func:`asc_benchmark`): the vectorised ASC loss of
  :func:`workbench.losses.asc_loss` (forward + backward) against :func:`asc_loss_loop`, a
  literal Python double loop over eqs. 6-10 of Semi-CML; both must give the same value.

Images are counted per modality: a step sees ``(batch + unlabeled) * M`` images (M = 2
modalities, both counted); a method that uses no unlabeled data counts ``batch * M``.
The epoch's figure counts its validation too (the loop scores the selection patients after
every epoch): ``val_s`` is the time of that pass, ``val_share_pct`` its share of the epoch,
and ``epoch_img_per_s`` the throughput over both; ``img_per_s`` and ``epoch_vs_step_pct``
stay the training part's, the loop-overhead target.

``--spatial-dims 3`` times the volumetric setting: random 3D patches (``--config paper``:
112 x 112 x 80, LA, and 96 x 96 x 96, BraTS 2019, each with 4 labeled + 4 unlabeled patches,
as cross-view mutual learning trains; ``--config custom --patch X Y Z``), the V-Net where the
method builds it (``--backbone``), sliding-window validation of whole volumes in the epoch.
Its rows count voxels: ``mvox_per_s`` is million voxels per second over every modality of
every patch. ``peak_mem_mb`` is the peak CUDA memory allocated during the timed steps (no
figure on the CPU, where PyTorch keeps no allocator statistics).
On CPU the benchmark stays fp32, the precision the workbench trains with there (``auto``);
tf32 is a CUDA switch and a ConfigError on CPU, and bf16 autocast runs only when asked for.
On CUDA the default compares fp32, tf32 and bf16.

Reference figure (from the issue that asked for this benchmark): on an H100, a plain
PyTorch implementation of the same Semi-CML step runs at about 1460 img/s at 160x160
(20 labeled + 4 unlabeled) and about 3530 img/s at 144x144 (30 + 26), with bf16 autocast
and channels_last.

Why one long module: three benchmarks with their tables and the CLI arguments they share.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from workbench.errors import ConfigError
from workbench.losses import asc_loss
from workbench.methods import Batch, Method, get_method
from workbench.train import (
    TrainConfig,
    Trainer,
    autocast_context,
    make_optimizer,
    resolve_device,
    resolve_precision,
    set_tf32,
)

__all__ = [
    "PAPER_CONFIGS",
    "step_benchmark",
    "epoch_benchmark",
    "make_synthetic_data",
    "asc_loss_loop",
    "asc_benchmark",
    "format_table",
    "add_arguments",
    "run",
]

#: (size, labeled batch, unlabeled batch K) of the paper: BraTS and HECKTOR (Semi-CML section 4.2)
PAPER_CONFIGS: tuple[tuple[int, int, int], ...] = ((160, 20, 4), (144, 30, 26))
#: (patch, labeled, unlabeled) of the volumetric papers: LA and BraTS 2019 (cross-view section 4.2)
PAPER_CONFIGS_3D: tuple[tuple[tuple[int, int, int], int, int], ...] = (((112, 112, 80), 4, 4), ((96, 96, 96), 4, 4))
MODALITIES = ["a", "b"]
REFERENCE = (
    "reference (issue): plain PyTorch Semi-CML step on an H100, bf16 + channels_last: "
    "~1460 img/s at 160x160 (20+4), ~3530 img/s at 144x144 (30+26)"
)


# --------------------------------------------------------------------------- helpers
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads != 1 else ''})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Size = int | tuple[int, ...]  # a 2D slice side, or a 3D patch (x, y, z)


def _sides(size: Size) -> tuple[int, ...]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _size_text(size: Size) -> int | str:
    return size if isinstance(size, int) else "x".join(str(s) for s in size)


def _check_shape(size: Size, batch: int, unlabeled: int, steps: int, base_channels: int) -> None:
    """One-line ConfigError for a size, batch or count the U-Nets cannot take."""
    if not isinstance(size, int) and len(size) != 3:
        raise ConfigError(f"patch={list(size)}: need three sizes (x, y, z)")
    if any(side < 16 or side % 16 for side in _sides(size)):
        raise ConfigError(f"size={_size_text(size)}: must be a multiple of 16 and >= 16 (four U-Net poolings)")
    if batch < 1:
        raise ConfigError(f"batch={batch}: must be >= 1")
    if unlabeled < 0:
        raise ConfigError(f"unlabeled={unlabeled}: must be >= 0")
    if steps < 1:
        raise ConfigError(f"steps={steps}: must be >= 1")
    if base_channels < 1:
        raise ConfigError(f"base_channels={base_channels}: must be >= 1")


def _row(
    method_cls: type[Method],
    device: torch.device,
    precision: str,
    size: Size,
    batch: int,
    unlabeled: int,
    steps: int,
    seconds: float,
    modalities: int,
    loss: float,
    peak_bytes: int | None = None,
) -> dict[str, Any]:
    """One result row; images per step count every modality, unlabeled ones only if the method
    uses them; a 3D row also counts voxels."""
    used_unlabeled = unlabeled if method_cls.uses_unlabeled else 0
    images = (batch + used_unlabeled) * modalities
    ms = 1000.0 * seconds / steps
    row = {
        "method": method_cls.name,
        "device": _device_name(device),
        "precision": precision,
        "channels_last": device.type == "cuda" and isinstance(size, int),
        "torch": torch.__version__,
        "size": _size_text(size),
        "batch": batch,
        "unlabeled": used_unlabeled,
        "steps": steps,
        "images_per_step": images,
        "ms_per_step": ms,
        "img_per_s": images * 1000.0 / ms,
        "loss": loss,
    }
    if not isinstance(size, int):
        voxels = images * math.prod(size)
        row.update(voxels_per_step=voxels, mvox_per_s=voxels / ms / 1000.0)
    row["peak_mem_mb"] = None if peak_bytes is None else peak_bytes / 2**20
    return row


def _blobs(n: int, sides: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``(n, 1, *sides)`` binary labels: one disc (2D) or ball (3D) each, random centre and radius."""
    dims = len(sides)
    centre = 0.25 + 0.5 * torch.rand(n, dims, generator=generator)
    radius = (0.08 + 0.17 * torch.rand(n, generator=generator)) * min(sides)
    batch_shape = (-1,) + (1,) * dims
    distance = sum(
        (torch.arange(side, dtype=torch.float32).view([-1 if a == i else 1 for a in range(dims)])
         - (centre[:, i] * side).view(batch_shape)) ** 2
        for i, side in enumerate(sides)
    )  # fmt: skip
    return (distance <= radius.view(batch_shape) ** 2).float()[:, None]


def _timed_steps(
    model: Method,
    optimizer: torch.optim.Optimizer,
    data: Batch,
    precision: str,
    device: torch.device,
    warmup: int,
    steps: int,
) -> tuple[float, float, int | None]:
    """Seconds of ``steps`` training steps after ``warmup`` untimed ones, the last loss and the
    peak CUDA memory of the timed steps (None on the CPU). One step is the Trainer's: forward
    under autocast, zero_grad, backward, step, hook."""
    losses: dict[str, Tensor] = {}
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
        with autocast_context(precision, device):
            losses = model.training_step(data, step)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        model.after_optimizer_step(step + 1)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return seconds, float(losses["loss"].detach()), peak


# --------------------------------------------------------------------------- step
def step_benchmark(
    method: str = "semi-cml",
    size: Size = 160,
    batch: int = 20,
    unlabeled: int = 4,
    precision: str = "fp32",
    device: str = "cpu",
    steps: int = 10,
    warmup: int = 3,
    base_channels: int = 32,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    backbone: str = "unet",
) -> dict[str, Any]:
    """Time ``steps`` training steps (after ``warmup``) of ``method`` on synthetic tensors;
    ``size`` a slice side (2D) or a patch ``(x, y, z)`` (3D, with ``backbone``).

    Returns a row: method, device, precision, channels_last, torch, size, batch,
    unlabeled, steps, images_per_step, ms_per_step, img_per_s, the last step's loss,
    peak_mem_mb and, in 3D, voxels_per_step and mvox_per_s."""
    method_cls = get_method(method)
    _check_shape(size, batch, unlabeled, steps, base_channels)
    if warmup < 0:
        raise ConfigError(f"warmup={warmup}: must be >= 0")
    if method_cls.uses_unlabeled and unlabeled < 1:
        raise ConfigError(f"method {method!r} uses unlabeled data: unlabeled must be >= 1")
    dev = resolve_device(device)
    resolved = resolve_precision(precision, dev)
    volumetric = not isinstance(size, int)
    config = TrainConfig(
        method=method,
        data="<synthetic>",
        size=64 if volumetric else size,
        spatial_dims=3 if volumetric else 2,
        patch=list(size) if volumetric else [32, 32, 32],
        backbone=backbone,
        batch_size=batch,
        unlabeled_batch_size=unlabeled,
        base_channels=base_channels,
        options=dict(options or {}),
        precision=precision,
        device=device,
    )
    config.validate()  # the method trains in 3D, builds the backbone
    torch.manual_seed(seed)
    model = method_cls(MODALITIES, config).to(dev)
    if len(model.optimizer_groups()) > 1 or method_cls.training_data != "labeled":
        raise ConfigError(
            f"method {method!r} (a pre-training with {len(model.optimizer_groups())} optimisers) is not timed here"
        )
    channels_last = dev.type == "cuda" and not volumetric
    if dev.type == "cuda":
        set_tf32(resolved == "tf32")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, dev, kind=config.optimizer)

    gen = torch.Generator().manual_seed(seed)
    sides = _sides(size)
    x_l = torch.randn(batch, len(MODALITIES), *sides, generator=gen)
    y_l = _blobs(batch, sides, gen)
    x_u = torch.randn(unlabeled, len(MODALITIES), *sides, generator=gen) if method_cls.uses_unlabeled else None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    data = Batch(*(t.to(dev, memory_format=fmt) if t is not None else None for t in (x_l, y_l, x_u)))

    model.epoch = 1
    model.train()
    seconds, loss, peak = _timed_steps(model, optimizer, data, resolved, dev, warmup, steps)

    del model, optimizer, data
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return _row(method_cls, dev, resolved, size, batch, unlabeled, steps, seconds, len(MODALITIES), loss, peak)


# --------------------------------------------------------------------------- epoch
def make_synthetic_data(out: str | Path, patients: int = 6, seed: int = 0) -> Path:
    """Write the built-in synthetic BraTS data (``patients`` virtual patients) to ``out``."""
    from workbench.data.synthetic import generate

    generate("brats", out, patients, seed=seed)
    return Path(out)


def epoch_benchmark(
    method: str = "semi-cml",
    size: Size = 160,
    batch: int = 20,
    unlabeled: int = 4,
    precision: str = "fp32",
    device: str = "cpu",
    steps: int = 10,
    base_channels: int = 32,
    data_dir: str | Path | None = None,
    patients: int = 6,
    options: dict[str, Any] | None = None,
    backbone: str = "unet",
) -> dict[str, Any]:
    """Time one ``steps``-step epoch of the real :class:`Trainer` (after a warm-up epoch), and
    the validation pass that follows it.

    ``data_dir`` is a data folder the Trainer reads; None generates ``patients`` built-in
    synthetic BraTS patients into a temporary folder (their slices are resized to ``size``;
    in 3D, ``size`` is the patch and the volumes keep the built-in 64 x 64 in-plane size,
    zero-padded where the patch is larger). Returns a row like :func:`step_benchmark`'s,
    ``loss`` the epoch's mean, plus ``val_s``, ``val_share_pct`` and ``epoch_img_per_s``."""
    method_cls = get_method(method)
    _check_shape(size, batch, unlabeled, steps, base_channels)
    dev = resolve_device(device)
    resolve_precision(precision, dev)
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as tmp:
        folder = Path(data_dir) if data_dir is not None else make_synthetic_data(Path(tmp) / "brats", patients)
        volumetric = not isinstance(size, int)
        config = TrainConfig(
            method=method,
            data=str(folder),
            size=64 if volumetric else size,
            spatial_dims=3 if volumetric else 2,
            patch=list(size) if volumetric else [32, 32, 32],
            backbone=backbone,
            batch_size=batch,
            unlabeled_batch_size=max(unlabeled, 1),
            steps_per_epoch=steps,
            epochs=2,
            base_channels=base_channels,
            options=dict(options or {}),
            precision=precision,
            device=device,
        )
        trainer = Trainer(config, Path(tmp) / "run", quiet=True)
        try:
            trainer.train_epoch(1)
            trainer.epoch = 1
            _sync(dev)
            start = time.perf_counter()
            means = trainer.train_epoch(2)
            _sync(dev)
            seconds = time.perf_counter() - start
            trainer.validate()  # untimed warm-up of the inference path
            _sync(dev)
            start = time.perf_counter()
            trainer.validate()
            _sync(dev)
            val_seconds = time.perf_counter() - start
            n_modalities = len(trainer.splits.modalities)
            resolved = trainer.precision
        finally:
            trainer.close()
            del trainer
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    row = _row(method_cls, dev, resolved, size, batch, unlabeled, steps, seconds, n_modalities, means["loss"])
    row["val_s"] = val_seconds
    row["val_share_pct"] = round(100.0 * val_seconds / (seconds + val_seconds), 1)
    row["epoch_img_per_s"] = row["images_per_step"] * steps / (seconds + val_seconds)
    return row


# --------------------------------------------------------------------------- ASC
def asc_loss_loop(pred_a: Tensor, pred_b: Tensor, eps: float = 1e-6) -> Tensor:
    """The ASC loss (eqs. 6-10) written literally, one pair and one anchor at a time.

    The 2K maps are ``[a_1..a_K, b_1..b_K]``; ``S(i, j) = 2 <y_i, y_j> / (|y_i| + |y_j| + eps)``
    (eq. 8), anchor i has its positive at ``(i + K) mod 2K`` and every other map but itself
    as a negative, ``l_i = -log(exp S(i, pos) / sum_{j != i} exp S(i, j))`` (eq. 9), and the
    loss is the mean over the 2K anchors (eq. 10). Slow; the reference for :func:`asc_loss`."""
    if pred_a.shape != pred_b.shape or pred_a.shape[0] < 2:
        raise ValueError(f"need paired maps of one shape with K >= 2, got {tuple(pred_a.shape)}, {tuple(pred_b.shape)}")
    both = torch.cat([pred_a, pred_b])
    items = list(both if both.dtype in (torch.float32, torch.float64) else both.float())
    n, k = len(items), pred_a.shape[0]
    sim: list[list[Tensor | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if j != i:
                sim[i][j] = 2.0 * (items[i] * items[j]).sum() / (items[i].sum() + items[j].sum() + eps)
    total = torch.zeros((), dtype=items[0].dtype, device=pred_a.device)
    for i in range(n):
        positive = sim[i][(i + k) % n]
        denominator = sum(torch.exp(sim[i][j]) for j in range(n) if j != i)
        total = total - torch.log(torch.exp(positive) / denominator)
    return total / n


def _time_ms(fn: Any, repeats: int, device: torch.device) -> float:
    """Mean milliseconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return 1000.0 * (time.perf_counter() - start) / repeats


def asc_benchmark(
    k_values: tuple[int, ...] | list[int] = (4, 26),
    size: int = 160,
    device: str = "cpu",
    repeats: int = 20,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Forward + backward time of :func:`asc_loss` against :func:`asc_loss_loop` for each K.

    Raises RuntimeError when the two disagree. Returns rows: k, size, vectorised_ms,
    loop_ms, speedup."""
    if repeats < 1:
        raise ConfigError(f"repeats={repeats}: must be >= 1")
    dev = resolve_device(device)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    gen = torch.Generator().manual_seed(seed)
    rows = []
    try:
        set_tf32(False)  # fp32 matmuls: the two versions must agree to float32 rounding
        for k in k_values:
            if k < 2:
                raise ConfigError(f"K={k}: the ASC loss needs K >= 2 pairs")
            maps = torch.sigmoid(torch.randn(2, k, 1, size, size, generator=gen)).to(dev)
            pred_a, pred_b = maps[0].clone().requires_grad_(), maps[1].clone().requires_grad_()
            with torch.no_grad():
                fast, slow = asc_loss(pred_a, pred_b), asc_loss_loop(pred_a, pred_b)
            if not torch.allclose(fast, slow, rtol=1e-4, atol=1e-6):
                raise RuntimeError(f"asc_loss {fast.item():.6f} != loop version {slow.item():.6f} at K={k}")

            def forward_backward(fn: Any) -> None:
                pred_a.grad = pred_b.grad = None
                fn(pred_a, pred_b).backward()

            vec_ms = _time_ms(lambda: forward_backward(asc_loss), repeats, dev)
            loop_ms = _time_ms(lambda: forward_backward(asc_loss_loop), repeats, dev)
            rows.append(
                {"k": k, "size": size, "vectorised_ms": vec_ms, "loop_ms": loop_ms, "speedup": loop_ms / vec_ms}
            )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return rows


# --------------------------------------------------------------------------- output
def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value or abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts); ``columns`` picks and orders the keys."""
    if not rows:
        return "(no rows)"
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


STEP_COLUMNS = [
    "method",
    "size",
    "batch",
    "unlabeled",
    "precision",
    "channels_last",
    "steps",
    "ms_per_step",
    "img_per_s",
    "loss",
]
EPOCH_COLUMNS = [
    "method",
    "size",
    "batch",
    "unlabeled",
    "precision",
    "steps",
    "ms_per_step",
    "img_per_s",
    "step_img_per_s",
    "epoch_vs_step_pct",
    "val_s",
    "val_share_pct",
    "epoch_img_per_s",
    "loss",
]
#: the 3D tables: voxels instead of images
STEP_COLUMNS_3D = [c if c != "img_per_s" else "mvox_per_s" for c in STEP_COLUMNS] + ["peak_mem_mb"]
EPOCH_COLUMNS_3D = [c for c in EPOCH_COLUMNS if c not in ("img_per_s", "step_img_per_s", "epoch_img_per_s")]
EPOCH_COLUMNS_3D[EPOCH_COLUMNS_3D.index("epoch_vs_step_pct") : EPOCH_COLUMNS_3D.index("epoch_vs_step_pct")] = [
    "mvox_per_s",
    "step_mvox_per_s",
]


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``workbench bench``."""
    parser.add_argument(
        "--method", help="registered method to time (default: semi-cml; with --spatial-dims 3: cross-view)"
    )
    parser.add_argument(
        "--spatial-dims", type=int, choices=[2, 3], default=2, help="2: slices (default); 3: volumetric patches"
    )
    parser.add_argument(
        "--config",
        choices=["paper", "custom"],
        default="paper",
        help="paper (default): 160x160 batch 20+4 and 144x144 batch 30+26 (3D: 112x112x80 and 96x96x96, "
        "4+4); custom: --size/--patch/--batch-size/--unlabeled",
    )
    parser.add_argument(
        "--patch", type=int, nargs=3, metavar=("X", "Y", "Z"), help="3D patch with --config custom (default 96 96 96)"
    )
    parser.add_argument(
        "--backbone",
        choices=["unet", "vnet"],
        help="the per-modality network (default: vnet in 3D where the method builds it, else unet)",
    )
    parser.add_argument("--size", type=int, help="slice size with --config custom (multiple of 16; default 160)")
    parser.add_argument("--batch-size", type=int, help="labeled slices per step with --config custom (default 20)")
    parser.add_argument("--batch", dest="batch_size", type=int, help=argparse.SUPPRESS)  # deprecated name
    parser.add_argument("--unlabeled", type=int, help="unlabeled slices K per step with --config custom (default 4)")
    parser.add_argument(
        "--precision", nargs="+", choices=["fp32", "tf32", "bf16"], help="default: fp32 tf32 bf16 on CUDA, fp32 on CPU"
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when there is one, else the CPU"
    )
    parser.add_argument("--steps", type=int, help="timed steps per measurement (default: 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 3 on CUDA and in 3D, 2 on 2D CPU)")
    parser.add_argument("--base-channels", type=int, default=32, help="U-Net width (default 32, the paper's)")
    parser.add_argument("--no-epoch", action="store_true", help="skip the full-epoch benchmark")
    parser.add_argument("--no-asc", action="store_true", help="skip the ASC loss benchmark")
    parser.add_argument("--json", metavar="FILE", help="also write every row as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _configs(args: argparse.Namespace) -> list[tuple[Size, int, int]]:
    volumetric = getattr(args, "spatial_dims", 2) == 3
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("size", "patch", "batch_size", "unlabeled")
        if getattr(args, name, None) is not None
    ]
    if args.config == "paper":
        if given:
            raise ConfigError(f"{', '.join(given)} need --config custom")
        return list(PAPER_CONFIGS_3D if volumetric else PAPER_CONFIGS)
    wrong = "--size" if volumetric else "--patch"
    if getattr(args, wrong.lstrip("-"), None) is not None:
        raise ConfigError(
            f"{wrong} is for {'2D' if volumetric else '3D'} runs; with --spatial-dims {3 if volumetric else 2} "
            f"give {'--patch' if volumetric else '--size'}"
        )
    size, batch, unlabeled = ((96, 96, 96), 4, 4) if volumetric else PAPER_CONFIGS[0]
    chosen = args.patch if volumetric else args.size
    return [
        (
            (tuple(chosen) if volumetric else chosen) if chosen is not None else size,
            args.batch_size if args.batch_size is not None else batch,
            args.unlabeled if args.unlabeled is not None else unlabeled,
        )
    ]


def _method_and_backbone(args: argparse.Namespace) -> tuple[str, str]:
    """The method to time and its backbone (module docstring: the 3D defaults)."""
    volumetric = getattr(args, "spatial_dims", 2) == 3
    method = args.method or ("cross-view" if volumetric else "semi-cml")
    cls = get_method(method)
    if volumetric and 3 not in cls.spatial_dims_supported:
        raise ConfigError(f"method {method!r} trains in 2D only; with --spatial-dims 3 time e.g. cross-view")
    backbone = args.backbone or ("vnet" if volumetric and "vnet" in cls.backbones_supported else "unet")
    return method, backbone


def run(args: argparse.Namespace) -> int:
    """``workbench bench``: print the step, epoch and ASC tables; 0 on success."""
    method, backbone = _method_and_backbone(args)
    volumetric = getattr(args, "spatial_dims", 2) == 3
    method_cls = get_method(method)
    options = {"pretrain_epochs": 0} if method == "cross-view" else {}  # time the self-training step
    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    precisions = list(dict.fromkeys(args.precision or (["fp32", "tf32", "bf16"] if cuda else ["fp32"])))
    for p in precisions:
        resolve_precision(p, dev)
    steps = args.steps if args.steps is not None else (20 if cuda else 3)
    # oneDNN builds its 3D convolution kernels over the first few CPU steps
    warmup = args.warmup if args.warmup is not None else (3 if cuda or volumetric else 2)
    if warmup < 0:
        raise ConfigError(f"--warmup {warmup}: must be >= 0")
    configs = _configs(args)
    for size, batch, unlabeled in configs:
        _check_shape(size, batch, unlabeled, steps, args.base_channels)
        if method_cls.uses_unlabeled and unlabeled < 1:
            raise ConfigError(f"method {method!r} uses unlabeled data: --unlabeled must be >= 1")
    quiet = getattr(args, "quiet", False)
    device_name = _device_name(dev)
    threads = f", {torch.get_num_threads()} CPU threads" if cuda else ""
    print(
        f"bench: {device_name}, torch {torch.__version__}{threads}; method {method}"
        + (f" ({backbone}, 3D)" if volumetric else "")
        + f", {steps} timed steps after {warmup} warm-up, base channels {args.base_channels}"
    )

    jobs = [
        (kind, cfg, p)
        for kind in ("step", "epoch")
        if kind == "step" or not args.no_epoch
        for cfg in configs
        for p in precisions
    ]
    results: dict[str, list[dict[str, Any]]] = {"step": [], "epoch": [], "asc": []}
    bar = tqdm(total=len(jobs) + (0 if args.no_asc or volumetric else 1), unit="run", disable=quiet, leave=False)
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as tmp:
        data_dir: Path | None = None
        for kind, (size, batch, unlabeled), p in jobs:
            if kind == "epoch" and data_dir is None:
                bar.set_description("generating synthetic data")
                data_dir = make_synthetic_data(Path(tmp) / "brats")
            bar.set_description(f"{kind} {_size_text(size)}px {batch}+{unlabeled} {p}")
            common = dict(method=method, size=size, batch=batch, unlabeled=unlabeled, precision=p,
                          device=args.device, steps=steps, base_channels=args.base_channels,
                          options=options, backbone=backbone)  # fmt: skip
            if kind == "step":
                results["step"].append(step_benchmark(warmup=warmup, **common))
            else:
                results["epoch"].append(epoch_benchmark(data_dir=data_dir, **common))
            bar.update()
    if not args.no_asc and not volumetric:  # the ASC loss is Semi-CML's, a 2D method
        bar.set_description("asc loss")
        results["asc"] = asc_benchmark(device=args.device, repeats=20 if cuda else 5)
        bar.update()
    bar.close()

    speed = "mvox_per_s" if volumetric else "img_per_s"
    step_speed = {(r["size"], r["batch"], r["unlabeled"], r["precision"]): r[speed] for r in results["step"]}
    for row in results["epoch"]:
        step = step_speed.get((row["size"], row["batch"], row["unlabeled"], row["precision"]))
        row[f"step_{speed}"] = step
        row["epoch_vs_step_pct"] = round(100.0 * row[speed] / step, 1) if step else None

    unit = "Mvox/s counts every modality of every patch" if volumetric else "img/s counts both modalities"
    print(f"\n## Training step (synthetic tensors on the device; {unit})\n")
    print(format_table(results["step"], STEP_COLUMNS_3D if volumetric else STEP_COLUMNS))
    if not volumetric:
        print(f"\n{REFERENCE}")
    if results["epoch"]:
        print(
            "\n## Training epoch and its validation (Trainer on built-in synthetic BraTS data; "
            f"target: the epoch's training part >= 90% of the step's {speed})\n"
        )
        print(format_table(results["epoch"], EPOCH_COLUMNS_3D if volumetric else EPOCH_COLUMNS))
    if results["asc"]:
        print("\n## ASC loss, forward + backward: vectorised asc_loss vs. a Python loop over pairs\n")
        print(format_table(results["asc"]))
    if args.json:
        payload = {"device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads(), **results}
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0
