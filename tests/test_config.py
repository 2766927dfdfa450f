"""The Config base: declared constraints, frozen and keyword-only configs, derive, and the labelled Grid."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from vgcourse.config import (
    Config,
    Grid,
    check_config,
    constraints,
    derive,
    device_field,
    flag,
    in_range,
    instance_of,
    integer,
    nonempty,
    one_of,
    positive,
    real,
    relative_error,
    seed_field,
)


class Sweep(Config):
    depth: int = integer(8, low=1, high=500)
    lr: float = positive(0.1)
    width: int = positive(16, integer=True)
    momentum: float = in_range(0.0, 1.0, default=0.9)
    shift: float = real(0.0)
    clip: float | None = positive(None, optional=True)
    scale: float | str | None = positive(None, names=("inv_sqrt_depth",), optional=True)  # a number or a name
    activation: str = one_of("relu", "tanh", default="relu")
    lrs: tuple[float, ...] = nonempty(positive(), default=(0.01, 0.1))
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1), unique=True)
    skip: bool = flag(True)
    spec: object = instance_of(object, default=None, optional=True)
    seed: int = seed_field()
    device: str = device_field()

    def check(self) -> None:
        if self.width < self.depth // 100:
            raise ValueError("width must be at least depth / 100")


class Point(Config):
    depth: int = integer(1, low=1)
    lr: float = positive(1.0)
    seed: int = seed_field()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"depth": 0}, ValueError, "depth must be >= 1; got 0"),
        ({"depth": 501}, ValueError, "depth must be <= 500"),
        ({"depth": 2.0}, TypeError, "depth must be an integer"),
        ({"depth": True}, TypeError, "depth must be an integer"),
        ({"lr": 0.0}, ValueError, "lr must be > 0.0"),
        ({"lr": float("nan")}, ValueError, "lr must be finite"),
        ({"lr": "0.1"}, TypeError, "lr must be a number"),
        ({"width": 0}, ValueError, "width must be >= 1"),
        ({"momentum": 1.5}, ValueError, "momentum must be <= 1.0"),
        ({"momentum": -0.1}, ValueError, "momentum must be >= 0.0"),
        ({"shift": float("inf")}, ValueError, "shift must be finite"),
        ({"clip": -1.0}, ValueError, "clip must be > 0.0"),
        ({"activation": "gelu"}, ValueError, "valid choices: relu, tanh"),
        ({"activation": 3}, TypeError, "activation must be a string, one of: relu, tanh"),
        ({"lrs": ()}, ValueError, "lrs must hold at least one value"),
        ({"lrs": "0.1"}, TypeError, "lrs must be a non-empty sequence"),
        ({"lrs": (0.1, -1.0)}, ValueError, r"lrs\[1\] must be > 0.0"),
        ({"seeds": (0, 0)}, ValueError, "seeds must not repeat a value"),
        ({"seeds": (0, -1)}, ValueError, r"seeds\[1\] must be >= 0"),
        ({"skip": 1}, TypeError, "skip must be True or False"),
        ({"spec": None, "seed": -1}, ValueError, "seed must be >= 0"),
        ({"device": "tpu"}, ValueError, "valid choices: auto, cpu, cuda"),
        ({"depth": 500, "width": 4}, ValueError, "width must be at least depth / 100"),
    ],
)
def test_every_constraint_rejects_bad_input_with_its_message(kwargs, error, message):
    with pytest.raises(error, match=message):
        Sweep(**kwargs)


NUMBER_OR_NAME = r"scale must be float in \(0, inf\) or 'inv_sqrt_depth' or None; got "


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        ("inv_sqrt", ValueError),  # a wrong name
        ("1", ValueError),
        ([1.0], TypeError),
        (True, TypeError),
    ],
)
def test_a_number_that_also_accepts_names_refuses_the_rest_naming_every_choice(value, error):
    with pytest.raises(error, match=NUMBER_OR_NAME + re.escape(repr(value))):
        Sweep(scale=value)


def test_a_number_that_also_accepts_names_keeps_them():
    assert Sweep(scale="inv_sqrt_depth").scale == "inv_sqrt_depth"
    assert Sweep(scale=2).scale == 2.0 and isinstance(Sweep(scale=2).scale, float)
    assert Sweep(scale=None).scale is None
    assert constraints(Sweep)["scale"].choices == ("inv_sqrt_depth",)


@pytest.mark.parametrize("config", ["NetworkSpec", "DegradationConfig"])
@pytest.mark.parametrize("value", [0, -1, "inv_sqrt", [1.0]])
def test_residual_branch_scale_is_declared_and_refuses_bad_values_naming_the_field(config, value):
    from vgcourse.experiments import residual_networks as rn

    cls = getattr(rn, config)
    assert constraints(cls)["branch_scale"].describe() == "float in (0, inf) or 'inv_sqrt_depth' or None"
    with pytest.raises((ValueError, TypeError), match=r"branch_scale must be .* or 'inv_sqrt_depth' or None"):
        cls(branch_scale=value)
    assert cls(branch_scale="inv_sqrt_depth").branch_scale == "inv_sqrt_depth"
    assert cls(branch_scale=0.5).branch_scale == 0.5


def test_a_tuple_with_names_accepts_a_name_or_a_tuple_and_lists_both_when_refusing():
    class Watch(Config):
        stats: str | tuple[str, ...] = nonempty(one_of("a", "b"), default="all", names=("all",))

    declared = constraints(Watch)["stats"]
    assert declared.describe() == "non-empty tuple of one of: a, b or 'all'"
    assert Watch().stats == "all" and Watch(stats=["b"]).stats == ("b",)
    for bad, error in (("a", ValueError), (("c",), ValueError), ((), ValueError), (3, TypeError)):
        with pytest.raises(error, match=r"stats must be non-empty tuple of one of: a, b or 'all'; got "):
            Watch(stats=bad)


def test_instance_of_names_the_type():
    class Holder(Config):
        point: Point = instance_of(Point, default=Point())

    with pytest.raises(TypeError, match="point must be a Point; got int"):
        Holder(point=3)


def test_values_are_normalized_and_defaults_valid():
    config = Sweep(lrs=[1, 2], lr=1, clip=None)
    assert config.lrs == (1.0, 2.0) and all(isinstance(v, float) for v in config.lrs)
    assert isinstance(config.lr, float)
    assert Sweep() == Sweep()
    assert hash(Sweep()) == hash(Sweep())


def test_configs_are_frozen_and_keyword_only():
    config = Sweep()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.depth = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Sweep(8)  # type: ignore[misc]
    assert dataclasses.replace(config, depth=9).depth == 9
    with pytest.raises(ValueError, match="depth must be >= 1"):
        dataclasses.replace(config, depth=0)


def test_a_value_like_spec_may_opt_out_of_keyword_only():
    class Cell(Config, kw_only=False):
        activation: str = one_of("relu", "tanh", default="relu")
        skip: bool = flag(False)

    assert Cell("tanh", True) == Cell(activation="tanh", skip=True)
    with pytest.raises(TypeError, match="skip must be True or False"):
        Cell("tanh", 1)


def test_mutable_defaults_are_refused():
    with pytest.raises(TypeError, match="use a tuple"):
        nonempty(default=[1, 2])


def test_constraints_are_readable():
    table = constraints(Sweep)
    assert list(table)[:3] == ["depth", "lr", "width"]
    assert (table["depth"].low, table["depth"].high) == (1, 500)
    assert table["activation"].choices == ("relu", "tanh")
    assert table["lr"].low_open and table["lr"].describe() == "float in (0, inf)"
    assert table["clip"].describe().endswith("or None")
    assert table["lrs"].each is not None and table["lrs"].each.kind == "float"


def test_open_upper_ends_exclude_the_bound():
    class Betas(Config):
        beta: float = real(0.9, low=0.0, high=1.0, high_open=True)
        share: float = in_range(0.0, 1.0, default=0.5, low_open=True, high_open=True)

    assert Betas(beta=0.999).beta == 0.999
    with pytest.raises(ValueError, match=r"beta must be < 1\.0; got 1\.0"):
        Betas(beta=1.0)
    with pytest.raises(ValueError, match=r"share must be < 1\.0"):
        Betas(share=1.0)
    with pytest.raises(ValueError, match=r"share must be > 0\.0"):
        Betas(share=0.0)
    assert constraints(Betas)["beta"].describe() == "float in [0, 1)"
    assert constraints(Betas)["share"].describe() == "float in (0, 1)"


def test_derive_copies_shared_fields_then_overrides():
    sweep = Sweep(depth=12, lr=0.5, seed=3)
    assert derive(Point, sweep) == Point(depth=12, lr=0.5, seed=3)
    assert derive(Point, sweep, lr=0.2).lr == 0.2
    with pytest.raises(TypeError, match="has no field"):
        derive(Point, sweep, width=3)
    with pytest.raises(ValueError, match=r"lr must be > 0\.0"):
        derive(Point, sweep, lr=-1.0)


def test_check_config_names_the_expected_class():
    point = Point()
    assert check_config(point, Point) is point
    with pytest.raises(TypeError, match="config must be a Point; got Sweep"):
        check_config(Sweep(), Point)


def test_grid_selects_by_coordinate_and_to_frame():
    values = np.arange(12.0).reshape(2, 3, 2)
    grid = Grid(values[..., 0], name="loss", lr=(0.01, 0.1), seed=(0, 1, 2))
    assert grid.dims == ("lr", "seed")
    assert grid.sel(lr=0.1, seed=2) == 10.0
    row = grid.sel(lr=0.01)
    assert isinstance(row, Grid) and row.dims == ("seed",)
    np.testing.assert_array_equal(row.values, [0.0, 2.0, 4.0])
    assert grid.sel(lr=0.1 * (1 + 1e-14), seed=0) == 6.0  # float coordinates match to rounding
    frame = grid.to_frame()
    assert list(frame.columns) == ["lr", "seed", "loss"]
    assert len(frame) == 6 and frame.loc[(frame.lr == 0.1) & (frame.seed == 1), "loss"].item() == 8.0
    with pytest.raises(ValueError, match=r"lr takes: 0\.01, 0\.1"):
        grid.sel(lr=0.5)
    with pytest.raises(KeyError, match="the axes are: lr, seed"):
        grid.sel(depth=1)
    with pytest.raises(AttributeError):
        grid.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        grid.values[0, 0] = 1.0


def test_grid_mean_over_an_axis():
    grid = Grid(np.array([[1.0, 4.0], [2.0, 8.0]]), name="ratio", lr=(0.1, 0.2), seed=(0, 1))
    mean = grid.mean("seed")
    assert mean.dims == ("lr",) and mean.name == "ratio"
    np.testing.assert_allclose(mean.values, [2.5, 5.0])
    assert grid.mean("seed", geometric=True).sel(lr=0.2) == pytest.approx(4.0)
    assert grid.mean("lr").sel(seed=1) == 6.0
    with pytest.raises(KeyError, match="the axes are: lr, seed"):
        grid.mean("depth")


def test_grid_median_over_an_axis():
    grid = Grid(np.array([[1.0, 4.0, 9.0], [2.0, 8.0, 3.0]]), name="ratio", lr=(0.1, 0.2), seed=(0, 1, 2))
    median = grid.median("seed")
    assert median.dims == ("lr",) and median.name == "ratio"
    assert median.sel(lr=0.1) == 4.0 and median.sel(lr=0.2) == 3.0
    with pytest.raises(KeyError, match="the axes are: lr, seed"):
        grid.median("depth")


def test_grid_keeps_trailing_dimensions_and_checks_shapes():
    curves = Grid(np.zeros((2, 5)), lr=(0.1, 0.2))
    assert curves.sel(lr=0.2).shape == (5,)
    with pytest.raises(ValueError, match="select the trailing"):
        curves.to_frame()
    with pytest.raises(ValueError, match="do not match"):
        Grid(np.zeros(3), lr=(0.1, 0.2))
    with pytest.raises(ValueError, match="repeats"):
        Grid(np.zeros(2), lr=(0.1, 0.1))


def test_relative_error_reads_0_over_0_as_agreement_and_x_over_0_as_infinite():
    assert relative_error(1.0, 4.0) == 0.25 and relative_error(0.0, 4.0) == 0.0
    assert relative_error(0.0, 0.0) == 0.0 and relative_error(1e-30, 0.0) == math.inf
    assert math.isnan(relative_error(math.nan, 1.0)) and math.isnan(relative_error(1.0, math.nan))
