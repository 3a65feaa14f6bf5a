"""The ``workbench`` command line.

    workbench data make --kind brats|hecktor --patients N --seed S --out DIR
    workbench train --method NAME --data DIR --labeled 0.1 [--epochs E] [--out RUN]
    workbench train --resume RUN [--data DIR] [--device DEV]   (continue; only where and on what)
    workbench pretrain --method multi-condos --data DIR [--epochs E] [--out RUN]
    workbench train --method supervised --data DIR --init RUN   (fine-tune a pre-training)
    workbench eval RUN [--test-slices tumour] [--shift M=DX,DY[,ROT]] [--drop M] [--data DIR] [--device DEV]
    workbench view RUN [--patient ID] [--screenshot PNG] [--data DIR] [--device DEV]
    workbench methods [NAME]   (every method; NAME: its options, defaults, allowed values)
    workbench demo [--device DEV] [--spatial-dims 3]
    workbench reproduce --grid GRID.yaml [--out DIR] [--jobs N] [--only-finished]
    workbench bench [--method NAME] [--config paper|custom] [--precision fp32 tf32 bf16]
    torchrun --nproc-per-node N -m workbench train ...   (several GPUs / processes)

``--device`` is ``auto`` by default everywhere (CUDA when there is one, else the CPU); a
run prints the device and precision it resolved to (unless ``--quiet``). Every ``--help``
shows each flag's default. ``--resume`` continues a run with its own ``config.json``: a
training flag given with it is refused, naming the flag (``train --resume`` applies only
``--data``, for a moved data folder, and ``--device``).

Errors the workbench raises on purpose (bad path, malformed NIfTI, unknown method, bad
option) print one line ``error: ...`` and exit with status 2; ``--debug`` (anywhere on the
command line) shows the traceback instead.

Why one long module: every sub-command's flags and its ``_cmd_*`` function, with the checks
made before anything loads; each part is short and they share the argument helpers.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import os
import re
import sys
import textwrap
import time
import tokenize
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from workbench.errors import ConfigError, WorkbenchError

__all__ = ["main", "build_parser", "format_summary", "format_protocol", "format_method_options"]

#: the pre-training methods (``workbench pretrain``: ``train`` with the method's pre-training defaults)
PRETRAIN_METHODS = ("multi-condos",)


def _method_names() -> list[str]:
    from workbench.methods import METHODS

    return sorted(METHODS)


def _shipped_grids() -> list[str]:
    """Names of the grid YAML files in ``workbench/grids/`` (as :func:`workbench.reproduce.shipped_grids`,
    without importing pandas for every command line)."""
    folder = resources.files("workbench") / "grids"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the config dataclass ``cls`` (for the help texts)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    return "none" if value is None else value


def _parse_value(text: str) -> Any:
    """``--set key=value`` values: JSON when it parses (numbers, lists, true), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.1 for 10%)") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1], e.g. 0.1 for 10%")
    return value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: ...)`` to a flag's help unless the help already says its default;
    switches (``store_true``, off unless given) and required flags show none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.nargs == 0
            or action.required
            or action.default is argparse.SUPPRESS
        ):
            return text
        shown = "none" if action.default is None else str(action.default).replace("%", "%%")
        return f"{text} (default: {shown})"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors and defaults in the help (sub-command parsers
    inherit the class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see: {self.prog} --help)\n")


def _common() -> argparse.ArgumentParser:
    """Flags every sub-command takes, anywhere on the line. ``SUPPRESS``: a sub-command that
    is not given ``--debug`` leaves the top-level value alone."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks instead of one-line errors"
    )
    return common


FORMATS = ["auto", "brats", "hecktor", "generic", "la", "brats2019-h5"]  # config.FORMATS (a test checks)
DEVICES = ["auto", "cpu", "cuda"]


def _train_default(name: str) -> Any:
    """A TrainConfig field's default (for the help texts)."""
    from workbench.config import TrainConfig

    return _default(TrainConfig, name)


def _pretrain_default(name: str) -> Any:
    """A pre-training default: PRETRAIN_DEFAULTS, else TrainConfig's (for the help texts)."""
    from workbench.methods.multi_condos import PRETRAIN_DEFAULTS

    return PRETRAIN_DEFAULTS.get(name, _train_default(name))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workbench",
        description="Semi-supervised multi-modal medical image segmentation: data, training, evaluation.",
        epilog="examples:\n" + __doc__.split("\n\n")[1],
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    common = [_common()]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_data, _add_train, _add_pretrain, _add_eval_and_view, _add_others):
        add(sub, common)
    return parser


