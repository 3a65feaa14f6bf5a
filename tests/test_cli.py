import json

import pytest

from workbench.cli import main


@pytest.fixture(scope="module")
def tiny_cli_run(tmp_path_factory):
    """One supervised run made through the CLI, read (never changed) by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    data, run = root / "brats", root / "run"
    main(["data", "make", "--kind", "brats", "--patients", "4", "--seed", "0", "--out", str(data)])
    main(["train", "--method", "supervised", "--data", str(data), "--labeled", "0.5", "--epochs", "1",
          "--steps-per-epoch", "1", "--batch-size", "2", "--base-channels", "4", "--size", "32",
          "--out", str(run), "--quiet"])
    return run


def test_data_make_train_eval(tmp_path, capsys):
    data = tmp_path / "brats"
    assert main(["data", "make", "--kind", "brats", "--patients", "5", "--seed", "1", "--out", str(data)]) == 0
    assert len(list(data.glob("*/*_flair.nii.gz"))) == 5
    run = tmp_path / "run"
    argv = ["train", "--method", "supervised", "--data", str(data), "--labeled", "0.5", "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "4", "--base-channels", "4", "--size", "32",
            "--out", str(run), "--quiet"]
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
        assert len(listed[0].split()) > 1, f"{name} is listed without a description"


def test_eval_with_the_papers_tumour_slice_protocol(tiny_cli_run, tmp_path, capsys):
    run = tiny_cli_run
    capsys.readouterr()
    out = tmp_path / "tumour.json"
    assert main(["eval", str(run), "--test-slices", "tumour", "--json", str(out), "--quiet"]) == 0
    assert "test slices: tumour" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["test_slices"] == "tumour" and result["per_patient"]


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
