"""The ``workbench`` command line.

    workbench data make --kind brats|hecktor --patients N --seed S --out DIR
    workbench train --method NAME --data DIR --labeled 0.1 [--epochs E] [--out RUN]
    workbench train --resume RUN
    workbench pretrain --method multi-condos --data DIR [--epochs E] [--out RUN]
    workbench train --method supervised --data DIR --init RUN   (fine-tune a pre-training)
    workbench eval RUN
    workbench view RUN [--patient ID] [--screenshot PNG]
    workbench methods
    workbench demo
    workbench reproduce --grid GRID.yaml [--out DIR] [--jobs N] [--only-finished]
    workbench bench [--method NAME] [--config paper|custom] [--precision fp32 tf32 bf16]
    torchrun --nproc-per-node N -m workbench train ...   (several GPUs / processes)

Errors the workbench raises on purpose (bad path, malformed NIfTI, unknown method, bad
option) print one line ``error: ...`` and exit with status 2; ``--debug`` (before the
sub-command) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from workbench.errors import ConfigError, WorkbenchError

__all__ = ["main", "build_parser", "format_summary", "format_protocol"]


def _method_names() -> list[str]:
    from workbench.methods import METHODS

    return sorted(METHODS)


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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (sub-command parsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workbench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Semi-supervised multi-modal medical image segmentation: data, training, evaluation.",
        epilog="examples:\n" + __doc__.split("\n\n")[1])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="built-in synthetic datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    make = data_sub.add_parser("make", help="write a synthetic BraTS- or HECKTOR-like NIfTI folder")
    make.add_argument("--kind", choices=["brats", "hecktor"], required=True)
    make.add_argument("--patients", type=int, default=20)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--out", required=True, help="output folder")

    train = sub.add_parser("train", help="train a method into a run folder")
    train.add_argument("--method", choices=_method_names(), help="method name")
    train.add_argument("--data", help="dataset folder (BraTS, HECKTOR or generic layout)")
    train.add_argument("--format", dest="fmt", choices=["auto", "brats", "hecktor", "generic"], default="auto")
    train.add_argument("--modalities", help="comma-separated modality names, e.g. t1,flair or ct,pet")
    train.add_argument("--labeled", type=_fraction, default=0.1, help="fraction of labeled training patients")
    train.add_argument("--epochs", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--size", type=int, help="slice size after resize (multiple of 16)")
    train.add_argument("--crop", type=int, help="centre crop in voxels before resize (paper: 160 / 144)")
    train.add_argument("--base-channels", type=int, help="U-Net width (paper: 32)")
    train.add_argument("--device", choices=["cpu", "cuda", "auto"])
    train.add_argument("--precision", choices=["auto", "fp32", "tf32", "bf16"],
                       help="auto (default): bf16 autocast on CUDA, fp32 on CPU; tf32 needs CUDA")
    train.add_argument("--selection", choices=["val", "train", "test"],
                       help="what steers training: val (default: validation patients), train (training "
                            "accuracy on the labeled patients) or test (the paper's protocol; stamped)")
    train.add_argument("--val-fraction", type=float, help="fraction of patients for validation (default 0.1)")
    train.add_argument("--unlabeled-slices", choices=["body", "all", "label"],
                       help="unlabeled slices: body (default, label-free), all, or label (the paper's "
                            "filter, which reads the unlabeled patients' labels)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any other TrainConfig field, or options.NAME=VALUE for method options")
    train.add_argument("--out", help="run folder (default: runs/<method>-<data>-l<labeled>-s<seed>)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its checkpoint")
    train.add_argument("--init", metavar="RUN", help="start the U-Nets from a `workbench pretrain` run")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    pre = sub.add_parser("pretrain", help="self-supervised pre-training (Multi-ConDoS DSGAN) into a run folder")
    pre.add_argument("--method", choices=["multi-condos"], help="pre-training method")
    pre.add_argument("--data", help="dataset folder; only the training patients' images are used, no labels")
    pre.add_argument("--format", dest="fmt", choices=["auto", "brats", "hecktor", "generic"], default="auto")
    pre.add_argument("--modalities", help="the two modalities X,Y, e.g. t1,flair or ct,pet")
    pre.add_argument("--epochs", type=int, help="paper: 200")
    pre.add_argument("--steps-per-epoch", type=int, help="0: one pass over the slices")
    pre.add_argument("--batch-size", type=int, help="paper: 36 (BraTS), 48 (HECKTOR)")
    pre.add_argument("--lr", type=float)
    pre.add_argument("--seed", type=int)
    pre.add_argument("--size", type=int, help="slice size after resize (multiple of 16, >= 32)")
    pre.add_argument("--crop", type=int, help="centre crop in voxels before resize")
    pre.add_argument("--base-channels", type=int, help="U-Net width f (paper: 32); fine-tuning must match")
    pre.add_argument("--device", choices=["cpu", "cuda", "auto"])
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any other PretrainConfig field, or options.NAME=VALUE (gamma, beta, lam, shared_layers...)")
    pre.add_argument("--out", help="run folder (default: runs/pretrain-<method>-<data>-s<seed>)")
    pre.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    pre.add_argument("--resume", metavar="RUN", help="continue the pre-training in this folder")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")

    ev = sub.add_parser("eval", help="recompute a run's per-patient test metrics from its checkpoint")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--test-slices", choices=["all", "tumour"],
                    help="all slices of each test volume, or only its tumour slices (the paper's protocol)")
    ev.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    ev.add_argument("--quiet", action="store_true")

    view = sub.add_parser("view", help="napari viewer: a test patient's modalities, predictions and ground truth")
    view.add_argument("run", help="run folder")
    view.add_argument("--patient", metavar="ID", help="test patient case id (default: the first test patient)")
    view.add_argument("--screenshot", metavar="PNG",
                      help="save the largest-tumour slice as a PNG and exit (headless: xvfb-run -a workbench ...)")
    view.add_argument("--pseudo-labels", action="store_true",
                      help="add the PReL teacher's soft pseudo-label (semi-cml-prel runs)")
    view.add_argument("--errors", action="store_true", help="add false-positive / false-negative maps")
    view.add_argument("--overlay", action="store_true",
                      help="all modalities in one place (toggle them) instead of side by side")

    sub.add_parser("methods", help="list the available methods")

    demo = sub.add_parser("demo", help="built-in data; supervised vs Semi-CML + PReL at 10%% labels (CPU, minutes)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--quiet", action="store_true")

    rep = sub.add_parser("reproduce", help="run a grid of methods x labeled fractions x seeds and write the "
                         "paper-layout tables (resumable)")
    rep.add_argument("--grid", required=True, metavar="GRID",
                     help="a grid YAML file, or a shipped grid: semi-cml-table1-cpu, semi-cml-table3-cpu, "
                          "semi-cml-table1-gpu, semi-cml-table3-gpu")
    rep.add_argument("--out", help="output folder (default: runs/reproduce-<grid name>)")
    rep.add_argument("--jobs", type=int, default=1, help="cells in parallel, each in its own process")
    rep.add_argument("--threads", type=int, default=0, help="torch threads per cell (0: cores / jobs)")
    rep.add_argument("--only-finished", action="store_true",
                     help="train nothing: tabulate the cells whose run folder has metrics.json")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")

    from workbench.bench import add_arguments as add_bench_arguments

    bench = sub.add_parser("bench", help="training speed: img/s and ms/step per precision, a full epoch, "
                           "and the ASC loss against a literal loop")
    add_bench_arguments(bench)
    return parser


def _train_config(args: argparse.Namespace):
    from workbench.train import TrainConfig

    if not args.method:
        raise ConfigError(f"--method is required; choose one of: {', '.join(_method_names())}")
    values: dict[str, Any] = {"method": args.method, "data": args.data or "", "fmt": args.fmt, "labeled": args.labeled}
    if args.modalities:
        values["modalities"] = [m.strip() for m in args.modalities.split(",") if m.strip()]
    for name in ("epochs", "steps_per_epoch", "batch_size", "lr", "seed", "size", "crop",
                 "base_channels", "device", "precision", "init", "selection", "val_fraction", "unlabeled_slices"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return TrainConfig.from_dict(_with_sets(values, args.set))


def _with_sets(values: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``values`` updated by ``--set KEY=VALUE`` items (``options.NAME`` go into ``options``)."""
    options: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        if key.startswith("options."):
            options[key[len("options."):]] = _parse_value(raw)
        elif key == "options":
            raise ConfigError(f"--set {item!r}: set one option at a time, e.g. --set options.w2=0.5")
        else:
            values[key] = _parse_value(raw)
    values.setdefault("options", {}).update(options)
    return values