def _add_data(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    """``workbench data make``."""
    data = sub.add_parser("data", help="built-in synthetic datasets", parents=common)
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    make = data_sub.add_parser("make", help="write a synthetic BraTS- or HECKTOR-like NIfTI folder", parents=common)
    make.add_argument("--kind", choices=["brats", "hecktor"], required=True, help="which dataset to imitate")
    make.add_argument("--patients", type=int, default=20, help="number of patients (>= 3)")
    make.add_argument("--seed", type=int, default=0, help="random seed of the phantoms")
    make.add_argument("--out", required=True, help="output folder (new, or empty)")
    make.add_argument(
        "--difficulty",
        choices=["paper", "clear"],
        default="paper",
        help="paper: calibrated to the supervised levels of Semi-CML's Table 1 (default); "
        "clear: the generator's tissue tables unchanged (FLAIR and PET show the lesion plainly)",
    )


def _add_train(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    """``workbench train``."""
    train = sub.add_parser("train", help="train a method into a run folder", parents=common)
    train.add_argument(
        "--method",
        choices=_method_names(),
        help="method name (required without --resume; default: none); `workbench methods` lists them",
    )
    train.add_argument(
        "--data",
        help="dataset folder (BraTS, HECKTOR or generic layout); with --resume: "
        "where the run's data folder is now (default: none)",
    )
    train.add_argument(
        "--format", dest="fmt", choices=FORMATS, help=f"dataset layout (default: {_train_default('fmt')})"
    )
    train.add_argument(
        "--modalities", help="comma-separated modality names, e.g. t1,flair or ct,pet (default: the format's)"
    )
    train.add_argument(
        "--labeled",
        type=_fraction,
        help=f"fraction of labeled training patients (default: {_train_default('labeled')})",
    )
    train.add_argument("--epochs", type=int, help=f"training epochs (default: {_train_default('epochs')})")
    train.add_argument(
        "--steps-per-epoch", type=int, help=f"optimiser steps per epoch (default: {_train_default('steps_per_epoch')})"
    )
    train.add_argument(
        "--batch-size", type=int, help=f"labeled slices per step (default: {_train_default('batch_size')})"
    )
    train.add_argument("--lr", type=float, help=f"learning rate (default: {_train_default('lr')})")
    train.add_argument("--seed", type=int, help=f"training seed (default: {_train_default('seed')})")
    train.add_argument(
        "--size", type=int, help=f"slice size after resize, a multiple of 16 (default: {_train_default('size')})"
    )
    train.add_argument(
        "--crop",
        type=int,
        help=f"centre crop in voxels before resize (paper: 160 / 144; default: {_train_default('crop')})",
    )
    train.add_argument(
        "--base-channels", type=int, help=f"U-Net width (paper: 32; default: {_train_default('base_channels')})"
    )
    train.add_argument(
        "--device",
        choices=DEVICES,
        help="auto: CUDA when there is one, else the CPU (default: auto; with --resume: the run's)",
    )
    train.add_argument(
        "--precision",
        choices=["auto", "fp32", "tf32", "bf16"],
        help=f"auto: bf16 autocast on CUDA, fp32 on CPU; tf32 needs CUDA (default: {_train_default('precision')})",
    )
    train.add_argument(
        "--selection",
        choices=["val", "train", "test"],
        help="what steers training: val (validation patients), train (training accuracy on "
        "the labeled patients) or test (the paper's protocol; stamped) "
        f"(default: {_train_default('selection')})",
    )
    train.add_argument(
        "--val-fraction",
        type=float,
        help=f"fraction of patients for validation (default: {_train_default('val_fraction')})",
    )
    train.add_argument(
        "--split",
        choices=["auto", "seeded", "shipped"],
        help="how patients are split: auto (a benchmark layout's published lists, la / brats2019-h5; "
        f"seeded otherwise), seeded or shipped (default: {_train_default('split')})",
    )
    train.add_argument(
        "--unlabeled-slices",
        choices=["body", "all", "label"],
        help="unlabeled slices: body (label-free), all, or label (the paper's filter, which "
        f"reads the unlabeled patients' labels) (default: {_train_default('unlabeled_slices')})",
    )
    train.add_argument(
        "--augment",
        metavar="SPEC",
        help="training augmentation: method (the paper's, as the method declares it), none, or a comma "
        f"list of crop, flip, rotate (default: {_train_default('augment')})",
    )
    _add_run_folder_arguments(
        train,
        options="for method options (`workbench methods NAME` lists them)",
        out="runs/<method>-<data>-l<labeled>-s<seed>",
        resume="the run in this folder from its checkpoint",
    )
    train.add_argument("--init", metavar="RUN", help="start the U-Nets from a `workbench pretrain` run (default: none)")


def _add_run_folder_arguments(parser: argparse.ArgumentParser, options: str, out: str, resume: str) -> None:
    """``--set``, ``--out``, ``--overwrite``, ``--resume`` and ``--quiet`` of ``train`` and ``pretrain``."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"any other TrainConfig field, or options.NAME=VALUE {options}; repeatable (default: none)",
    )
    parser.add_argument("--out", help=f"run folder (default: {out})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    parser.add_argument("--resume", metavar="RUN", help=f"continue {resume}, with its own config.json (default: none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, no device line")


def _add_pretrain(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    """``workbench pretrain``: ``train`` with a pre-training method's defaults."""
    pre = sub.add_parser(
        "pretrain",
        help="self-supervised pre-training (Multi-ConDoS DSGAN) into a run folder: "
        "`train` with the method's pre-training defaults (lr 2e-4, no weight decay, constant "
        "rate)",
        parents=common,
    )
    pre.add_argument(
        "--method", choices=list(PRETRAIN_METHODS), help=f"pre-training method (default: {PRETRAIN_METHODS[0]})"
    )
    pre.add_argument(
        "--data", help="dataset folder; only the training patients' images are used, no labels (default: none)"
    )
    pre.add_argument(
        "--format", dest="fmt", choices=FORMATS, help=f"dataset layout (default: {_pretrain_default('fmt')})"
    )
    pre.add_argument(
        "--modalities", help="the two modalities X,Y, e.g. t1,flair or ct,pet (default: the format's pair)"
    )
    pre.add_argument("--epochs", type=int, help=f"epochs (paper: 200; default: {_pretrain_default('epochs')})")
    pre.add_argument(
        "--steps-per-epoch",
        type=int,
        help="optimiser steps per epoch (the paper's epoch: slices // batch size; "
        f"default: {_pretrain_default('steps_per_epoch')})",
    )
    pre.add_argument(
        "--batch-size",
        type=int,
        help=f"slices per step (paper: 36 BraTS, 48 HECKTOR; default: {_pretrain_default('batch_size')})",
    )
    pre.add_argument("--lr", type=float, help=f"learning rate (paper: 2e-4; default: {_pretrain_default('lr')})")
    pre.add_argument("--seed", type=int, help=f"seed (default: {_pretrain_default('seed')})")
    pre.add_argument(
        "--size",
        type=int,
        help=f"slice size after resize, a multiple of 16, >= 32 (default: {_pretrain_default('size')})",
    )
    pre.add_argument(
        "--crop", type=int, help=f"centre crop in voxels before resize (default: {_pretrain_default('crop')})"
    )
    pre.add_argument(
        "--base-channels",
        type=int,
        help=f"U-Net width f (paper: 32); fine-tuning must match (default: {_pretrain_default('base_channels')})",
    )
    pre.add_argument("--device", choices=DEVICES, help="auto: CUDA when there is one, else the CPU (default: auto)")
    _add_run_folder_arguments(
        pre,
        options="(`workbench methods multi-condos` lists them)",
        out="runs/pretrain-<method>-<data>-s<seed>",
        resume="the pre-training in this folder",
    )


def _add_eval_and_view(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    """``workbench eval`` and ``workbench view``."""
    moved = "the run's data folder, if it moved (must hold the same data; default: the one in its config.json)"
    ev = sub.add_parser("eval", help="recompute a run's per-patient test metrics from its checkpoint", parents=common)
    ev.add_argument("run", help="run folder")
    ev.add_argument(
        "--test-slices",
        choices=["all", "tumour"],
        help="all slices of each test volume, or only its tumour slices (the paper's protocol) (default: the run's)",
    )
    ev.add_argument(
        "--patients",
        choices=["test", "val"],
        default="test",
        help="score the test patients (default) or the validation patients (every slice), "
        "e.g. to calibrate or choose a setting without looking at the test set",
    )
    ev.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="MODALITY=DX,DY[,ROT]",
        help="misalign one modality at test time: move it DX, DY voxels (rows, columns) and rotate it ROT "
        "degrees about the slice centre; labels and other modalities stay; repeatable (default: none)",
    )
    ev.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="MODALITY",
        help="set this modality's input to zero at test time; repeatable (default: none)",
    )
    ev.add_argument("--data", metavar="FOLDER", help=moved)
    ev.add_argument("--device", choices=DEVICES, help="where to evaluate (default: the run's device)")
    ev.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")

    view = sub.add_parser(
        "view", help="napari viewer: a test patient's modalities, predictions and ground truth", parents=common
    )
    view.add_argument("run", help="run folder")
    view.add_argument("--patient", metavar="ID", help="test patient case id (default: the first test patient)")
    view.add_argument(
        "--screenshot",
        metavar="PNG",
        help="save the largest-tumour slice as a PNG and exit (headless: xvfb-run -a workbench ...)",
    )
    view.add_argument("--data", metavar="FOLDER", help=moved)
    view.add_argument("--device", choices=DEVICES, help="where to predict (default: the run's device)")
    view.add_argument(
        "--pseudo-labels", action="store_true", help="add the PReL teacher's soft pseudo-label (semi-cml-prel runs)"
    )
    view.add_argument("--errors", action="store_true", help="add false-positive / false-negative maps")
    view.add_argument(
        "--overlay", action="store_true", help="all modalities in one place (toggle them) instead of side by side"
    )


def _add_others(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    """``workbench methods``, ``demo``, ``reproduce`` and ``bench``."""
    methods = sub.add_parser("methods", help="list the methods, or one method's options", parents=common)
    methods.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="a method: print its options with defaults, allowed values and the paper's values",
    )

    demo = sub.add_parser(
        "demo",
        help="built-in data; supervised vs Semi-CML + PReL (or, in 3D, cross-view) at 10%% labels (minutes)",
        parents=common,
    )
    demo.add_argument("--out", default="runs/demo", help="folder for the data and both runs")
    demo.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when there is one, else the CPU")
    demo.add_argument(
        "--spatial-dims",
        type=int,
        choices=[2, 3],
        default=2,
        help="2: slices, supervised vs Semi-CML + PReL; 3: volumes, supervised vs cross-view on 32^3 patches "
        "(default: 2)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars, no device line")

    rep = sub.add_parser(
        "reproduce",
        help="run a grid of methods x labeled fractions x seeds and write the paper-layout tables (resumable)",
        parents=common,
    )
    rep.add_argument(
        "--grid",
        required=True,
        metavar="GRID",
        help="a grid YAML file, or a shipped grid: " + ", ".join(_shipped_grids()),
    )
    rep.add_argument("--out", help="output folder (default: runs/reproduce-<grid name>)")
    rep.add_argument("--jobs", type=int, default=1, help="cells in parallel, each in its own process")
    rep.add_argument("--threads", type=int, default=0, help="torch threads per cell (0: cores / jobs)")
    rep.add_argument(
        "--only-finished",
        action="store_true",
        help="train nothing: tabulate the cells whose run folder has metrics.json",
    )
    rep.add_argument(
        "--rows",
        nargs="+",
        metavar="LABEL",
        help="run only these rows (their labels in the grid); the tables show every finished cell",
    )
    rep.add_argument("--quiet", action="store_true", help="no progress bar")

    from workbench.bench import add_arguments as add_bench_arguments

    bench = sub.add_parser(
        "bench",
        help="training speed: img/s and ms/step per precision, a full epoch, and the ASC loss against a literal loop",
        parents=common,
    )
    add_bench_arguments(bench)


# --------------------------------------------------------------------------- checks before anything loads
#: what a sub-command's flags are called on the command line, where the dest differs
_FLAG_NAMES = {"fmt": "--format"}


def _flag(dest: str) -> str:
    return _FLAG_NAMES.get(dest, "--" + dest.replace("_", "-"))


def _check_resume_flags(args: argparse.Namespace, applied: tuple[str, ...]) -> None:
    """One-line ConfigError naming the flags given with ``--resume`` that a resumed run
    cannot take (it continues with its own config.json); ``applied`` ones are passed on."""
    allowed = {"command", "debug", "resume", "out", "quiet", *applied}
    given = [
        _flag(dest) for dest, value in vars(args).items() if dest not in allowed and value not in (None, False, [])
    ]
    if given:
        can = (
            f"only {', '.join(_flag(d) for d in applied)} can be given with it"
            if applied
            else "no training flag can be given with it"
        )
        raise ConfigError(
            f"{', '.join(given)} cannot be changed on --resume (the run continues with its own "
            f"config.json; {can}): drop {'it' if len(given) == 1 else 'them'}, or start a new "
            "run with another --out"
        )
    if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError(
            f"--out {args.out} with --resume {args.resume}: a resumed run stays in its own folder; drop --out"
        )


def _check_out(out: str | Path) -> None:
    """One-line ConfigError when ``--out`` names an existing file."""
    from workbench.runs import check_out_folder

    check_out_folder(out)


def _check_method_options(method: str, options: dict[str, Any]) -> None:
    """Unknown or mistyped method options, and values outside the allowed ones, before the
    data loads (the method checks them again when it is built)."""
    from workbench.methods import get_method
    from workbench.methods.options import check_choice, parse_options

    get_method(method)
    options_class, modules, _, _ = _method_info(method)
    opts = parse_options(options_class, dict(options), method)
    for name, choices in _declared_choices(modules).items():
        if name in options and isinstance(getattr(opts, name, None), str):
            check_choice(name, getattr(opts, name), tuple(choices))


def _train_config(args: argparse.Namespace):
    from workbench.train import TrainConfig

    if not args.method:
        raise ConfigError(f"--method is required; choose one of: {', '.join(_method_names())}")
    values: dict[str, Any] = {"method": args.method, "data": args.data or "", "device": args.device or "auto"}
    if args.modalities:
        values["modalities"] = [m.strip() for m in args.modalities.split(",") if m.strip()]
    for name in (
        "fmt",
        "labeled",
        "epochs",
        "steps_per_epoch",
        "batch_size",
        "lr",
        "seed",
        "size",
        "crop",
        "base_channels",
        "precision",
        "init",
        "selection",
        "val_fraction",
        "split",
        "unlabeled_slices",
        "augment",
    ):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    config = TrainConfig.from_dict(_with_sets(values, args.set))
    _check_method_options(config.method, config.options)
    return config


def _with_sets(values: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``values`` updated by ``--set KEY=VALUE`` items (``options.NAME`` go into ``options``)."""
    options: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        if key.startswith("options."):
            options[key[len("options.") :]] = _parse_value(raw)
        elif key == "options":
            raise ConfigError(f"--set {item!r}: set one option at a time, e.g. --set options.w2=0.5")
        else:
            values[key] = _parse_value(raw)
    values.setdefault("options", {}).update(options)
    return values


# --------------------------------------------------------------------------- method options
def _field_comments(options_class: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field in the source of an options dataclass (and
    of the dataclasses it extends): where the classes record meaning and the paper's value."""
    comments: dict[str, str] = {}
    for klass in reversed(options_class.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        source = textwrap.dedent(source)
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                comments[node.target.id] = _comment(lines[node.end_lineno - 1])
    return comments


def _comment(line: str) -> str:
    """The ``# comment`` at the end of one source line ("" if none)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if token.type == tokenize.COMMENT:
                return token.string[1:].strip()
    except tokenize.TokenError:  # the line of a statement that spans several
        pass
    return ""


def _declared_choices(modules: list[Any]) -> dict[str, list[str]]:
    """Allowed values of string options, read from the checks the methods make:
    ``check_choice("name", value, CHOICES)`` and ``opts.name not in CHOICES``."""
    found: dict[str, list[str]] = {}

    def values(node: ast.AST, module: Any) -> list[str] | None:
        if isinstance(node, ast.Name):
            value = getattr(module, node.id, None)
        else:
            try:
                value = ast.literal_eval(node)
            except ValueError:
                return None
        if isinstance(value, (tuple, list, dict, set)) and all(isinstance(v, str) for v in value):
            return list(value)
        return None

    for module in modules:
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "check_choice"
                and len(node.args) == 3
                and isinstance(node.args[0], ast.Constant)
            ):
                choices = values(node.args[2], module)
                if choices:
                    found.setdefault(node.args[0].value, choices)
            elif (
                isinstance(node, ast.Compare)
                and len(node.ops) == 1
                and isinstance(node.ops[0], ast.NotIn)
                and isinstance(node.left, ast.Attribute)
            ):
                owner = node.left.value
                if (isinstance(owner, ast.Name) and owner.id in ("o", "opts")) or (
                    isinstance(owner, ast.Attribute) and owner.attr == "opts"
                ):
                    choices = values(node.comparators[0], module)
                    if choices:
                        found.setdefault(node.left.attr, choices)
    return found


def _paper_value(comment: str) -> str:
    """The value after ``paper: `` (or ``paper's best...: ``) in a field comment, if it is a number or none."""
    match = re.search(r"\bpaper(?:'s [^:;()]*)?: *(-?[0-9.]+(?:e-?[0-9]+)?|none)\b", comment)
    return match.group(1) if match else ""


def _method_info(name: str) -> tuple[type, list[Any], str, str]:
    """A training or pre-training method's options dataclass, the modules whose checks
    declare its allowed values, its one-line description and how its options are set."""
    from workbench.methods import METHODS, get_method

    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    cls = get_method(name)
    modules = [sys.modules[k.__module__] for k in cls.__mro__ if k.__module__.startswith("workbench.methods")]
    doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
    command = "pretrain" if name in PRETRAIN_METHODS else "train"
    return cls.options_class, modules, doc, f"workbench {command} --method {name} --set options.NAME=VALUE"


def format_method_options(name: str) -> str:
    """``workbench methods NAME``: the method's description, then one row per option: name,
    default, allowed values, the paper's value (where the options class records it) and
    the class's note on the option."""
    options_class, modules, doc, how = _method_info(name)
    lines = [f"{name}: {doc}"]
    fields = dataclasses.fields(options_class)
    if not fields:
        lines.append(f"{name} takes no options")
        return "\n".join(lines)
    comments = _field_comments(options_class)
    choices = _declared_choices(modules)
    rows = [("option", "default", "allowed", "paper", "note")]
    for f in fields:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        if isinstance(default, bool):
            shown, allowed = json.dumps(default), "true | false"
        elif isinstance(default, str):
            shown = repr(default)
            allowed = " | ".join(choices[f.name]) if f.name in choices else "text"
        else:
            shown, allowed = repr(default), {int: "integer", float: "number"}.get(type(default), type(default).__name__)
        comment = comments.get(f.name, "")
        rows.append((f.name, shown, allowed, _paper_value(comment), comment))
    widths = [min(max(len(r[i]) for r in rows), 24) for i in range(4)]  # a longer cell shifts its row only
    lines.append(f"options ({how}):")
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    return "\n".join(line.rstrip() for line in lines)


def format_protocol(protocol: dict[str, Any] | None) -> str:
    """A run's protocol card (``metrics.json["protocol"]``) as indented plain-text lines."""
    if not protocol:
        return "protocol: not recorded (run made before protocol cards)"
    data = protocol["data"]
    built = data.get("builtin")
    source = (
        f"built-in {built['kind']}, {built['patients']} patients, data seed {built['seed']}"
        if built
        else f"{data['folder']} ({data['format']})"
    )
    steer = {"val": "validation patients", "train": "training accuracy (labeled patients)", "test": "TEST patients"}[
        protocol["selection"]
    ]
    lines = [
        f"protocol{' [' + protocol['stamp'] + ']' if protocol.get('stamp') else ''}:",
        f"  data: {source}, sha256 {data['sha256'][:12]}",
        "  patients: "
        + ", ".join(f"{n} {k}" for k, n in protocol["patients"].items())
        + (
            f" (split seed {protocol['split_seed']})"
            if isinstance(protocol["split_seed"], int)
            else f" ({protocol['split_seed']} split)"
        ),
        f"  steered training: {steer}",
        f"  unlabeled slices: {protocol['unlabeled_slices']}; test slices: {protocol['test_slices']}",
        f"  empty masks: {protocol['empty_mask_rule']}",
        "  std over test patients: sample std (ddof 1)",
    ]
    return "\n".join(lines)


def format_summary(result: dict[str, Any]) -> str:
    """Per-modality mean metrics (± sample std over patients) and per-patient DSC as a
    plain-text table, then the run's protocol card."""
    lines = []
    summary = result["summary"]
    lines.append(f"{'modality':<10}{'DSC':>14}{'Sens':>14}{'HD95 mm':>14}{'ASD mm':>14}{'BIoU':>8}")
    for m, s in summary.items():

        def cell(k: str) -> str:
            spread = s[k + "_std"]
            return f"{s[k]:.3f}" if spread != spread else f"{s[k]:.3f}±{spread:.3f}"  # NaN: one patient

        lines.append(f"{m:<10}{cell('dsc'):>14}{cell('sens'):>14}{cell('hd95'):>14}{cell('asd'):>14}{s['biou']:>8.3f}")
    modalities = list(summary)
    lines.append("")
    lines.append("per-patient DSC: " + "  ".join(f"{m:>8}" for m in modalities))
    by_case: dict[str, dict[str, float]] = {}
    for row in result["per_patient"]:
        by_case.setdefault(row["case_id"], {})[row["modality"]] = row["dsc"]
    for case, scores in by_case.items():
        lines.append(f"  {case:<14} " + "  ".join(f"{scores.get(m, float('nan')):>8.3f}" for m in modalities))
    lines.append(format_protocol(result.get("protocol")))
    return "\n".join(lines)


def _say_device(device: Any, precision: str) -> None:
    """The one line a train / pretrain / demo run starts with (unless --quiet)."""
    print(f"device {device}, precision {precision}", flush=True)


def _cmd_data_make(args: argparse.Namespace) -> int:
    from workbench.data.synthetic import generate

    if args.patients < 3:
        raise ConfigError(f"--patients {args.patients}: need at least 3 (train / val / test split by patient)")
    _check_out(args.out)
    start = time.perf_counter()
    ids = generate(args.kind, Path(args.out), args.patients, args.seed, difficulty=args.difficulty)
    seconds = time.perf_counter() - start
    print(f"wrote {len(ids)} {args.kind} cases ({args.difficulty} difficulty) to {args.out} in {seconds:.1f} s")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from workbench.train import Trainer

    quiet = args.quiet or os.environ.get("CI") == "true"
    if args.resume:
        _check_resume_flags(args, applied=("data", "device"))
        overrides = {k: getattr(args, k) for k in ("data", "device") if getattr(args, k) is not None}
        trainer = Trainer.resume(args.resume, quiet=quiet, overrides=overrides)
        if overrides and not quiet and trainer.world.is_main:
            print(
                f"resuming {args.resume} with "
                + ", ".join(f"{_flag(k)} {v}" for k, v in overrides.items())
                + "; everything else from its config.json"
            )
    else:
        config = _train_config(args)
        out = args.out or f"runs/{config.method}-{Path(config.data).name}-l{config.labeled:g}-s{config.seed}"
        _check_out(out)
        trainer = Trainer(config, out, quiet=quiet, overwrite=args.overwrite)
    try:
        if not quiet and trainer.world.is_main:
            _say_device(trainer.device, trainer.precision)
        result = trainer.fit()
    finally:
        trainer.close()
    if not trainer.world.is_main:  # under torchrun, rank 0 reports
        return 0
    print(f"run folder: {trainer.run_dir}")
    print(format_summary(result))
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    """``train`` with a pre-training method and its defaults (:data:`PRETRAIN_DEFAULTS`)."""
    from workbench.distributed import world_from_env
    from workbench.methods.multi_condos import PRETRAIN_DEFAULTS
    from workbench.train import TrainConfig, Trainer

    if world_from_env().distributed:  # its two optimisers step in turn: one process (Trainer)
        raise ConfigError("pretrain runs in one process: launch it without torchrun")
    quiet = args.quiet or os.environ.get("CI") == "true"
    if args.resume:
        _check_resume_flags(args, applied=())
        trainer = Trainer.resume(args.resume, quiet=quiet)
    else:
        values: dict[str, Any] = {
            **PRETRAIN_DEFAULTS,
            "method": args.method or PRETRAIN_METHODS[0],
            "data": args.data or "",
            "device": args.device or "auto",
        }
        if args.modalities:
            values["modalities"] = [m.strip() for m in args.modalities.split(",") if m.strip()]
        for name in ("fmt", "epochs", "steps_per_epoch", "batch_size", "lr", "seed", "size", "crop", "base_channels"):
            if getattr(args, name) is not None:
                values[name] = getattr(args, name)
        config = TrainConfig.from_dict(_with_sets(values, args.set))
        config.validate()
        _check_method_options(config.method, config.options)
        out = args.out or f"runs/pretrain-{config.method}-{Path(config.data).name}-s{config.seed}"
        _check_out(out)
        trainer = Trainer(config, out, quiet=quiet, overwrite=args.overwrite)
    try:
        if not quiet and trainer.world.is_main:
            _say_device(trainer.device, trainer.precision)
        result = trainer.fit()
    finally:
        trainer.close()
    if not trainer.world.is_main:
        return 0
    print(
        f"run folder: {trainer.run_dir} ({trainer.epoch} epochs, {trainer._x_l.shape[0]} slices of "
        f"{len(trainer.splits.split.train)} training patients, translations in {trainer.run_dir / 'samples'})"
    )
    if result and result.get("losses"):
        print("last epoch: " + "  ".join(f"{k} {v:.4f}" for k, v in result["losses"].items()))
    print(
        f"fine-tune: workbench train --method supervised --data {trainer.config.data} --init {trainer.run_dir} "
        f"--base-channels {trainer.config.base_channels}"
    )
    return 0


def _overrides(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The ``Trainer.resume`` overrides given on the command line (``--data``, ``--device``...)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _cmd_eval(args: argparse.Namespace) -> int:
    from workbench.inference import Perturbation, open_run

    run = Path(args.run)
    perturbation = Perturbation.parse(args.shift, args.drop)  # a malformed --shift fails before loading
    overrides = _overrides(args, "test_slices", "data", "device")
    opened = open_run(run, overrides or None, progress=not args.quiet)
    scores = opened.evaluate(progress=not args.quiet, patients=args.patients, perturbation=perturbation)
    slices = opened.config.test_slices if args.patients == "test" else "all"
    result = {
        "epoch": opened.epoch,
        **scores,
        "protocol": opened.protocol,
        "patients": args.patients,
        "test_slices": opened.config.test_slices,
        "perturbation": {"shifts": perturbation.shifts, "drops": list(perturbation.drops)},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    where = f"{args.patients} patients, slices: {slices}, device {opened.device}"
    if perturbation:
        where += f"; {perturbation.describe()}"
    print(f"run folder: {run} (epoch {result['epoch']}, {where})")
    print(format_summary(result))
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from workbench.viz.napari_view import screenshot, show_run

    run = Path(args.run)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} does not exist")
    options: dict[str, Any] = {
        "pseudo_labels": args.pseudo_labels,
        "errors": args.errors,
        "side_by_side": not args.overlay,
    }
    overrides = _overrides(args, "data", "device")
    if overrides:  # only then: the viewer's functions take them through to Trainer.resume
        options["overrides"] = overrides
    if args.screenshot:
        image = screenshot(run, args.screenshot, args.patient, **options)
        print(f"wrote {args.screenshot} ({image.shape[1]}x{image.shape[0]})")
        return 0
    import napari

    show_run(run, args.patient, **options)
    napari.run()
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    """Every method, one line each; with NAME, that method's options."""
    from workbench.methods import METHODS

    if args.name:
        print(format_method_options(args.name))
        return 0
    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        after = " (pre-training: workbench pretrain; then train --init)" if name in PRETRAIN_METHODS else ""
        dims = "/".join(f"{d}D" for d in cls.spatial_dims_supported)
        dims += "+vnet" if "vnet" in cls.backbones_supported else ""
        print(f"{name:<16} {dims:<11} {doc}{after}")
    print(
        "\n2D / 3D: --set spatial_dims=3 trains on 3D patches; +vnet: --set backbone=vnet builds the papers' "
        "3D V-Net; options of one method: workbench methods NAME"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Built-in brain data, then the supervised baseline and Semi-CML + PReL (BMA) at 10% labels
    (``--spatial-dims 3``: the supervised 3D U-Net and cross-view mutual learning on patches)."""
    from workbench.data.synthetic import generate
    from workbench.train import TrainConfig, Trainer

    quiet = args.quiet or os.environ.get("CI") == "true"
    out = Path(args.out)
    _check_out(out)
    data_dir = out / "data-brats"
    if not data_dir.exists():
        print(f"making built-in brain data in {data_dir} ...")
        generate("brats", data_dir, 20, 0)
    results = {}
    # 2D: the slices at the CPU-scale settings; 3D: whole volumes, 32^3 patches, a narrow U-Net
    methods, settings = ("supervised", "semi-cml-prel"), dict(base_channels=16, epochs=12, steps_per_epoch=15)
    if args.spatial_dims == 3:
        methods = ("supervised", "cross-view")
        settings = dict(
            spatial_dims=3, patch=[32, 32, 32], base_channels=8, epochs=8, steps_per_epoch=10,
            batch_size=2, unlabeled_batch_size=2, eval_batch_size=8,
        )  # fmt: skip
    for method in methods:
        config = TrainConfig(method=method, data=str(data_dir), labeled=0.1, device=args.device, **settings)
        start = time.perf_counter()
        trainer = Trainer(config, out / method, quiet=quiet, overwrite=True)
        try:
            if not quiet:
                _say_device(trainer.device, trainer.precision)
            results[method] = trainer.fit()
        finally:
            trainer.close()
        print(
            f"\n{method}, 10% labeled patients ({time.perf_counter() - start:.0f} s, {trainer.device}, "
            f"run folder {trainer.run_dir}):"
        )
        print(format_summary(results[method]))
    print(f"\nmean per-patient test DSC, 10% labels ({args.spatial_dims}D):")
    for m in results["supervised"]["summary"]:
        row = "  ".join(f"{name} {r['summary'][m]['dsc']:.3f}" for name, r in results.items())
        print(f"  {m:<6} {row}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    """Run (or with --only-finished, tabulate) a grid; exit status 1 when a cell failed."""
    if args.out:
        _check_out(args.out)
    from workbench.reproduce import GridError, load_grid, reproduce

    quiet = args.quiet or os.environ.get("CI") == "true"
    try:
        grid = load_grid(args.grid, check_paths=not args.only_finished, check_device=not args.only_finished)
    except GridError as exc:  # every problem of the file, one line each
        if args.debug:
            raise
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/reproduce-{grid.name}")
    _check_out(out)
    report = reproduce(
        grid, out, jobs=args.jobs, only_finished=args.only_finished, threads=args.threads, quiet=quiet, rows=args.rows
    )
    print((out / "tables.md").read_text())
    print(report.summary())
    return 1 if report.failures else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from workbench.bench import run

    return run(args)


COMMANDS = {
    "bench": _cmd_bench,
    "data": _cmd_data_make,
    "train": _cmd_train,
    "pretrain": _cmd_pretrain,
    "eval": _cmd_eval,
    "view": _cmd_view,
    "methods": _cmd_methods,
    "demo": _cmd_demo,
    "reproduce": _cmd_reproduce,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except WorkbenchError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C; training says which checkpoint it kept
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
