import json

import pytest
import torch

from workbench.cli import main


@pytest.fixture(scope="module")
def tiny_cli_run(tmp_path_factory):
    """One supervised run made through the CLI, read (never changed) by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    data, run = root / "brats", root / "run"
    main(["data", "make", "--kind", "brats", "--patients", "4", "--seed", "0", "--out", str(data)])
    main(
        [
            "train",
            "--method",
            "supervised",
            "--data",
            str(data),
            "--labeled",
            "0.5",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--batch-size",
            "2",
            "--base-channels",
            "4",
            "--size",
            "32",
            "--out",
            str(run),
            "--quiet",
        ]
    )
    return run


def test_data_make_writes_the_difficulty_it_is_given(tmp_path, capsys):
    from workbench.data.fingerprint import BUILTIN_MANIFEST
    from workbench.data.synthetic import DIFFICULTY_PRESETS

    out = tmp_path / "clear"
    assert (
        main(["data", "make", "--kind", "hecktor", "--patients", "3", "--difficulty", "clear", "--out", str(out)]) == 0
    )
    assert "(clear difficulty)" in capsys.readouterr().out
    assert json.loads((out / BUILTIN_MANIFEST).read_text())["difficulty"]["preset"] == "clear"
    with pytest.raises(SystemExit):
        main(["data", "make", "--kind", "brats", "--difficulty", "hard", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'hard'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert (
        set(DIFFICULTY_PRESETS["brats"]) == set(DIFFICULTY_PRESETS["hecktor"]) == {"clear", "paper"}
    )  # the CLI's choices


def test_data_make_train_eval(tmp_path, capsys):
    data = tmp_path / "brats"
    assert main(["data", "make", "--kind", "brats", "--patients", "5", "--seed", "1", "--out", str(data)]) == 0
    assert len(list(data.glob("*/*_flair.nii.gz"))) == 5
    run = tmp_path / "run"
    argv = [
        "train",
        "--method",
        "supervised",
        "--data",
        str(data),
        "--labeled",
        "0.5",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "4",
        "--base-channels",
        "4",
        "--size",
        "32",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "per-patient DSC" in printed and "flair" in printed
    logged = json.loads((run / "metrics.json").read_text())
    events_before = (run / "events.jsonl").read_text()
    assert main(["eval", str(run), "--quiet"]) == 0
    evaluated = capsys.readouterr().out
    assert (run / "events.jsonl").read_text() == events_before  # eval leaves the run untouched
    # eval recomputes the logged metrics from the checkpoint
    for row in logged["per_patient"]:
        assert f"{row['dsc']:.3f}" in evaluated


def test_unknown_method_lists_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", "nope", "--data", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "supervised" in err


def test_missing_data_folder_is_one_line(tmp_path, capsys):
    code = main(["train", "--method", "supervised", "--data", str(tmp_path / "nowhere"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "nowhere" in err and len(err.splitlines()) == 1


def test_bad_labeled_fraction(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "supervised", "--data", "x", "--labeled", "2"])
    assert "must be in (0, 1]" in capsys.readouterr().err


def test_methods_lists_every_registered_method_with_a_description(capsys):
    from workbench.methods import METHODS

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in METHODS:
        listed = [line for line in lines if line.split()[:1] == [name]]
        assert len(listed) == 1, f"{name} is not listed once by `workbench methods`"
        assert len(listed[0].split()) > 2, f"{name} is listed without a description"
        dims = "/".join(f"{d}D" for d in METHODS[name].spatial_dims_supported)
        dims += "+vnet" if "vnet" in METHODS[name].backbones_supported else ""
        assert listed[0].split()[1] == dims, f"{name}: the 2D / 3D (and V-Net) column"


def test_eval_with_the_papers_tumour_slice_protocol(tiny_cli_run, tmp_path, capsys):
    run = tiny_cli_run
    capsys.readouterr()
    out = tmp_path / "tumour.json"
    assert main(["eval", str(run), "--test-slices", "tumour", "--json", str(out), "--quiet"]) == 0
    assert "test patients, slices: tumour" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["test_slices"] == "tumour" and result["per_patient"]


def test_eval_on_the_validation_patients(tiny_cli_run, tmp_path, capsys):
    from workbench.inference import open_run

    run = tiny_cli_run
    capsys.readouterr()
    out = tmp_path / "val.json"
    assert main(["eval", str(run), "--patients", "val", "--json", str(out), "--quiet"]) == 0
    assert "val patients, slices: all" in capsys.readouterr().out
    result = json.loads(out.read_text())
    val_ids = {v.case_id for v in open_run(run).splits.val}
    assert result["patients"] == "val" and {r["case_id"] for r in result["per_patient"]} == val_ids
    test = json.loads((run / "metrics.json").read_text())["per_patient"]
    assert val_ids.isdisjoint(r["case_id"] for r in test)


def test_view_screenshot_and_unknown_patient(tiny_cli_run, tmp_path, capsys, monkeypatch):
    from tests.conftest import run_with_display, virtual_display

    run = tiny_cli_run
    capsys.readouterr()
    assert main(["view", str(run), "--patient", "BraTS-nobody", "--screenshot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'BraTS-nobody'" in err and "test patients" in err
    assert main(["view", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main(["view", str(run)]) == 2  # no screen: one line, not a Qt abort
    assert "xvfb-run" in capsys.readouterr().err
    png = tmp_path / "view.png"
    code = "import sys; from workbench.cli import main; sys.exit(main(sys.argv[1:]))"
    with virtual_display() as display:  # Qt in a subprocess: no QApplication left in pytest
        result = run_with_display(display, ["-c", code, "view", str(run), "--screenshot", str(png), "--errors"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote {png}" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- devices, flags, help
def _subparsers(parser, prefix=()):
    """``(words, parser)`` for the top-level parser and every sub-command parser, nested ones too."""
    import argparse

    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _subparsers(child, (*prefix, name))


def test_device_defaults_to_auto_everywhere():
    from workbench.cli import _train_config, build_parser

    parser = build_parser()
    commands = {words: sub for words, sub in _subparsers(parser)}
    for command in ("train", "pretrain", "demo", "bench"):
        assert parser.parse_args([command]).device in (None, "auto"), command
        sub = commands[(command,)]
        action = next(a for a in sub._actions if "--device" in a.option_strings)
        assert "(default: auto" in sub._get_formatter()._get_help_string(action), command
    args = parser.parse_args(["train", "--method", "supervised", "--data", "x"])
    assert _train_config(args).device == "auto"


def test_train_prints_the_resolved_device_and_precision(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    data = tmp_path / "brats"
    main(["data", "make", "--kind", "brats", "--patients", "4", "--out", str(data)])
    argv = [
        "train",
        "--method",
        "supervised",
        "--data",
        str(data),
        "--labeled",
        "0.5",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "2",
        "--base-channels",
        "4",
        "--size",
        "32",
    ]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device cpu, precision fp32" in out.splitlines()
    assert main([*argv, "--out", str(tmp_path / "quiet"), "--device", "cpu", "--quiet"]) == 0
    assert "precision" not in capsys.readouterr().out


def test_debug_is_accepted_after_the_sub_command(tmp_path, capsys):
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="--method is required"):
        main(["train", "--data", str(tmp_path), "--debug"])
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        main(["methods", "nope", "--debug"])
    assert main(["methods", "nope"]) == 2  # without --debug: one line
    assert capsys.readouterr().err.startswith("error: unknown method 'nope'")


def test_every_flag_has_a_help_line_and_shows_its_default():
    import argparse

    from workbench.cli import build_parser

    for words, parser in _subparsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            flag = f"workbench {' '.join(words)} {action.option_strings[-1]}"
            assert action.help, f"{flag} has no help"
            if action.nargs != 0 and not action.required:  # switches are off unless given
                assert "default" in formatter._get_help_string(action), f"{flag}: no default in its help"


def test_train_help_shows_the_config_defaults(capsys):
    from workbench.train import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {TrainConfig().epochs})" in text and "(default: auto" in text


def test_bench_batch_size_is_named_as_in_train():
    from workbench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["bench", "--config", "custom", "--batch-size", "3"]).batch_size == 3
    assert parser.parse_args(["bench", "--config", "custom", "--batch", "3"]).batch_size == 3  # old name, hidden


def test_reproduce_help_lists_every_shipped_grid(capsys):
    from workbench.reproduce import shipped_grids

    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = "".join(capsys.readouterr().out.split())  # help wraps at hyphens
    grids = shipped_grids()
    assert "difficulty-cpu" in grids and "quick-cpu" in grids
    for name in grids:
        assert name in text, f"shipped grid {name} is not in `workbench reproduce --help`"


# --------------------------------------------------------------------------- --resume
@pytest.mark.parametrize("command", ["train", "pretrain"])
@pytest.mark.parametrize(
    "extra",
    [
        ["--epochs", "5"],
        ["--set", "lr=0.1"],
        ["--lr", "0.1"],
        ["--overwrite"],
        ["--method", "supervised"],
        ["--labeled", "0.5"],
        ["--format", "brats"],
    ],
)
def test_resume_refuses_training_flags_naming_them(command, extra, tmp_path, capsys):
    if command == "pretrain" and extra[0] in ("--method", "--labeled"):
        extra = ["--method", "multi-condos"] if extra[0] == "--method" else ["--batch-size", "4"]
    code = main([command, "--resume", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {extra[0]} cannot be changed on --resume") and "config.json" in err


def test_pretrain_resume_refuses_device_and_data(tmp_path, capsys):
    for extra in (["--device", "cpu"], ["--data", str(tmp_path)]):
        assert main(["pretrain", "--resume", str(tmp_path / "run"), *extra]) == 2
        assert capsys.readouterr().err.startswith(f"error: {extra[0]} cannot be changed on --resume")


def test_resume_refuses_another_out_folder(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "run"), "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "its own folder" in err


def _capture_resume(monkeypatch):
    """Trainer.resume replaced by one that records its arguments and stops the command."""
    from workbench.errors import ConfigError
    from workbench.train import Trainer

    calls = []

    def resume(run_dir, **kwargs):
        calls.append((run_dir, kwargs))
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(Trainer, "resume", staticmethod(resume))
    return calls


def test_train_resume_passes_data_and_device_on(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)  # CI=true turns progress bars off (quiet)
    calls = _capture_resume(monkeypatch)
    run = tmp_path / "run"
    assert main(["train", "--resume", str(run), "--device", "cpu", "--data", str(tmp_path)]) == 2
    assert calls == [(str(run), {"quiet": False, "overrides": {"data": str(tmp_path), "device": "cpu"}})]
    calls.clear()
    assert main(["train", "--resume", str(run), "--out", str(run), "--quiet"]) == 2  # --out naming the run is fine
    assert calls[0][1]["overrides"] == {}


def test_eval_and_view_pass_data_and_device_overrides(tmp_path, monkeypatch, capsys):
    from workbench import inference
    from workbench.viz import napari_view

    calls = []

    def open_run(run_dir, overrides=None, progress=False):  # eval opens the run without a training loop
        calls.append((run_dir, overrides))
        raise inference.ConfigError("stopped by the test")

    monkeypatch.setattr(inference, "open_run", open_run)
    run = tmp_path / "run"
    run.mkdir()
    assert main(["eval", str(run), "--data", str(tmp_path / "moved"), "--device", "cpu", "--quiet"]) == 2
    assert calls[-1][1] == {"data": str(tmp_path / "moved"), "device": "cpu"}
    assert main(["eval", str(run), "--test-slices", "tumour", "--quiet"]) == 2
    assert calls[-1][1] == {"test_slices": "tumour"}
    seen = {}

    def screenshot(run_dir, path, patient=None, **options):
        seen.update(options)
        raise napari_view.ConfigError("stopped by the test")

    monkeypatch.setattr(napari_view, "screenshot", screenshot)
    assert main(["view", str(run), "--screenshot", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert seen["overrides"] == {"device": "cpu"}


def test_eval_on_another_device_and_a_moved_data_folder(tiny_cli_run, tmp_path, capsys):
    import json as _json
    import shutil

    data = _json.loads((tiny_cli_run / "config.json").read_text())["config"]["data"]
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    capsys.readouterr()
    assert main(["eval", str(tiny_cli_run), "--data", str(moved), "--device", "cpu", "--quiet"]) == 0
    assert "device cpu" in capsys.readouterr().out


# --------------------------------------------------------------------------- methods and options
def test_methods_lists_multi_condos_and_prints_options(capsys):
    assert main(["methods"]) == 0
    assert any(line.split()[:1] == ["multi-condos"] for line in capsys.readouterr().out.splitlines())
    assert main(["methods", "semi-cml-prel"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "0.99" in rows["alpha0"] and "bma | ema | base" in rows["teacher"]
    assert "sup+mse+asc" in rows["variant"] and "true | false" in rows["joint_forward"]
    assert main(["methods", "multi-condos"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["gamma"][:4] == ["gamma", "10.0", "number", "10"]  # default, allowed, the paper's value
    assert main(["methods", "cps"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "single | both" in rows["input"] and "first | mean" in rows["predict_with"]
    assert main(["methods", "supervised"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "true | false" in rows["dropout"]
    assert main(["methods", "mm-supervised"]) == 0
    assert "takes no options" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("method", "item", "words"),
    [
        ("semi-cml", "foo=1", ["unknown config key 'foo'", "epochs"]),
        ("semi-cml", "options.nope=1", ["no option 'nope'", "w1"]),
        ("semi-cml", "options.w1=high", ["w1='high'", "number"]),
        ("semi-cml-prel", "options.teacher=mean", ["unknown teacher 'mean'", "bma, ema, base"]),
        ("cps", "options.predict_with=teacher", ["unknown predict_with 'teacher'", "first, mean"]),
    ],
)
def test_unknown_options_are_rejected_before_the_data_loads(method, item, words, tmp_path, capsys, monkeypatch):
    from workbench import train

    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(train, "load_splits", no_loading)
    argv = ["train", "--method", method, "--data", str(tmp_path / "nowhere"), "--quiet", "--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


# --------------------------------------------------------------------------- --out
@pytest.mark.parametrize(
    "command",
    [
        ["train", "--method", "supervised", "--data", "DATA"],
        ["pretrain", "--method", "multi-condos", "--data", "DATA"],
        ["demo"],
        ["reproduce", "--grid", "quick-cpu"],
        ["data", "make", "--kind", "brats"],
    ],
)
def test_out_naming_a_file_is_one_line(command, tmp_path, capsys):
    out = tmp_path / "a-file"
    out.write_text("not a folder")
    argv = [str(tmp_path / "data") if word == "DATA" else word for word in command]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {out} is a file, not a folder"
    assert out.read_text() == "not a folder" and not (tmp_path / "data").exists()


def test_eval_shift_and_drop_change_only_the_inputs_they_name(tiny_cli_run, tmp_path, capsys, monkeypatch):
    """What reaches the network under --shift / --drop: the named modality changed, the
    other modality and the labels exactly as without them; the JSON says what was done."""
    import workbench.inference as inference

    seen = {}
    original = inference.evaluate_volumes

    def recording(method, volumes, *args, **kwargs):
        seen[tag] = [(v.images.clone(), v.label.clone()) for v in volumes]
        return original(method, volumes, *args, **kwargs)

    monkeypatch.setattr(inference, "evaluate_volumes", recording)
    results = {}
    for tag, extra in [("plain", []), ("shifted", ["--shift", "flair=6,4,20"]), ("dropped", ["--drop", "flair"])]:
        out = tmp_path / f"{tag}.json"
        assert main(["eval", str(tiny_cli_run), *extra, "--json", str(out), "--quiet"]) == 0
        results[tag] = json.loads(out.read_text())
        if tag == "shifted":
            assert "shift flair by (6, 4) voxels, 20 degrees" in capsys.readouterr().out
    assert results["plain"]["perturbation"] == {"shifts": {}, "drops": []}
    assert results["shifted"]["perturbation"] == {"shifts": {"flair": [6.0, 4.0, 20.0]}, "drops": []}
    assert results["dropped"]["perturbation"] == {"shifts": {}, "drops": ["flair"]}
    for tag in ("shifted", "dropped"):
        for (x, y), (x0, y0) in zip(seen[tag], seen["plain"]):
            assert torch.equal(x[:, 0], x0[:, 0]) and torch.equal(y, y0), tag  # t1 and labels untouched
            assert not torch.equal(x[:, 1], x0[:, 1]), tag  # flair changed
    assert (seen["dropped"][0][0][:, 1] == 0).all()
    assert "perturbation" not in json.loads((tiny_cli_run / "metrics.json").read_text())  # the run's own file stays


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--shift", "flair=1"], "--shift 'flair=1': expected MODALITY=DX,DY"),
        (["--drop", "PT"], "modality 'PT' is not"),
    ],
)
def test_eval_bad_shift_or_drop_is_one_line(tiny_cli_run, extra, words, capsys):
    assert main(["eval", str(tiny_cli_run), *extra, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_the_format_choices_are_the_configs():
    from workbench import cli, config

    assert cli.FORMATS == list(config.FORMATS)
    args = cli.build_parser().parse_args(["train", "--method", "supervised", "--data", "d", "--split", "shipped"])
    assert args.split == "shipped"