def format_protocol(protocol: dict[str, Any] | None) -> str:
    """A run's protocol card (``metrics.json["protocol"]``) as indented plain-text lines."""
    if not protocol:
        return "protocol: not recorded (run made before protocol cards)"
    data = protocol["data"]
    built = data.get("builtin")
    source = (f"built-in {built['kind']}, {built['patients']} patients, data seed {built['seed']}" if built
              else f"{data['folder']} ({data['format']})")
    steer = {"val": "validation patients", "train": "training accuracy (labeled patients)",
             "test": "TEST patients"}[protocol["selection"]]
    lines = [f"protocol{' [' + protocol['stamp'] + ']' if protocol.get('stamp') else ''}:",
             f"  data: {source}, sha256 {data['sha256'][:12]}",
             "  patients: " + ", ".join(f"{n} {k}" for k, n in protocol["patients"].items())
             + f" (split seed {protocol['split_seed']})",
             f"  steered training: {steer}",
             f"  unlabeled slices: {protocol['unlabeled_slices']}; test slices: {protocol['test_slices']}",
             f"  empty masks: {protocol['empty_mask_rule']}",
             "  std over test patients: sample std (ddof 1)"]
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
        lines.append(f"{m:<10}{cell('dsc'):>14}{cell('sens'):>14}{cell('hd95'):>14}{cell('asd'):>14}"
                     f"{s['biou']:>8.3f}")
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


