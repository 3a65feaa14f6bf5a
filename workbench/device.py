"""Where a run computes and in which precision: ``auto`` resolved to what this machine has.

:func:`resolve_device`: ``auto`` is CUDA when there is a GPU, else the CPU.
:func:`resolve_precision`: ``auto`` is bf16 autocast on CUDA, fp32 elsewhere; ``tf32``
(TensorFloat-32 matmuls and convolutions) exists only on CUDA.
"""

from __future__ import annotations

import contextlib

import torch

from workbench.errors import ConfigError

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "autocast_context", "set_tf32"]


def resolve_device(name: str) -> torch.device:
    """``cpu`` | ``cuda`` | ``auto`` (CUDA when there is one) -> a torch device; a one-line
    ConfigError for an unknown name or a missing GPU."""
    if name not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"unknown device {name!r}; choose one of: cpu, cuda, auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere. ``tf32`` (TensorFloat-32 matmuls
    and convolutions) exists only on CUDA: asking for it elsewhere is a ConfigError, as is
    an unknown name."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError(f"precision 'tf32' needs a CUDA device, not {device.type!r}; use fp32 or bf16")
    return precision


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward-pass context of a resolved precision: bf16 autocast, or nothing. TF32 is
    not a context but a global switch: :func:`set_tf32` sets it for the process."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_tf32(enabled: bool) -> None:
    """Let CUDA matmuls and cuDNN convolutions use TensorFloat-32 (or forbid it)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
