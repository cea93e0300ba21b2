"""Every command's --help shows its defaults: the ones Typer adds and the ones written into help texts."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from firemap.cli import app

COMMAND = typer.main.get_command(app)
COMMANDS = COMMAND.commands  # type: ignore[attr-defined]
NAMES = sorted(COMMANDS)


def _help(name: str) -> str:
    result = CliRunner().invoke(app, [name, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # undo the line wrapping


def test_every_command_is_checked() -> None:
    assert {"predict", "info", "label", "indices", "simulate", "train", "finetune", "evaluate", "demo"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_help_shows_every_default(name: str) -> None:
    text = _help(name)
    options = [p for p in COMMANDS[name].params if p.param_type_name == "option" and p.name != "help"]
    shown = 0
    for opt in options:
        written = re.findall(r"\[default: [^\]]*\]", opt.help or "")
        for default in written:  # Rich markup used to eat these ("Tile size .")
            assert default in text, f"--help of {name}: {default!r} of {opt.opts} is missing"
        if opt.default not in (None, False) and not opt.required and not written:
            value = opt.default if not isinstance(opt.default, bool) else opt.opts[0].lstrip("-")
            assert f"[default: {value}]" in text, f"--help of {name}: default of {opt.opts} not shown"
            shown += 1
    assert " ." not in text  # no help text lost its end
    if name == "simulate":
        assert shown >= 5 and "[default: random]" in text  # --landscape


def test_simulate_help_by_hand() -> None:
    text = _help("simulate")
    assert "--size <int> Scene width and height in pixels (32-16384). [default: 512]" in text
    assert "--clouds <str> Cloud cover: none | few | some | many, or a fraction 0-0.9. [default: few]" in text


def test_landscape_help_lists_the_simulators_landscapes() -> None:
    """The CLI's landscape list (kept out of the simulator to spare start-up its cv2/scipy imports) is the registry."""
    from firemap.cli import LANDSCAPES
    from firemap.simulate.landscape import LANDSCAPES as REGISTRY

    assert set(LANDSCAPES) == set(REGISTRY)
