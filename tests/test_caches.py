"""The package's process-wide caches: a value a cache keeps is never handed out to be changed. A cache of a
mutable value (a model, a data set's tensors, a result's arrays) gives every caller its own copy
(``vgcourse._cache.copied_cache``), so changing what one call returned changes no later call's result."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import types
import typing
from pathlib import Path

import numpy as np
import torch

from vgcourse._cache import copied_cache

PACKAGE = Path(__file__).resolve().parents[1] / "vgcourse"
IMMUTABLE = (int, float, str, bool, bytes, type(None))


def test_copied_cache_runs_once_per_arguments_and_hands_out_equal_copies() -> None:
    calls = []

    @copied_cache(maxsize=4)
    def make(n: int) -> dict[str, np.ndarray]:
        calls.append(n)
        return {"values": np.arange(n, dtype=float)}

    first = make(3)
    first["values"][:] = -1.0  # a caller writes into what it got
    first["extra"] = np.zeros(1)
    again = make(3)
    assert calls == [3] and make.cache_info().hits == 1  # type: ignore[attr-defined]
    assert again.keys() == {"values"} and np.array_equal(again["values"], [0.0, 1.0, 2.0])
    assert again["values"] is not make(3)["values"]
    make.cache_clear()  # type: ignore[attr-defined]
    make(3)
    assert calls == [3, 3]


def _caches() -> list[tuple[str, str, str]]:
    """(module, function, decorator) of every function of the package with a functools or copied cache."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                name = ast.unparse(decorator.func if isinstance(decorator, ast.Call) else decorator)
                if name.rpartition(".")[2] in ("cache", "lru_cache", "copied_cache"):
                    found.append((module, node.name, name.rpartition(".")[2]))
    return found


def _immutable(hint: object) -> bool:
    """Whether a value of type ``hint`` cannot be changed in place: numbers, strings, None, tuples and unions
    of them, frozen dataclasses of them."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType, tuple):
        return all(_immutable(arg) for arg in typing.get_args(hint) if arg is not Ellipsis)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        fields = typing.get_type_hints(hint)
        frozen = hint.__dataclass_params__.frozen  # type: ignore[attr-defined]
        return frozen and all(_immutable(fields[f.name]) for f in dataclasses.fields(hint))
    return hint in IMMUTABLE


def test_every_cache_of_the_package_keeps_immutable_values_or_hands_out_copies() -> None:
    caches = _caches()
    assert len(caches) >= 9, caches  # the audit of issue 14 found nine; fewer means the search broke
    shared = []
    for module_name, name, decorator in caches:
        function = getattr(importlib.import_module(module_name), name, None)
        assert function is not None and hasattr(function, "cache_clear"), (
            f"{module_name}.{name}: a cache must be a module-level function (tests clear every cache by its "
            "cache_clear)"
        )
        returns = typing.get_type_hints(function.__wrapped__)["return"]
        if decorator != "copied_cache" and not _immutable(returns):
            shared.append(f"{module_name}.{name} -> {returns}")
    assert not shared, (
        f"caches handing every caller the same mutable value: {shared}; use vgcourse._cache.copied_cache"
    )


def test_shared_digits_hands_each_caller_its_own_tensors() -> None:
    from vgcourse.data import digits, shared_digits

    seed = 9  # a split no run uses: a cache spoiled by a failure here spoils nothing else
    fields = ("x_train", "y_train", "x_val", "y_val")
    got = shared_digits(seed)
    for field in fields:
        getattr(got, field).zero_()  # a caller writes into what it got
    again, fresh = shared_digits(seed), digits(seed=seed)
    for field in fields:
        assert torch.equal(getattr(again, field), getattr(fresh, field)), field


def test_run_warmup_hands_each_caller_its_own_trained_models() -> None:
    from vgcourse.experiments.transformers import WarmupConfig, run_warmup

    # a small config of its own (data_seed): a cache spoiled by a failure here spoils no other test
    config = WarmupConfig(
        variants=("Post-LN", "Pre-LN"), lrs=(0.01,), seeds=(0,), n_layers=1, d_model=8, n_heads=2,
        steps=4, batch_size=4, n_train=16, n_val=4, eval_every=2, data_seed=17,
    )  # fmt: skip
    first = run_warmup(config)
    trained = {key: {k: v.clone() for k, v in m.state_dict().items()} for key, m in first.models.items()}
    for model in first.models.values():  # a learner trains the returned networks further
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
    again = run_warmup(config)
    assert again.models.keys() == trained.keys()
    for key, model in again.models.items():
        assert model is not first.models[key]
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in trained[key].items()), key
    np.testing.assert_array_equal(again.loss.values, first.loss.values)


def test_dying_explorer_keeps_no_result_a_learner_changed() -> None:
    from vgcourse.experiments.relu_dying_units import run_dying
    from vgcourse.explorers.relu_dying_units import dying_explorer

    explorer = dying_explorer()
    setting = {"lr": 0.2, "bias_init": 0.75}  # a setting no other test shows: a spoiled cache spoils nothing
    explorer.update(**setting)
    assert explorer.result is not None
    explorer.result.dead_frac[:] = 0.5  # a learner writes into the explorer's result
    explorer.result.layer_names.append("extra")
    explorer.update(lr=0.3)
    explorer.update(**setting)  # back to the setting: its run comes from the cache
    fresh = run_dying(explorer.make_config(**explorer.values()))
    assert explorer.result.layer_names == fresh.layer_names
    np.testing.assert_array_equal(explorer.result.dead_frac, fresh.dead_frac)
