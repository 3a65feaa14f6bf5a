"""No network at run time (issue 10): the built-in data, a tiny training and its evaluation
run through the CLI with every outgoing connection refused."""

from __future__ import annotations

import socket

import pytest

from workbench.cli import main


def test_data_train_eval_with_sockets_blocked(tmp_path, monkeypatch, capsys):
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise OSError("network access attempted during a test that runs offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)

    data, run = tmp_path / "brats", tmp_path / "run"
    assert main(["data", "make", "--kind", "brats", "--patients", "4", "--seed", "0", "--out", str(data)]) == 0
    assert (
        main(
            [
                "train",
                "--method",
                "semi-cml",
                "--data",
                str(data),
                "--labeled",
                "0.5",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "2",
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
        == 0
    )
    assert main(["eval", str(run), "--quiet"]) == 0
    assert "per-patient DSC" in capsys.readouterr().out
    assert attempts == []

    with pytest.raises(OSError, match="offline"):  # the block itself works
        socket.create_connection(("example.org", 80), timeout=1)
