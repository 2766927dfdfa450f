"""Frozen, keyword-only configs whose fields declare their constraints once, checked at construction::

    class SweepConfig(Config):
        depth: int = integer(8, low=1, high=500)
        lrs: tuple[float, ...] = nonempty(positive(), default=(0.01, 0.1))
        activation: str = one_of(*ACTIVATIONS, default="relu")
        seed: int = seed_field()

    SweepConfig(depth=0)               # ValueError: depth must be >= 1; got 0
    constraints(SweepConfig)["depth"]  # Constraint(kind='int', low=1, high=500, ...): explorers read it

Cross-field rules go in ``check(self)``. :func:`derive` builds one config from another's same-named
fields; :class:`Grid` holds a sweep's results on labelled axes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar, dataclass_transform

import numpy as np

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.device import DEVICES

__all__ = [
    "Config",
    "Constraint",
    "Grid",
    "check_config",
    "constraints",
    "declared",
    "derive",
    "device_field",
    "flag",
    "in_range",
    "instance_of",
    "integer",
    "nonempty",
    "one_of",
    "positive",
    "real",
    "seed_field",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Constraint:
    """What values a config field accepts."""

    kind: str  # "int", "float", "choice", "bool", "tuple", "instance" or "any"
    low: float | None = None  # bounds of an int/float (None: unbounded)
    high: float | None = None
    low_open: bool = False  # low is exclusive
    high_open: bool = False  # high is exclusive (floats)
    choices: tuple[Any, ...] = ()  # of a "choice"; of an int/float/tuple: names also accepted
    each: Constraint | None = None  # on every element of a "tuple"
    unique: bool = False  # a "tuple" must not repeat an element
    cls: type | None = None  # of an "instance"
    optional: bool = False  # None is also accepted

    def check(self, name: str, value: Any) -> Any:
        """Return ``value`` (floats as float, sequences as tuple) or raise ValueError/TypeError naming it."""
        if value is None and self.optional:
            return None
        if self.choices and self.kind != "choice":  # a number or a tuple, or one of the names
            if isinstance(value, str) and value in self.choices:
                return value
            try:
                return dataclasses.replace(self, choices=()).check(name, value)
            except (TypeError, ValueError) as error:
                wrong = ValueError if isinstance(value, str) else type(error)  # a wrong name is a bad value
                raise wrong(f"{name} must be {self.describe()}; got {value!r}") from None
        if self.kind == "int":
            return check_int(name, value, self.low, self.high)  # type: ignore[arg-type]
        if self.kind == "float":
            return check_float(
                name, value, self.low, self.high, strict_minimum=self.low_open, strict_maximum=self.high_open
            )
        if self.kind == "choice":
            if all(isinstance(c, str) for c in self.choices):
                return check_choice(name, value, self.choices)
            if value not in self.choices:
                raise ValueError(
                    f"unknown {name} {value!r}; valid choices: {', '.join(map(str, self.choices))}"
                )
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False; got {value!r}")
            return value
        if self.kind == "instance":
            assert self.cls is not None
            if not isinstance(value, self.cls):
                raise TypeError(f"{name} must be a {self.cls.__name__}; got {type(value).__name__}")
            return value
        if self.kind == "tuple":
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise TypeError(f"{name} must be a non-empty sequence; got {type(value).__name__}")
            if len(value) == 0:
                raise ValueError(f"{name} must hold at least one value")
            items = tuple(self.each.check(f"{name}[{i}]", v) if self.each else v for i, v in enumerate(value))
            if self.unique and len(set(items)) != len(items):
                raise ValueError(f"{name} must not repeat a value; got {items}")
            return items
        return value

    def describe(self) -> str:
        """A short human description: "int in [1, 500]", "one of: a, b", ..."""
        if self.kind in ("int", "float"):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            left = "(" if self.low_open or self.low is None else "["
            right = ")" if self.high_open or self.high is None else "]"
            text = f"{self.kind} in {left}{lo}, {hi}{right}"
        elif self.kind == "choice":
            text = "one of: " + ", ".join(map(str, self.choices))
        elif self.kind == "tuple":
            text = "non-empty tuple" + (" of distinct values" if self.unique else "")
            text += f", each {self.each.describe()}" if self.each and self.unique else ""
            text += f" of {self.each.describe()}" if self.each and not self.unique else ""
        elif self.kind == "instance":
            text = f"a {self.cls.__name__ if self.cls else '?'}"
        else:
            text = self.kind
        if self.kind != "choice":  # names accepted besides a number or a tuple
            text += "".join(f" or {name!r}" for name in self.choices)
        return text + (" or None" if self.optional else "")


def _field(default: Any, constraint: Constraint) -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) as a config field's default")
    return dataclasses.field(default=default, metadata={"constraint": constraint})


def _constraint_of(spec: Any) -> Constraint:
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, dataclasses.Field) and "constraint" in spec.metadata:
        return spec.metadata["constraint"]
    raise TypeError(f"expected a field helper such as positive() or a Constraint; got {spec!r}")


def integer(
    default: Any = MISSING, *, low: int | None = None, high: int | None = None, optional: bool = False
):
    """An int (not a bool) within [low, high]."""
    return _field(default, Constraint("int", low, high, optional=optional))


def real(
    default: Any = MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
):
    """A finite number within [low, high] (``low_open``/``high_open``: that end excluded), stored as float."""
    return _field(default, Constraint("float", low, high, low_open, high_open, optional=optional))


def positive(
    default: Any = MISSING,
    *,
    integer: bool = False,
    high: float | None = None,
    names: Sequence[str] = (),
    optional: bool = False,
):
    """A number > 0 (stored as float), or with ``integer=True`` an int >= 1; or one of ``names`` (such as
    "inv_sqrt_depth": a value the run computes)."""
    if integer:
        return _field(default, Constraint("int", 1, high, choices=tuple(names), optional=optional))
    return _field(
        default, Constraint("float", 0.0, high, low_open=True, choices=tuple(names), optional=optional)
    )


def in_range(
    lo: float,
    hi: float,
    *,
    default: Any = MISSING,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
):
    """A number in [lo, hi] (``low_open``/``high_open``: that end excluded); with ``integer=True`` an int."""
    kind = "int" if integer else "float"
    return _field(default, Constraint(kind, lo, hi, low_open and not integer, high_open and not integer))


def one_of(*choices: Any, default: Any = MISSING, optional: bool = False):
    """One of ``choices`` (names, usually); the message lists them."""
    if not choices:
        raise ValueError("one_of needs at least one choice")
    return _field(default, Constraint("choice", choices=tuple(choices), optional=optional))


def nonempty(
    each: Any = None,
    *,
    default: Any = MISSING,
    unique: bool = False,
    names: Sequence[str] = (),
    optional: bool = False,
):
    """A non-empty tuple (any sequence is converted); ``each`` (a field helper) constrains every element; or
    one of ``names`` (such as "all": a set the user of the config expands)."""
    inner = None if each is None else _constraint_of(each)
    return _field(
        default, Constraint("tuple", each=inner, unique=unique, choices=tuple(names), optional=optional)
    )


def declared(constraint: Constraint, *, default: Any = MISSING):
    """A field that accepts what ``constraint`` accepts: a rule declared once beside the code that applies it
    (such as ``vgcourse.monitor.STATS``), shared by the field and that code."""
    return _field(default, constraint)


def flag(default: Any = MISSING):
    """True or False (not 0/1)."""
    return _field(default, Constraint("bool"))


def instance_of(cls: type, *, default: Any = MISSING, optional: bool = False):
    """An instance of ``cls``."""
    return _field(default, Constraint("instance", cls=cls, optional=optional))


def seed_field(default: int = 0):
    """A random seed: an int >= 0."""
    return _field(default, Constraint("int", 0))


def device_field(default: str = "cpu"):
    """A device name: one of ``vgcourse.device.DEVICES`` ("auto", "cpu", "cuda")."""
    return _field(default, Constraint("choice", choices=DEVICES))


@dataclass_transform(
    kw_only_default=True,
    frozen_default=True,
    field_specifiers=(
        dataclasses.field,
        integer,
        real,
        positive,
        in_range,
        one_of,
        nonempty,
        flag,
        instance_of,
    ),
)
class Config:
    """Base of every config: a frozen, keyword-only dataclass whose declared fields are checked and
    normalized (sequences to tuples, reals to float) when built (``replace`` too), then ``check()``."""

    def __init_subclass__(cls, *, kw_only: bool = True, **kwargs: Any) -> None:
        # ``class Cell(Config, kw_only=False)``: a small value-like spec whose fields read naturally in
        # order (a coordinate such as ``Remedy("relu", "he")``); experiment configs stay keyword-only.
        super().__init_subclass__(**kwargs)
        dataclass(frozen=True, kw_only=kw_only)(cls)

    def __post_init__(self) -> None:
        for name, constraint in constraints(type(self)).items():
            value = getattr(self, name)
            checked = constraint.check(name, value)
            if checked is not value:
                object.__setattr__(self, name, checked)
        self.check()

    def check(self) -> None:
        """Rules between fields (override; raise ValueError). The fields are already checked."""


def constraints(config_cls: type) -> dict[str, Constraint]:
    """Each declared field's :class:`Constraint`, in field order (for explorers and contract tests)."""
    return {
        f.name: f.metadata["constraint"] for f in dataclasses.fields(config_cls) if "constraint" in f.metadata
    }


