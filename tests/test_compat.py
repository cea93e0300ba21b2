"""The torchvision shim: smp imports whether or not torchvision's compiled ops match torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from firemap import _compat


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_smp_imports_after_shim_and_shim_reports_what_it_did() -> None:
    plain = _run("import torchvision")
    shimmed = _run(
        "from firemap._compat import ensure_torchvision\n"
        "first = ensure_torchvision()\n"
        "import segmentation_models_pytorch as smp\n"
        "m = smp.Unet('resnet18', encoder_weights=None, in_channels=7, classes=3)\n"
        "print(first, ensure_torchvision(), sum(p.numel() for p in m.parameters()) > 0)"
    )
    assert shimmed.returncode == 0, shimmed.stderr
    first, second, built = shimmed.stdout.split()
    # the shim only acts where plain torchvision fails, and a second call is a no-op
    assert first == str(plain.returncode == 0)
    assert second == "True" and built == "True"


def test_unrelated_torchvision_failure_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def broken(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "torchvision":
            raise RuntimeError("CUDA driver exploded")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ImportError, match="CUDA driver exploded"):
        _compat.ensure_torchvision()
