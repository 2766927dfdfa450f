"""`vgcourse profile`: per-layer statistics as a table or JSON; invalid values exit 2 naming the choices."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vgcourse.cli import main
from vgcourse.models import ARCHS, named_layers
from vgcourse.profiling import profile, standard_batch

LAYER_KEYS = {"name", "grad_norm", "grad_std", "act_std", "dead_frac", "saturated_frac"}


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["profile", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_mlp_json_lists_layers_input_to_output(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--arch", "mlp", "--depth", "4", "--width", "16")
    names = [layer["name"] for layer in data["layers"]]
    assert names == ["layer 1", "layer 2", "layer 3", "layer 4", "output"]
    assert all(LAYER_KEYS <= set(layer) for layer in data["layers"])
    assert data["steps"] == []


def test_json_grad_norms_equal_autograd(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--depth", "3", "--width", "8", "--seed", "3")
    result = profile(depth=3, width=8, seed=3)
    torch.manual_seed(3)
    from vgcourse.models import build_model

    model = build_model("mlp", in_features=64, out_features=10, depth=3, width=8)
    x, y = standard_batch("mlp", 1, 128, 3)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    expected = [module.weight.grad.norm().item() for _, module in named_layers(model)]
    measured = [layer["grad_norm"] for layer in data["layers"]]
    assert measured == pytest.approx(expected, rel=1e-5)
    assert [layer.grad_norm for layer in result.layers] == pytest.approx(expected, rel=1e-5)


def test_deep_sigmoid_profile_shows_vanishing(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--depth", "10", "--width", "32", "--activation", "sigmoid")
    norms = [layer["grad_norm"] for layer in data["layers"]]
    assert norms[0] < 1e-3 * norms[-2], "layer 1 should get a thousand times less gradient than layer 10"
    assert all(layer["dead_frac"] is None for layer in data["layers"]), "sigmoid units are never 'dead'"


def test_relu_profile_reports_dead_fraction(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys, "--depth", "3", "--width", "16", "--activation", "relu", "--init", "kaiming_normal"
    )
    hidden = data["layers"][:-1]
    assert all(0.0 <= layer["dead_frac"] <= 1.0 for layer in hidden)
    assert all(layer["saturated_frac"] is None for layer in hidden)


@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm"])
def test_sequence_models_report_one_gradient_per_time_step(
    arch: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "--arch", arch, "--depth", "1", "--width", "16", "--seq-len", "12")
    assert [s["t"] for s in data["steps"]] == list(range(12))
    norms = [s["grad_norm"] for s in data["steps"]]
    assert all(math.isfinite(g) and g >= 0 for g in norms)
    assert norms[-1] > norms[0], "the last input is closest to the loss"


def test_resmlp_with_norm(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--arch", "resmlp", "--depth", "3", "--width", "16", "--norm", "layer")
    assert data["layers"][0]["name"] == "input" and data["layers"][-1]["name"] == "output"
    assert data["norm"] == "layer"


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--depth", "2", "--width", "8"]) == 0
    out = capsys.readouterr().out
    assert "layer 1" in out and "layer 2" in out and "output" in out and "grad_norm" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "cnn"], "invalid choice: 'cnn'"),
        (["--activation", "swish"], "invalid choice: 'swish'"),
        (["--init", "lecun"], "invalid choice: 'lecun'"),
        (["--norm", "group", "--arch", "resmlp"], "invalid choice: 'group'"),
        (["--depth", "0"], "expected a positive integer"),
        (["--width", "-3"], "expected a positive integer"),
        (["--depth", "ten"], "expected a positive integer"),
        (["--seq-len", "0"], "expected a positive integer"),
        (["--seed", "-1"], "expected an integer >= 0"),
        (["--norm", "batch"], "--norm is only available with --arch resmlp"),
    ],
)
def test_invalid_values_exit_2_with_the_choices(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if "invalid choice" in message and "--arch" in args:
        assert all(arch in err for arch in ARCHS)


def test_no_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    # refused for the missing command: main([]) parses [], not the running process's own arguments
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"arch": "transformer"}, ValueError, "unknown arch 'transformer'; valid choices: mlp, resmlp"),
        ({"depth": 0}, ValueError, "depth must be >= 1"),
        ({"width": 2.5}, TypeError, "width must be an integer"),
        ({"activation": "softmax"}, ValueError, "unknown activation 'softmax'; valid choices: identity"),
        ({"init": "normal"}, ValueError, "unknown init 'normal'; valid choices: default, xavier_uniform"),
        ({"norm": "batch", "arch": "mlp"}, ValueError, "norm applies only to arch 'resmlp'"),
        ({"norm": "group", "arch": "resmlp"}, ValueError, "unknown norm 'group'; valid choices: batch"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seq_len": 0}, ValueError, "seq_len must be >= 1"),
        ({"batch_size": 1}, ValueError, "batch_size must be >= 2"),
    ],
)
def test_profile_function_validates(kwargs: dict, error: type[Exception], message: str) -> None:
    # the message names the argument (and the valid choices): an error raised further in for another
    # reason ("scheme 'normal' needs std" from the initializer) is no check of the argument
    with pytest.raises(error, match=re.escape(message)):
        profile(**kwargs)


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vgcourse", "profile", "--depth", "2", "--width", "4", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert len(json.loads(out)["layers"]) == 3


def _notebook(path: Path) -> Path:
    path.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    return path


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["grade", "{nb}", "--roster", "{tmp}/no_roster.csv", "--out", "{tmp}/g.csv"], "no_roster.csv"),
        (["grade", "{nb}", "--out", "{tmp}/no_folder/g.csv"], "no_folder"),
        (["grade", "{nb}", "--out", "{tmp}"], "Is a directory"),
        (["export-otter", "--chapter", "initialization", "--out", "{nb}", "--no-assign"], "File exists"),
        (["diagnose", "--depth", "2", "--width", "4", "--plot", "{tmp}/report.xyz"], "'xyz'"),
        (["diagnose", "--depth", "2", "--width", "4", "--plot", "{tmp}/no_folder/r.png"], "no_folder"),
    ],
)
def test_a_file_that_cannot_be_read_or_written_exits_2_naming_it(
    command: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a missing roster, an output folder that does not exist or is a file, a figure format matplotlib
    # cannot write: a message and exit status 2, not a traceback (and diagnose checks --plot before its run)
    nb = _notebook(tmp_path / "student.ipynb")
    args = [arg.format(nb=nb, tmp=tmp_path) for arg in command]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