def check_config(config: Any, cls: type[T], name: str = "config") -> T:
    """Return ``config`` if it is a ``cls``, else a TypeError naming ``name`` and both types."""
    if not isinstance(config, cls):
        article = "an" if cls.__name__[:1] in "AEIOU" else "a"
        raise TypeError(f"{name} must be {article} {cls.__name__}; got {type(config).__name__}")
    return config


def derive(target: Callable[..., T], source: Any, **overrides: Any) -> T:
    """``target`` from ``source``'s same-named fields and ``overrides``: ``derive(Point, sweep, lr=0.1)``."""
    names = {f.name for f in dataclasses.fields(target) if f.init}  # type: ignore[arg-type]
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"{getattr(target, '__name__', target)} has no field(s) {', '.join(sorted(unknown))}")
    shared = {f.name: getattr(source, f.name) for f in dataclasses.fields(source) if f.name in names}
    return target(**(shared | overrides))


def geometric_mean(values: Any, axis: int | None = None) -> Any:
    """exp(mean(ln v)) of non-negative values (over ``axis``; a float over all of them by default): 0 if
    one underflowed to 0, inf if one overflowed."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or np.any(array < 0):
        raise ValueError("geometric_mean needs a non-empty array of non-negative values")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.exp(np.mean(np.log(array), axis=axis))
    return float(mean) if axis is None else mean


def relative_error(difference: float, reference: float) -> float:
    """‖a − b‖ / ‖b‖ from the two norms: 0 when both are 0, inf when only the reference is (NaN stays NaN)."""
    if reference:
        return difference / reference
    return 0.0 if difference == 0.0 else math.inf


class GridKeyError(KeyError, ValueError):
    """A coordinate or axis that is not on a Grid: a KeyError (a lookup) and a ValueError (bad input)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _position(axis: str, value: Any, coords: tuple[Any, ...]) -> int:
    for k, c in enumerate(coords):
        if c == value or (
            isinstance(c, float) and isinstance(value, (int, float)) and math.isclose(c, value, rel_tol=1e-12)
        ):
            return k
    raise GridKeyError(f"{axis}={value!r} is not on the grid; {axis} takes: {', '.join(map(str, coords))}")