def _cmd_data_make(args: argparse.Namespace) -> int:
    from workbench.data.synthetic import generate

    if args.patients < 3:
        raise ConfigError(f"--patients {args.patients}: need at least 3 (train / val / test split by patient)")
    start = time.perf_counter()
    ids = generate(args.kind, Path(args.out), args.patients, args.seed)
    print(f"wrote {len(ids)} {args.kind} cases to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from workbench.train import Trainer

    quiet = args.quiet or os.environ.get("CI") == "true"
    if args.resume:
        if args.method or args.data or args.init:
            raise ConfigError("--resume continues a run with its own config: drop --method / --data / --init")
        trainer = Trainer.resume(args.resume, quiet=quiet)
    else:
        config = _train_config(args)
        out = args.out or f"runs/{config.method}-{Path(config.data).name}-l{config.labeled:g}-s{config.seed}"
        trainer = Trainer(config, out, quiet=quiet, overwrite=args.overwrite)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    if not trainer.world.is_main:  # under torchrun, rank 0 reports
        return 0
    print(f"run folder: {trainer.run_dir}")
    print(format_summary(result))
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from workbench.distributed import world_from_env
    from workbench.methods.multi_condos import PretrainConfig, Pretrainer

    if world_from_env().distributed:
        raise ConfigError("pretrain runs in one process: launch it without torchrun")
    quiet = args.quiet or os.environ.get("CI") == "true"
    if args.resume:
        if args.method or args.data:
            raise ConfigError("--resume continues a pre-training with its own config: drop --method / --data")
        trainer = Pretrainer.resume(args.resume, quiet=quiet)
    else:
        if not args.method:
            raise ConfigError("--method is required; choose one of: multi-condos")
        values: dict[str, Any] = {"method": args.method, "data": args.data or "", "fmt": args.fmt}
        if args.modalities:
            values["modalities"] = [m.strip() for m in args.modalities.split(",") if m.strip()]
        for name in ("epochs", "steps_per_epoch", "batch_size", "lr", "seed", "size", "crop", "base_channels",
                     "device"):
            if getattr(args, name) is not None:
                values[name] = getattr(args, name)
        config = PretrainConfig.from_dict(_with_sets(values, args.set))
        out = args.out or f"runs/pretrain-{config.method}-{Path(config.data).name}-s{config.seed}"
        trainer = Pretrainer(config, out, quiet=quiet, overwrite=args.overwrite)
    try:
        losses = trainer.fit()
    finally:
        trainer.close()
    print(f"run folder: {trainer.run_dir} ({trainer.epoch} epochs, {trainer.data.info['n_slices']} slices of "
          f"{len(trainer.data.train_cases)} training patients, translations in {trainer.run_dir / 'samples'})")
    if losses:
        print("last epoch: " + "  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    print(f"fine-tune: workbench train --method supervised --data {trainer.config.data} --init {trainer.run_dir} "
          f"--base-channels {trainer.config.base_channels}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from workbench.train import Trainer

    run = Path(args.run)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} does not exist")
    overrides = {"test_slices": args.test_slices} if args.test_slices else None
    trainer = Trainer.resume(run, quiet=args.quiet, read_only=True, eval_overrides=overrides)
    try:
        result = trainer.evaluate(write=False)
    finally:
        trainer.close()
    result["test_slices"] = trainer.config.test_slices
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    print(f"run folder: {run} (epoch {result['epoch']}, test slices: {trainer.config.test_slices})")
    print(format_summary(result))
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from workbench.viz.napari_view import screenshot, show_run

    run = Path(args.run)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} does not exist")
    options = {"pseudo_labels": args.pseudo_labels, "errors": args.errors, "side_by_side": not args.overlay}
    if args.screenshot:
        image = screenshot(run, args.screenshot, args.patient, **options)
        print(f"wrote {args.screenshot} ({image.shape[1]}x{image.shape[0]})")
        return 0
    import napari

    show_run(run, args.patient, **options)
    napari.run()
    return 0


