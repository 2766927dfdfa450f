"""Configs at the edges they declare. The contract: every run of every registered chapter, on its small
arguments (tests/small_runs/<chapter>.py) with one declared field at a time set to its lowest accepted
value (or a real field to its highest), either runs or is refused with a ValueError/TypeError naming that
field, never with a torch error, an IndexError or ln 0 from deep inside the run; and a run that runs
returns no NaN or inf where the same run on its small arguments has none, unless its result says what one
means there (see _nonfinite). The other tests pin the rules between fields (refused when the config is
built, naming the field and why) and the runs at their highest sizes that such runs needed.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
import re
from typing import Any

import numpy as np
import pytest
import small_runs
import torch

from vgcourse.chapters import chapter, chapter_ids, has_module
from vgcourse.config import Config, Constraint, Grid, constraints
from vgcourse.experiments import detecting_and_fixing as df
from vgcourse.experiments import initialization as init
from vgcourse.experiments import linear_chain as lc
from vgcourse.experiments import normalization_and_optimizers as no
from vgcourse.experiments import residual_networks as rn
from vgcourse.experiments import sigmoid_bound as sb

# ----------------------------------------------------------------------------------------------------
# Every run at each field's lowest accepted value, and at the highest of each real field, runs (to numbers
# its result explains), or its config refuses the value naming the field. The highest values of int fields
# are sizes (depth, width, steps): all of them take several minutes (measured once: about 150 s, and 9 min
# for the three runs of 100,000 steps), too slow for a test; a real field's value costs no work.


def _lowest(constraint: Constraint) -> Any:
    """The lowest value ``constraint`` accepts (just above an open bound); None when unbounded below."""
    if constraint.kind == "tuple" and constraint.each is not None:
        low = _lowest(constraint.each)
        return None if low is None else (low,)
    if constraint.kind not in ("int", "float") or constraint.low is None:
        return None
    if constraint.kind == "int":
        return int(constraint.low)
    low = float(constraint.low)
    return max(math.nextafter(low, math.inf), low + 1e-12) if constraint.low_open else low


def _highest_real(constraint: Constraint) -> Any:
    """The highest value a real ``constraint`` accepts (just below an open bound); None when unbounded above
    or not real."""
    if constraint.kind == "tuple" and constraint.each is not None:
        high = _highest_real(constraint.each)
        return None if high is None else (high,)
    if constraint.kind != "float" or constraint.high is None:
        return None
    high = float(constraint.high)
    return min(math.nextafter(high, -math.inf), high - 1e-12) if constraint.high_open else high


def _edge_configs(config: Any, edge: Any) -> list[tuple[str, Any]]:
    """(field, ``config`` with that field at ``edge(constraint)``, or the error refusing it)."""
    out = []
    for name, constraint in constraints(type(config)).items():
        value = edge(constraint)
        if value is None or value == getattr(config, name):
            continue
        try:
            out.append((name, dataclasses.replace(config, **{name: value})))
        except (ValueError, TypeError) as error:
            out.append((name, error))
    return out


_NAN = re.compile(r"\bnan\b", re.IGNORECASE)
_INF = re.compile(r"\binf(inite|inity)?\b", re.IGNORECASE)


@functools.cache
def _documented(cls: type) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """What a result class says may be non-finite: ("nan"/"inf" its docstring names for every field, and
    per field those its comment names, as in ``accuracy: np.ndarray  # final accuracy; NaN: diverged``, on
    its line or on the comment lines right above it)."""

    def kinds(text: str) -> frozenset[str]:
        return frozenset(k for k, pattern in (("nan", _NAN), ("inf", _INF)) if pattern.search(text))

    fields: dict[str, frozenset[str]] = {}
    for base in reversed(cls.__mro__[:-1]):
        try:
            lines = inspect.getsource(base).splitlines()
        except (OSError, TypeError):
            continue
        above = ""
        for line in lines:  # the class body's lines (4 spaces in)
            comment = re.match(r"    #(.*)$", line)
            if comment:
                above += comment[1]
                continue
            field = re.match(r"    (\w+):[^#]*(?:#(.*))?$", line)
            if field:
                fields[field[1]] = kinds(above + (field[2] or ""))
            above = ""
    return kinds(cls.__doc__ or ""), fields


def _nonfinite(
    value: Any, path: str = "result", allowed: frozenset[str] = frozenset(), *, explain: bool = True
) -> dict[str, Any]:
    """{path: a non-finite value} over ``value``'s numbers (dataclass fields, dicts, sequences, arrays,
    tensors, floats; configs skipped). With ``explain``, only those its result does not explain: the class
    docstring or the field's comment names NaN or inf (_documented), or a dataclass reports ``diverged``
    (its numbers may then be anything)."""
    if isinstance(value, Config):
        return {}
    if isinstance(value, Grid):
        value = value.values
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if explain and np.any(getattr(value, "diverged", False)):
            allowed = frozenset({"nan", "inf"})
        everywhere, fields = _documented(type(value)) if explain else (frozenset(), {})
        found: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            said = allowed | everywhere | fields.get(f.name, frozenset())
            found |= _nonfinite(getattr(value, f.name), f"{path}.{f.name}", said, explain=explain)
        return found
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object):
        items = enumerate(value)
    else:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().double().numpy() if value.is_floating_point() else None
        array = np.asarray(value) if isinstance(value, (float, np.floating, np.ndarray)) else None
        if array is None or not np.issubdtype(array.dtype, np.floating):
            return {}
        bad = array[(np.isnan(array) & ("nan" not in allowed)) | (np.isinf(array) & ("inf" not in allowed))]
        return {path: float(bad.flat[0])} if bad.size else {}
    found = {}
    for key, item in items:
        found |= _nonfinite(item, f"{path}[{key!r}]", allowed, explain=explain)
    return found


def _unexplained(result: Any, small_result: Any) -> dict[str, Any]:
    """Non-finite numbers of ``result`` that its result does not explain, at paths (any key or index) where
    ``small_result`` has only finite ones."""

    def anywhere(path: str) -> str:
        return re.sub(r"\[[^\]]*\]", "[*]", path)

    before = {anywhere(path) for path in _nonfinite(small_result, explain=False)}
    return {path: v for path, v in _nonfinite(result).items() if anywhere(path) not in before}


EDGES = {"lowest": _lowest, "highest_real": _highest_real}


def _edge_cases() -> list[Any]:
    """(chapter, edge) of every chapter with experiments whose small arguments have a field to set at that
    edge: a chapter with no real field bounded above (most) has no highest_real case, rather than one that
    passes having tried nothing."""
    cases = []
    for chapter_id in (c for c in chapter_ids() if has_module(c, "experiments")):
        try:
            runs = small_runs.load(chapter_id).SMALL_RUNS.values()
        except pytest.fail.Exception:  # no tests/small_runs/<chapter>.py yet: each case says so when run
            runs = None
        configs = [arguments[0] if isinstance(arguments, list) else arguments for arguments in runs or ()]
        for label, edge in EDGES.items():
            if runs is None or any(_edge_configs(config, edge) for config in configs):
                cases.append(pytest.param(chapter_id, edge, id=f"{chapter_id}-{label}"))
    return cases


EDGE_CASES = _edge_cases()


def test_the_edge_contract_finds_fields_at_both_edges() -> None:
    # every chapter has a size bounded below, and a few a real field bounded above: a search that finds
    # none (a constraint no longer keeping its bounds) would leave the contract below with nothing to try
    found = {label: [p.values[0] for p in EDGE_CASES if p.id.endswith(f"-{label}")] for label in EDGES}
    assert found["lowest"] == [c for c in chapter_ids() if has_module(c, "experiments")], found
    assert len(found["highest_real"]) >= 3, found


@pytest.mark.parametrize(("chapter_id", "edge"), EDGE_CASES)
def test_every_run_runs_or_refuses_naming_the_field_at_each_edge(chapter_id: str, edge: Any) -> None:
    module = importlib.import_module(chapter(chapter_id).module("experiments"))
    small = small_runs.load(chapter_id).SMALL_RUNS
    failures = []
    for run_name, arguments in small.items():
        run = getattr(module, run_name)
        small_result = None
        single = arguments[0] if isinstance(arguments, list) else arguments  # a run of a list of configs
        for name, config in _edge_configs(single, edge):
            if isinstance(config, Exception):
                if name not in str(config):
                    failures.append(f"{chapter_id}.{run_name}: {name} refused without naming it: {config}")
                continue
            at = f"{chapter_id}.{run_name}: {name}={getattr(config, name)}"
            try:
                result = run([config] if isinstance(arguments, list) else config)
            except (ValueError, TypeError) as error:
                if name not in str(error):
                    failures.append(f"{at}: {type(error).__name__}: {error}")
                continue
            except Exception as error:  # what the contract forbids: any other failure
                failures.append(f"{at}: {type(error).__name__}: {error}")
                continue
            small_result = run(arguments) if small_result is None else small_result
            for path, value in _unexplained(result, small_result).items():
                failures.append(
                    f"{at} returns {value} at {path}, finite on its small arguments; the result does not say"
                    " what non-finite means there"
                )
    assert not failures, "\n".join(failures)


@dataclasses.dataclass(frozen=True)
class _Toy:
    """A result of no run."""

    loss: float  # the final loss
    # the final accuracy
    # (NaN when no example was seen)
    accuracy: float
    steps: np.ndarray  # steps to the target; inf: never
    grid: Grid
    per_run: dict[str, Any]
    diverged: bool = False


@dataclasses.dataclass(frozen=True)
class _ToyWithNan:
    """A result whose numbers may all be NaN."""

    loss: float


def test_the_non_finite_walk_excuses_only_what_the_result_says() -> None:
    # the rules the edge contract applies (today's runs at their edges need none of them: this pins them)
    nan, inf = math.nan, math.inf
    per_run = {"a": [torch.tensor([0.0, nan])], "b": (1.0, np.float64(-inf))}
    toy = _Toy(nan, nan, np.array([1.0, inf]), Grid([1.0, inf], seed=(0, 1)), per_run)
    unexplained = {"result.loss", "result.grid", "result.per_run['a'][0]", "result.per_run['b'][1]"}
    assert set(_nonfinite(toy, explain=False)) == unexplained | {"result.accuracy", "result.steps"}
    assert set(_nonfinite(toy)) == unexplained  # the comments on a field's line and above it say which
    other_kinds = dataclasses.replace(toy, accuracy=inf, steps=np.array([nan]))
    assert set(_nonfinite(other_kinds)) == unexplained | {"result.accuracy", "result.steps"}
    assert not _nonfinite(dataclasses.replace(toy, diverged=True))
    assert not _nonfinite(_ToyWithNan(nan)) and set(_nonfinite(_ToyWithNan(inf))) == {"result.loss"}
    # compared with the small run: only where it is finite, at any key or index
    small = dataclasses.replace(toy, loss=1.0, grid=Grid([1.0, 2.0], seed=(0, 1)), per_run={"c": [nan]})
    assert set(_unexplained(toy, small)) == {"result.loss", "result.grid"}


# ----------------------------------------------------------------------------------------------------
# The rules between fields that the runs at their edges needed


BN_CELL = df.Remedy("relu", "he", skip=True, norm="batch")
LN_CELL = df.Remedy("relu", "he", skip=True, norm="layer")
SMALL_GRID = {"blocks": 1, "steps": 1, "eval_every": 1}


@pytest.mark.parametrize("grid", [df.MonitoredRemediesConfig, df.RobustRemediesConfig])
def test_remedy_grids_refuse_a_batch_of_one_with_a_batch_norm_cell(grid: Any) -> None:
    for remedies in [(df.BASELINE, BN_CELL), None]:  # the designs hold batch-norm cells
        with pytest.raises(ValueError, match="batch_size must be >= 2 with batch norm"):
            grid(remedies=remedies, batch_size=1)
    assert grid(remedies=(df.BASELINE, LN_CELL), batch_size=1).batch_size == 1


@pytest.mark.parametrize("grid", [df.MonitoredRemediesConfig, df.RobustRemediesConfig])
def test_remedy_grids_refuse_one_unit_with_a_layer_norm_cell(grid: Any) -> None:
    with pytest.raises(ValueError, match="width must be >= 2 with layer norm"):
        grid(remedies=(df.BASELINE, LN_CELL), width=1)
    assert grid(remedies=(df.BASELINE, BN_CELL), width=1).width == 1
    with pytest.raises(ValueError, match="width must be >= 2 with layer norm"):
        df.RemedyDiagnosisConfig(norm="layer", width=1)
    assert df.RemedyDiagnosisConfig(norm="batch", width=1).width == 1


def test_the_smallest_accepted_remedy_grid_with_both_norms_trains() -> None:
    config = df.RobustRemediesConfig(
        remedies=(BN_CELL, LN_CELL), width=2, batch_size=2, lrs=(0.01,), seeds=(0,), **SMALL_GRID
    )
    result = df.run_robust_remedies(config)
    assert all(math.isfinite(float(cell.grad_ratio[0])) for cell in result.cells.values())


def test_degradation_refuses_a_batch_of_one_with_batch_norm_and_one_unit_with_layer_norm() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 2 with batch norm"):
        rn.DegradationConfig(batch_size=1)
    assert rn.DegradationConfig(norm=None, batch_size=1).batch_size == 1
    with pytest.raises(ValueError, match="width must be >= 2 with layer norm"):
        rn.DegradationConfig(norm="layer", width=1)


@pytest.mark.parametrize(
    "config",
    [rn.ForwardVarianceConfig, rn.StreamDepthSweepConfig, rn.PlacementConfig, rn.ShatteredConfig],
)
def test_residual_sweeps_refuse_one_unit_with_a_layer_norm_network(config: Any) -> None:
    layer_norm = rn.NetworkSpec(norm="layer")
    with pytest.raises(ValueError, match="width must be >= 2 with layer norm"):
        config(networks=(rn.NetworkSpec(norm="batch"), layer_norm), width=1)
    assert config(networks=(rn.NetworkSpec(norm="batch"),), width=1).width == 1
    with pytest.raises(ValueError, match="width must be >= 2 with layer norm"):
        rn.BlockProfileConfig(network=layer_norm, width=1)


@pytest.mark.parametrize(
    ("dtypes", "factor", "stored"),
    [
        (("float16",), 1e-12, "0"),
        (("float32",), 1e300, "inf"),
        (("bfloat16",), 1.001, "1"),
        (lc.DTYPES, 1.0, "1"),
    ],
)
def test_float_limits_refuse_a_factor_a_format_stores_as_0_1_or_inf(
    dtypes: tuple[str, ...], factor: float, stored: str
) -> None:
    with pytest.raises(ValueError, match=rf"factors must be stored as neither 0, 1 nor inf .* as {stored}$"):
        lc.FloatLimitsConfig(dtypes=dtypes, factors=(0.5, factor))
    assert lc.FloatLimitsConfig(dtypes=("float64",), factors=(1e-12, 1e300, 1.001)).factors[0] == 1e-12


def test_deep_training_names_steps_when_the_tail_is_longer_than_the_run() -> None:
    with pytest.raises(ValueError, match=r"tail .* must be <= steps; got 50 > 1"):
        init.DeepTrainingConfig(steps=1)
    assert init.DeepTrainingConfig(steps=1, tail=1).tail == 1


def test_mnist_declares_a_spread_of_two_examples_and_momentum_below_1() -> None:
    with pytest.raises(ValueError, match="snapshot_size must be >= 2"):  # a std over one example is NaN
        sb.MnistConfig(snapshot_size=1)
    momentum = constraints(sb.MnistConfig)["momentum"]  # what an explorer's control reads
    assert (momentum.high, momentum.high_open) == (1.0, True)
    with pytest.raises(ValueError, match=r"momentum must be < 1\.0"):
        sb.MnistConfig(momentum=1.0)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")  # ln 0 in the profile
def test_batch_size_growth_reports_a_backward_signal_that_left_float32() -> None:
    # width 2, batch norm over 2 examples: ‖∂J/∂h_l‖ underflows to exactly 0 within 40 layers (was: 'math
    # domain error' from ln 0)
    config = no.BatchSizeConfig(
        norms=("batch",), activations=("relu",), batch_sizes=(2,), depth=40, width=2, n_seeds=1
    )
    with pytest.raises(ValueError, match="backward signal leaves float32's range at depth 40, width 2"):
        no.run_batch_size_growth(config)


def test_init_gradients_check_the_bound_where_the_envelope_is_in_float64_at_the_highest_depth() -> None:
    # at depth 1000 the envelope ∏_{k>l} ‖W_k‖_2 / 4 underflows to 0 near the input, where the ratio is 0 too:
    # bound_slack was 0/0 = NaN
    depth = constraints(sb.InitGradientConfig)["depth"].high
    result = sb.run_init_gradients(sb.InitGradientConfig(depth=depth, width=8, batch_size=8))
    assert (result.envelope == 0).any() and np.all(result.ratio[result.envelope == 0] == 0)
    assert 0 < result.bound_slack <= 1


def test_variance_predictions_say_they_left_float64_at_the_highest_depth() -> None:
    depth = constraints(init.VarianceConfig)["depth"].high
    config = init.VarianceConfig(
        scheme="naive", activation="tanh", depth=depth, width=8, batch_size=8, seeds=(0,)
    )
    result = init.run_variance_profile(config)
    overflowed = {"result.linear.activation_var", "result.linear.grad_var"}  # the linear regime's prediction
    assert set(_nonfinite(result, explain=False)) == overflowed
    assert not _nonfinite(result)  # their fields say inf / NaN beyond float64's range


def test_norm_growth_keeps_the_decay_factor_positive_and_names_steps_when_w_reaches_0() -> None:
    # lr λ >= 1 wiped or flipped W each step, and beyond 2 the equilibrium √(2 lr λ − (lr λ)²) was the root
    # of a negative number ('math domain error')
    with pytest.raises(ValueError, match=r"lr × weight_decays must be < 1; got 1 × 3"):
        no.NormGrowthConfig(weight_decays=(0.0, 3.0))
    assert no.NormGrowthConfig(lr=0.5, weight_decays=(1.9,)).weight_decays == (1.9,)
    # width 2 over batches of 2: batch norm's output barely depends on W, whose gradient vanishes; the decay
    # then shrinks ‖W‖ to 0 within 2000 steps (was a ZeroDivisionError)
    config = no.NormGrowthConfig(width=2, weight_decays=(0.9,), steps=2000, batch_size=2)
    with pytest.raises(ValueError, match=r"‖W‖ reached 0 in float64 after step \d+: try fewer steps"):
        no.run_norm_growth(config)


def test_width_sweep_names_max_depth_and_scale_when_the_gradient_leaves_float64() -> None:
    # at width 4 the norm's square underflows near depth 2,800 (the declared highest is 10,000); ln 0 was the
    # mean's −inf and the std's NaN
    for changed in [{"max_depth": 3000}, {"max_depth": 3, "scale": 1e-200}]:
        config = lc.WidthSweepConfig(widths=(4,), n_seeds=2, **changed)
        with pytest.raises(ValueError, match=r"leaves float64's range at width 4, scale .* within max_depth"):
            lc.run_width_sweep(config)


def test_block_profile_says_where_the_signal_left_the_float_range_at_the_highest_depth() -> None:
    depth = constraints(rn.BlockProfileConfig)["depth"].high
    result = rn.run_block_profile(rn.BlockProfileConfig(depth=depth, width=8, batch_size=8))
    assert np.isinf(result.stream.second_moment).any() and math.isnan(result.stream.loss)  # E[x_l²] doubles
    assert not _nonfinite(result)  # StreamPass and BlockProfileResult say so