class Grid:
    """Values on labelled axes: ``Grid(values, name="loss", lr=(0.01, 0.1), seed=(0, 1))``; one dimension
    per axis, in order (trailing dimensions stay unlabelled: a curve per cell)."""

    __slots__ = ("axes", "name", "values")

    values: np.ndarray
    axes: dict[str, tuple[Any, ...]]
    name: str

    def __init__(self, values: Any, *, name: str = "value", **axes: Iterable[Any]) -> None:
        array = np.asarray(values)
        coords = {axis: tuple(c) for axis, c in axes.items()}
        shape = tuple(len(c) for c in coords.values())
        if array.shape[: len(shape)] != shape:
            raise ValueError(f"values of shape {array.shape} do not match the axes' lengths {shape}")
        for axis, c in coords.items():
            if len(set(c)) != len(c):
                raise ValueError(f"axis {axis} repeats a coordinate: {c}")
        array.setflags(write=False)
        object.__setattr__(self, "values", array)
        object.__setattr__(self, "axes", coords)
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("a Grid is read-only")

    def __repr__(self) -> str:
        axes = ", ".join(f"{a}={len(c)}" for a, c in self.axes.items())
        return f"Grid({self.name}: {axes}; shape {self.values.shape})"

    @property
    def dims(self) -> tuple[str, ...]:
        """The axis names, in the order of ``values``' dimensions."""
        return tuple(self.axes)

    def sel(self, **coords: Any) -> Any:
        """The values at the given coordinates: a smaller Grid, or a float when nothing is left."""
        self._check_axes(coords)
        index = tuple(
            _position(axis, coords[axis], c) if axis in coords else slice(None)
            for axis, c in self.axes.items()
        )
        picked = self.values[index]
        rest = {axis: c for axis, c in self.axes.items() if axis not in coords}
        if not rest and np.ndim(picked) == 0:
            if np.issubdtype(self.values.dtype, np.number):
                return float(picked)
            return picked.item() if isinstance(picked, np.generic) else picked  # an object grid's cell
        if not rest:
            return picked
        return Grid(picked, name=self.name, **rest)

    def mean(self, axis: str, *, geometric: bool = False) -> Grid:
        """The mean over one axis (``geometric``: exp of the mean of ln, for ratios), a Grid without it."""
        self._check_axes([axis])
        k = self.dims.index(axis)
        values = geometric_mean(self.values, axis=k) if geometric else self.values.mean(axis=k)
        return Grid(values, name=self.name, **{a: c for a, c in self.axes.items() if a != axis})

    def median(self, axis: str) -> Grid:
        """The median over one axis (seeds, usually), a Grid without it."""
        self._check_axes([axis])
        values = np.median(self.values, axis=self.dims.index(axis))
        return Grid(values, name=self.name, **{a: c for a, c in self.axes.items() if a != axis})

    def _check_axes(self, names: Iterable[str]) -> None:
        """GridKeyError naming any of ``names`` that is not an axis, and the axes."""
        unknown = set(names) - set(self.axes)
        if unknown:
            raise GridKeyError(f"no axis {', '.join(sorted(unknown))}; the axes are: {', '.join(self.axes)}")

    def to_frame(self) -> Any:
        """A pandas DataFrame: one column per axis and one ``name`` column, one row per cell."""
        import pandas as pd

        if self.values.ndim != len(self.axes):
            raise ValueError("to_frame() needs one value per cell; select the trailing dimensions first")
        index = pd.MultiIndex.from_product(list(self.axes.values()), names=list(self.axes))
        return pd.DataFrame({self.name: self.values.reshape(-1)}, index=index).reset_index()