def _cmd_methods(_: argparse.Namespace) -> int:
    from workbench.methods import METHODS

    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<16} {doc}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Built-in brain data, then the supervised baseline and Semi-CML + PReL (BMA) at 10% labels."""
    from workbench.data.synthetic import generate
    from workbench.train import TrainConfig, Trainer

    quiet = args.quiet or os.environ.get("CI") == "true"
    out = Path(args.out)
    data_dir = out / "data-brats"
    if not data_dir.exists():
        print(f"making built-in brain data in {data_dir} ...")
        generate("brats", data_dir, 20, 0)
    results = {}
    for method in ("supervised", "semi-cml-prel"):
        config = TrainConfig(method=method, data=str(data_dir), labeled=0.1, base_channels=16,
                             epochs=12, steps_per_epoch=15)
        start = time.perf_counter()
        trainer = Trainer(config, out / method, quiet=quiet, overwrite=True)
        try:
            results[method] = trainer.fit()
        finally:
            trainer.close()
        print(f"\n{method}, 10% labeled patients ({time.perf_counter() - start:.0f} s, CPU, run folder {trainer.run_dir}):")
        print(format_summary(results[method]))
    print("\nmean per-patient test DSC, 10% labels:")
    for m in results["supervised"]["summary"]:
        row = "  ".join(f"{name} {r['summary'][m]['dsc']:.3f}" for name, r in results.items())
        print(f"  {m:<6} {row}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    """Run (or with --only-finished, tabulate) a grid; exit status 1 when a cell failed."""
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
    report = reproduce(grid, out, jobs=args.jobs, only_finished=args.only_finished, threads=args.threads,
                       quiet=quiet)
    print((out / "tables.md").read_text())
    print(report.summary())
    return 1 if report.failures else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from workbench.bench import run

    return run(args)


COMMANDS = {"bench": _cmd_bench, "data": _cmd_data_make, "train": _cmd_train, "pretrain": _cmd_pretrain, "eval": _cmd_eval,
            "view": _cmd_view, "methods": _cmd_methods, "demo": _cmd_demo, "reproduce": _cmd_reproduce}


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
