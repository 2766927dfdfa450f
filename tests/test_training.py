"""Tests for vgcourse.training: the config, the loop's records, clipping, divergence, determinism."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math

import numpy as np
import pytest
import torch
from torch import nn

from vgcourse.config import constraints
from vgcourse.data import DataSplit, adding_problem, circles
from vgcourse.monitor import DEFAULT_STATS, HISTOGRAMS, METRICS
from vgcourse.training import (
    SGDW,
    Callback,
    EvalEvent,
    History,
    StepEvent,
    StepSizes,
    StopTraining,
    TrainConfig,
    evaluate,
    loss_value,
    train,
)

has_monitor = importlib.util.find_spec("vgcourse.monitor") is not None
needs_monitor = pytest.mark.skipif(not has_monitor, reason="vgcourse.monitor is not written yet")


def _mlp(in_features: int = 2, out_features: int = 2, width: int = 16, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(in_features, width),
        nn.Tanh(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, out_features),
    )


class _Recurrent(nn.Module):
    """(N, T, F) -> (N, out) from the last hidden state, like SequenceModel."""

    def __init__(self, cell: type[nn.RNNBase], in_features: int, out_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.rnn = cell(in_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


@pytest.fixture(scope="module")
def small_circles() -> DataSplit:
    return circles(n_samples=400, seed=0)


def _regression(n: int = 64, scale: float = 10.0) -> DataSplit:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n + 16, 2, generator=g), scale * torch.randn(n + 16, 1, generator=g)
    return DataSplit("toy-regression", x[:n], y[:n], x[n:], y[n:], None)


class _StepGrads(Callback):
    """Every parameter gradient the optimizer used at each step (after clipping): the gradients stay in
    place until the next step's zero_grad, so on_step still sees them."""

    def __init__(self) -> None:
        self.seen: list[list[torch.Tensor]] = []

    def on_step(self, event: StepEvent) -> None:
        params = [p for group in event.optimizer.param_groups for p in group["params"]]
        self.seen.append([p.grad.clone() for p in params])


class _Everything:
    """Records every event (a plain object with both methods: no Callback base needed)."""

    def __init__(self) -> None:
        self.steps: list[StepEvent] = []
        self.evals: list[EvalEvent] = []
        self.lrs: list[float] = []
        self.weights: list[torch.Tensor] = []

    def on_step(self, event: StepEvent) -> None:
        self.steps.append(event)
        self.lrs.append(event.optimizer.param_groups[0]["lr"])
        self.weights.append(next(event.model.parameters()).detach().clone())

    def on_eval(self, event: EvalEvent) -> None:
        self.evals.append(event)


def test_learns_circles_and_records_every_step(small_circles):
    config = TrainConfig(epochs=15, batch_size=32, lr=0.3, optimizer="momentum", monitor_every=None)
    history = train(_mlp(), small_circles, config)
    steps = 15 * (small_circles.n_train // 32)
    assert isinstance(history, History) and not history.diverged and history.diverged_step is None
    assert history.steps_run == steps and "finished" in history.message
    for name in ("loss", "train_accuracy", "grad_norm_total"):
        assert getattr(history, name).shape == (steps,) and getattr(history, name).dtype == np.float64
    assert history.eval_steps.tolist() == list(range(9, steps, 10))  # once per epoch of 10 steps
    assert len(history.val_loss) == len(history.val_accuracy) == 15
    assert history.final_val_accuracy > 0.9 and history.final_loss < history.loss[0]
    assert history.monitor is None and np.all(history.grad_norm_total > 0)


def test_eval_every_and_last_step(small_circles):
    history = train(_mlp(), small_circles, TrainConfig(steps=25, eval_every=10, monitor_every=None))
    assert history.eval_steps.tolist() == [9, 19, 24]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_each_optimizer_lowers_the_loss(small_circles, optimizer):
    lr = 0.01 if optimizer == "adam" else 0.2
    config = TrainConfig(steps=60, lr=lr, optimizer=optimizer, weight_decay=1e-4, monitor_every=None)
    history = train(_mlp(), small_circles, config)
    assert history.loss[-10:].mean() < history.loss[:10].mean()


def test_regression_sequence_model_on_adding_problem():
    data = adding_problem(n_samples=200, seq_len=10)
    history = train(
        _Recurrent(nn.GRU, 2, 1), data, TrainConfig(steps=40, lr=0.01, optimizer="adam", monitor_every=None)
    )
    assert np.isnan(history.train_accuracy).all() and np.isnan(history.val_accuracy).all()
    assert np.isfinite(history.loss).all() and history.val_loss[-1] < 0.3
    assert math.isnan(history.final_val_accuracy)


def _recall(n: int = 200, lag: int = 3, symbols: int = 4) -> DataSplit:
    """Recall the one-hot symbol of step 0 after ``lag`` blank steps (a "go" channel marks the last)."""
    y = torch.randint(0, symbols, (n,), generator=torch.Generator().manual_seed(0))
    x = torch.zeros(n, lag + 1, symbols + 1)
    x[torch.arange(n), 0, y] = 1.0
    x[:, -1, symbols] = 1.0
    k = n * 4 // 5
    return DataSplit("recall", x[:k], y[:k], x[k:], y[k:], symbols)


def test_classification_sequence_model_on_recall_task():
    data = _recall()
    history = train(
        _Recurrent(nn.LSTM, 5, 4), data, TrainConfig(steps=30, lr=0.01, optimizer="adam", monitor_every=None)
    )
    assert history.steps_run == 30 and 0.0 <= history.final_val_accuracy <= 1.0


def test_mse_on_class_labels_uses_one_hot_targets(small_circles):
    history = train(_mlp(), small_circles, TrainConfig(steps=20, loss="mse", monitor_every=None))
    assert np.isfinite(history.loss).all() and history.loss[0] < 2.0


def test_huge_learning_rate_diverges_and_keeps_history():
    config = TrainConfig(steps=200, lr=10.0, batch_size=16, monitor_every=None)
    history = train(_mlp(out_features=1), _regression(), config)
    assert history.diverged and history.diverged_step is not None
    assert history.steps_run == history.diverged_step + 1 < 200
    for name in ("loss", "train_accuracy", "grad_norm_total"):
        assert len(getattr(history, name)) == history.steps_run
    assert not (math.isfinite(history.loss[-1]) and math.isfinite(history.grad_norm_total[-1]))
    assert np.isfinite(history.loss[:-1]).all() and "diverged at step" in history.message


def test_normal_run_on_the_same_data_does_not_diverge():
    history = train(
        _mlp(out_features=1),
        _regression(),
        TrainConfig(steps=100, lr=1e-3, batch_size=16, monitor_every=None),
    )
    assert not history.diverged and history.steps_run == 100 and np.isfinite(history.loss).all()


def test_clip_norm_bounds_the_total_norm():
    recorder = _StepGrads()
    history = train(
        _mlp(out_features=1),
        _regression(),
        TrainConfig(steps=20, lr=1e-3, clip_norm=0.5, monitor_every=None),
        callbacks=[recorder],
    )
    clipped = np.array([torch.cat([g.flatten() for g in grads]).norm().item() for grads in recorder.seen])
    assert len(clipped) == 20 and np.all(clipped <= 0.5 * (1 + 1e-5))
    active = history.grad_norm_total > 0.5
    assert active.any() and np.allclose(clipped[active], 0.5, rtol=1e-5)
    assert np.allclose(clipped[~active], history.grad_norm_total[~active], rtol=1e-5)


def test_clip_value_bounds_every_entry():
    recorder = _StepGrads()
    train(
        _mlp(out_features=1),
        _regression(),
        TrainConfig(steps=20, lr=1e-3, clip_value=0.05, monitor_every=None),
        callbacks=[recorder],
    )
    largest = [max(g.abs().max().item() for g in grads) for grads in recorder.seen]
    bound = float(np.float32(0.05))  # the gradients are float32
    assert len(largest) == 20 and max(largest) <= bound and min(largest) == bound


def test_grad_norm_total_is_measured_before_clipping():
    recorder = _StepGrads()
    history = train(
        _mlp(out_features=1),
        _regression(),
        TrainConfig(steps=3, clip_norm=1e-3, monitor_every=None),
        callbacks=[recorder],
    )
    assert np.all(history.grad_norm_total > 1e-2) and len(recorder.seen) == 3
    assert all(torch.cat([g.flatten() for g in grads]).norm() <= 1e-3 * (1 + 1e-5) for grads in recorder.seen)


def test_same_seed_identical_losses_other_seed_differs(small_circles):
    def run(seed):
        return train(_mlp(), small_circles, TrainConfig(steps=30, seed=seed, monitor_every=None)).loss

    first, second, other = run(0), run(0), run(1)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_batch_larger_than_the_data_uses_all_of_it():
    data = _regression(n=10)
    history = train(
        _mlp(out_features=1), data, TrainConfig(epochs=3, batch_size=64, lr=1e-3, monitor_every=None)
    )
    assert history.steps_run == 3 and history.eval_steps.tolist() == [0, 1, 2]


def test_progress_bar_runs(small_circles, capsys):
    train(_mlp(), small_circles, TrainConfig(steps=3, progress=True, monitor_every=None))
    assert "3/3" in capsys.readouterr().err


def test_evaluate_matches_a_direct_computation(small_circles):
    model = _mlp()
    model.train()
    loss, accuracy = evaluate(model, small_circles.x_val, small_circles.y_val, batch_size=7)
    with torch.no_grad():
        output = model(small_circles.x_val)
    assert loss == pytest.approx(nn.functional.cross_entropy(output, small_circles.y_val).item(), rel=1e-5)
    assert accuracy == pytest.approx((output.argmax(1) == small_circles.y_val).float().mean().item())
    assert model.training


def test_evaluate_regression_and_mse_on_labels(small_circles):
    data = _regression()
    model = _mlp(out_features=1)
    loss, accuracy = evaluate(model, data.x_val, data.y_val, batch_size=5)
    with torch.no_grad():
        expected = nn.functional.mse_loss(model(data.x_val), data.y_val).item()
    assert loss == pytest.approx(expected, rel=1e-5) and math.isnan(accuracy)
    model = _mlp()
    loss, _ = evaluate(model, small_circles.x_val, small_circles.y_val, loss="mse", batch_size=9)
    with torch.no_grad():
        target = nn.functional.one_hot(small_circles.y_val, 2).float()
        expected = nn.functional.mse_loss(model(small_circles.x_val), target).item()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_empty_history_properties_are_nan():
    empty = np.zeros(0)
    history = History(empty, empty, empty, empty, empty, None, empty, False, None, "", 0)
    assert math.isnan(history.final_loss) and math.isnan(history.final_val_accuracy)
    with pytest.raises(dataclasses.FrozenInstanceError):  # a result, as every experiment's is
        history.diverged = True


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "exactly one of steps and epochs"),
        ({"steps": 10, "epochs": 1}, ValueError, "exactly one of steps and epochs"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.0}, TypeError, "steps"),
        ({"epochs": -1}, ValueError, "epochs"),
        ({"steps": 1, "batch_size": 0}, ValueError, "batch_size"),
        ({"steps": 1, "lr": -0.1}, ValueError, "lr"),
        ({"steps": 1, "lr": 0.0}, ValueError, "lr"),
        ({"steps": 1, "lr": float("inf")}, ValueError, "lr"),
        ({"steps": 1, "lr": "0.1"}, TypeError, "lr"),
        ({"steps": 1, "optimizer": "rmsprop"}, ValueError, "sgd, momentum, adam"),
        ({"steps": 1, "loss": "hinge"}, ValueError, "auto, cross_entropy, mse"),
        ({"steps": 1, "momentum": 1.0}, ValueError, "momentum"),
        ({"steps": 1, "momentum": -0.5}, ValueError, "momentum"),
        ({"steps": 1, "weight_decay": -1e-4}, ValueError, "weight_decay"),
        ({"steps": 1, "clip_norm": 0.0}, ValueError, "clip_norm"),
        ({"steps": 1, "clip_norm": -1.0}, ValueError, "clip_norm"),
        ({"steps": 1, "clip_value": 0}, ValueError, "clip_value"),
        (
            {"steps": 1, "clip_norm": 1.0, "clip_value": 1.0},
            ValueError,
            "at most one of clip_norm and clip_value",
        ),
        ({"steps": 1, "monitor_every": 0}, ValueError, "monitor_every"),
        ({"steps": 1, "eval_every": -1}, ValueError, "eval_every"),
        ({"steps": 1, "warmup_steps": -1}, ValueError, "warmup_steps"),
        ({"steps": 1, "warmup_steps": 2.0}, TypeError, "warmup_steps"),
        ({"steps": 1, "seed": -1}, ValueError, "seed"),
        ({"steps": 1, "device": "tpu"}, ValueError, "auto, cpu, cuda"),
        ({"steps": 1, "progress": "yes"}, TypeError, "progress"),
    ],
)
def test_config_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kwargs)


def test_train_bad_input(small_circles):
    config = TrainConfig(steps=1, monitor_every=None)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        train("model", small_circles, config)
    with pytest.raises(TypeError, match="DataSplit"):
        train(_mlp(), [small_circles.x_train, small_circles.y_train], config)
    with pytest.raises(TypeError, match="TrainConfig"):
        train(_mlp(), small_circles, {"steps": 1})
    with pytest.raises(ValueError, match="cross_entropy"):
        train(
            _mlp(out_features=1),
            _regression(),
            TrainConfig(steps=1, loss="cross_entropy", monitor_every=None),
        )
    with pytest.raises(ValueError, match="does not match target"):
        train(_mlp(out_features=3), _regression(), config)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(nn.Sequential(nn.Tanh()), small_circles, config)


def test_evaluate_bad_input(small_circles):
    x, y = small_circles.x_val, small_circles.y_val
    with pytest.raises(TypeError):
        evaluate("model", x, y)
    with pytest.raises(TypeError):
        evaluate(_mlp(), x.numpy(), y)
    with pytest.raises(ValueError, match="same"):
        evaluate(_mlp(), x, y[:-1])
    with pytest.raises(ValueError, match="auto, cross_entropy, mse"):
        evaluate(_mlp(), x, y, loss="l1")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(_mlp(), x, y, batch_size=0)


@needs_monitor
def test_monitor_record_has_one_row_per_recorded_step(small_circles):
    config = TrainConfig(steps=10, monitor_every=3, monitor_stats=(*DEFAULT_STATS, "update_ratio"))
    history = train(_mlp(), small_circles, config)
    record = history.monitor
    assert record is not None
    assert record.steps.tolist() == [0, 3, 6, 9]
    assert len(record.layer_names) == 3
    assert record.grad_norm.shape == (4, 3) and record.update_ratio.shape == (4, 3)
    assert np.isfinite(record.update_ratio).all()


@needs_monitor
def test_monitor_on_a_diverged_run_keeps_the_diverged_step():
    config = TrainConfig(steps=200, lr=10.0, batch_size=16, monitor_stats=(*DEFAULT_STATS, "update_ratio"))
    history = train(_mlp(out_features=1), _regression(), config)
    assert history.diverged and history.diverged_step == history.steps_run - 1 > 0
    assert history.monitor.steps.tolist() == list(range(history.steps_run))
    assert np.isnan(history.monitor.update_ratio[-1]).all()
    assert np.isfinite(history.monitor.update_ratio[0]).all()


@needs_monitor
def test_monitor_does_not_change_the_run(small_circles):
    with_monitor = train(_mlp(), small_circles, TrainConfig(steps=15, monitor_every=1))
    without = train(_mlp(), small_circles, TrainConfig(steps=15, monitor_every=None))
    assert np.array_equal(with_monitor.loss, without.loss)


has_models = importlib.util.find_spec("vgcourse.models") is not None


@pytest.mark.skipif(not (has_models and has_monitor), reason="vgcourse.models or vgcourse.monitor missing")
@pytest.mark.parametrize(
    ("arch", "dataset", "layers"),
    [
        ("mlp", "circles", ["layer 1", "layer 2", "output"]),
        ("resmlp", "circles", ["input", "block 1 fc1", "block 1 fc2", "output"]),
        ("gru", "recall", None),
    ],
)
def test_course_models_train_with_the_monitor(arch, dataset, layers):
    from vgcourse.models import build_model

    data = circles(n_samples=200) if dataset == "circles" else _recall()
    depth = 1 if arch != "mlp" else 2
    torch.manual_seed(0)
    model = build_model(arch, in_features=data.in_features, out_features=data.n_classes, depth=depth, width=8)
    history = train(model, data, TrainConfig(steps=6, monitor_every=2, lr=0.05))
    record = history.monitor
    assert not history.diverged and record.steps.tolist() == [0, 2, 4]
    if layers is not None:
        assert record.layer_names == layers
    assert record.grad_norm.shape == (3, len(record.layer_names))
    assert np.isfinite(record.grad_norm).all()


def test_loss_value_is_cross_entropy_on_labels_and_mse_on_one_hot() -> None:
    from vgcourse.training import loss_value

    output = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 2])
    expected_ce = nn.functional.cross_entropy(output, labels)
    assert torch.equal(loss_value(output, labels, "cross_entropy"), expected_ce)
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.equal(loss_value(output, labels, "mse"), nn.functional.mse_loss(output, one_hot))
    assert torch.equal(loss_value(output, labels, "mse", reduction="sum"), ((output - one_hot) ** 2).sum())
    with pytest.raises(ValueError, match="integer class labels"):
        loss_value(output, one_hot, "cross_entropy")
    with pytest.raises(ValueError, match="does not match"):
        loss_value(output, torch.zeros(2, 4), "mse")


@pytest.mark.parametrize(
    ("loss", "error"), [("auto", ValueError), ("crossentropy", ValueError), (None, TypeError)]
)
def test_loss_value_refuses_a_loss_it_does_not_compute(loss: object, error: type[Exception]) -> None:
    # "auto" and a misspelt name were computed as MSE on one-hot targets, silently
    output, labels = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]), torch.tensor([0, 2])
    with pytest.raises(error, match="cross_entropy, mse"):
        loss_value(output, labels, loss)  # type: ignore[arg-type]


def test_sgdw_shrinks_then_steps_per_group() -> None:
    w, b, unused = (nn.Parameter(torch.tensor([2.0, -4.0], dtype=torch.float64)) for _ in range(3))
    w.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    b.grad = torch.tensor([0.5, 0.5], dtype=torch.float64)
    SGDW([{"params": [w, unused], "lr": 0.1, "weight_decay": 0.5}, {"params": [b]}], lr=0.2).step()
    assert w.tolist() == [(1 - 0.05) * 2.0 - 0.1, (1 - 0.05) * -4.0 - 0.1]  # p ← (1 − lr λ) p − lr g
    assert b.tolist() == [2.0 - 0.2 * 0.5, -4.0 - 0.2 * 0.5]  # the second group: lr 0.2, no decay
    assert unused.tolist() == [2.0, -4.0]  # no gradient: no step and no decay
    reference = nn.Parameter(torch.tensor([2.0, -4.0], dtype=torch.float64))
    reference.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    torch.optim.SGD([reference], lr=0.1, weight_decay=0.5).step()
    torch.testing.assert_close(reference.detach(), w.detach())  # the L2 step, up to rounding


def test_make_optimizer_follows_the_config() -> None:
    from vgcourse.training import make_optimizer

    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    sgd = make_optimizer(model, TrainConfig(steps=1, optimizer="sgd", lr=0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.0
    assert sum(len(group["params"]) for group in sgd.param_groups) == 3  # the frozen weight is left out
    momentum = make_optimizer(
        model, TrainConfig(steps=1, optimizer="momentum", momentum=0.8, weight_decay=1e-4)
    )
    assert momentum.defaults["momentum"] == 0.8 and momentum.defaults["weight_decay"] == 1e-4
    assert isinstance(
        make_optimizer(model, TrainConfig(steps=1, optimizer="adam", lr=1e-3)), torch.optim.Adam
    )
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(model, TrainConfig(steps=1))


def test_warmup_raises_the_lr_linearly_then_holds(small_circles):
    recorder = _Everything()
    history = train(
        _mlp(),
        small_circles,
        TrainConfig(steps=6, lr=0.2, warmup_steps=4, monitor_every=None),
        callbacks=[recorder],
    )
    assert np.allclose(recorder.lrs, [0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    plain = train(_mlp(), small_circles, TrainConfig(steps=6, lr=0.2, monitor_every=None))
    assert history.loss[0] == plain.loss[0] and not np.array_equal(history.loss[1:], plain.loss[1:])


def test_warmup_scales_a_given_optimizers_own_rates(small_circles):
    # was: every group's lr set to config.lr * min(1, (s + 1) / warmup_steps), here 100 times the given 0.001
    model = _mlp()
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
    optimizer = torch.optim.SGD([{"params": first, "lr": 0.001}, {"params": rest, "lr": 0.004}])
    seen: list[list[float]] = []

    class Rates(Callback):
        def on_step(self, event: StepEvent) -> None:
            seen.append([group["lr"] for group in event.optimizer.param_groups])

    config = TrainConfig(steps=4, lr=0.1, warmup_steps=2, monitor_every=None)
    train(model, small_circles, config, optimizer=optimizer, callbacks=[Rates()])
    assert np.allclose(seen, [[0.0005, 0.002], [0.001, 0.004], [0.001, 0.004], [0.001, 0.004]])
    stopped = torch.optim.SGD(model.parameters(), lr=0.001)  # a run stopped in its warmup
    train(model, small_circles, dataclasses.replace(config, steps=1), optimizer=stopped)
    assert stopped.param_groups[0]["lr"] == 0.001  # left at its own rate, not at the warmup's half of it


def test_warmup_matches_a_hand_written_loop(small_circles):
    config = TrainConfig(steps=5, lr=0.3, warmup_steps=3, batch_size=400, monitor_every=None)
    model, reference = _mlp(), _mlp()
    train(model, small_circles, config)
    x, y = small_circles.x_train, small_circles.y_train
    for step in range(5):
        reference.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.3 * min(1.0, (step + 1) / 3) * p.grad
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_callbacks_see_every_step_and_evaluation_and_change_nothing(small_circles):
    recorder, model = _Everything(), _mlp()
    config = TrainConfig(steps=12, eval_every=5, monitor_every=None)
    history = train(model, small_circles, config, callbacks=(recorder,))
    assert [e.step for e in recorder.steps] == list(range(12))
    assert np.array_equal([e.loss for e in recorder.steps], history.loss)
    assert np.array_equal([e.grad_norm for e in recorder.steps], history.grad_norm_total)
    assert all(e.model is model for e in recorder.steps + recorder.evals)
    assert torch.equal(recorder.weights[-1], next(model.parameters()))  # seen after the update
    assert not torch.equal(recorder.weights[0], recorder.weights[-1])
    assert [e.step for e in recorder.evals] == list(history.eval_steps) == [4, 9, 11]
    assert np.array_equal([e.val_loss for e in recorder.evals], history.val_loss)
    assert np.array_equal([e.val_accuracy for e in recorder.evals], history.val_accuracy)
    plain = train(_mlp(), small_circles, config)
    assert np.array_equal(plain.loss, history.loss) and np.array_equal(plain.val_loss, history.val_loss)


def test_step_sizes_records_one_step_every_k(small_circles):
    class Gradients(Callback):  # plain SGD: the step is -lr g
        def __init__(self) -> None:
            self.seen: list[list[float]] = []

        def on_backward(self, event: StepEvent) -> None:
            self.seen.append([float((0.1 * p.grad).std()) for p in event.model.parameters()])

    model, gradients = _mlp(), Gradients()
    sizes = StepSizes(model.parameters(), every=3)
    train(
        model, small_circles, TrainConfig(steps=8, lr=0.1, monitor_every=None), callbacks=[gradients, sizes]
    )
    assert len(sizes.rows) == 3  # steps 0, 3, 6
    np.testing.assert_allclose(sizes.rows, [gradients.seen[k] for k in (0, 3, 6)], rtol=1e-4)
    with pytest.raises(ValueError, match="every"):
        StepSizes(model.parameters(), every=0)


def test_callbacks_run_in_order_and_skip_a_diverged_step():
    calls: list[tuple[str, int]] = []

    class Named(Callback):
        def __init__(self, name: str) -> None:
            self.name = name

        def on_step(self, event: StepEvent) -> None:
            calls.append((self.name, event.step))

    history = train(
        _mlp(out_features=1),
        _regression(scale=1e3),
        TrainConfig(steps=50, lr=10.0, monitor_every=None),
        callbacks=[Named("a"), Named("b")],
    )
    assert history.diverged and history.diverged_step is not None
    assert calls == [(n, s) for s in range(history.diverged_step) for n in ("a", "b")]


def test_a_run_that_does_not_stop_on_divergence_reports_where_it_began():
    data = _regression(scale=1e3)
    config = TrainConfig(steps=50, lr=10.0, monitor_every=None)
    stopped = train(_mlp(out_features=1), data, config)
    going = train(_mlp(out_features=1), data, dataclasses.replace(config, stop_on_divergence=False))
    assert going.steps_run == 50 and going.diverged and going.diverged_step == stopped.diverged_step
    assert np.array_equal(going.loss[: stopped.steps_run], stopped.loss)
    assert f"NaN or inf from step {stopped.diverged_step}" in going.message


def test_callbacks_bad_input(small_circles):
    config = TrainConfig(steps=1, monitor_every=None)
    with pytest.raises(TypeError, match="on_step"):
        train(_mlp(), small_circles, config, callbacks=[object()])
    with pytest.raises(TypeError, match="sequence of callbacks"):
        train(_mlp(), small_circles, config, callbacks=_Everything())


def test_fixed_batch_with_a_loss_fn_an_optimizer_and_a_monitor(small_circles):
    from vgcourse.monitor import GradientMonitor

    x, y = small_circles.x_train[:64], small_circles.y_train[:64]
    model = _mlp()
    model.eval()  # a fixed batch is a probe of the model as it is: its mode stays
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    monitor = GradientMonitor(model, optimizer, stats=("grad_norm",))
    config = TrainConfig(steps=5, monitor_every=None)
    history = train(
        model, (x, y), config, loss_fn=nn.CrossEntropyLoss(), optimizer=optimizer, monitor=monitor
    )
    assert not model.training and history.steps_run == 5 and len(history.eval_steps) == 0
    assert np.isnan(history.train_accuracy).all() and history.monitor.grad_norm.shape == (5, 3)
    reference = _mlp()  # the same steps written out by hand
    by_hand = torch.optim.SGD(reference.parameters(), lr=0.2, momentum=0.5)
    losses = []
    for _ in range(5):
        by_hand.zero_grad()
        loss = nn.functional.cross_entropy(reference(x), y)
        loss.backward()
        by_hand.step()
        losses.append(loss.item())
    assert np.array_equal(history.loss, losses)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    named = train(_mlp(), (x, y), TrainConfig(steps=3, monitor_every=None))  # config.loss on a fixed batch
    assert np.isfinite(named.train_accuracy).all() and named.monitor is None
    other = torch.optim.SGD(_mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="monitor must watch"):
        train(model, (x, y), config, optimizer=optimizer, monitor=GradientMonitor(model, other))
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        train(model, (x, y), config, optimizer="sgd")
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        train(model, (x, y), config, loss_fn="mse")


def test_a_batch_source_trains_like_the_loop_it_replaces(small_circles):
    x, y = small_circles.x_train, small_circles.y_train

    def sampler(seed: int):
        generator = torch.Generator().manual_seed(seed)
        return lambda step: (lambda idx: (x[idx], y[idx]))(
            torch.randint(0, len(x), (32,), generator=generator)
        )

    by_hand, losses = _mlp(), []
    optimizer = torch.optim.SGD(by_hand.parameters(), lr=0.1, momentum=0.9)
    batches = sampler(1)
    for step in range(8):
        xb, yb = batches(step)
        loss = nn.functional.cross_entropy(by_hand(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model = _mlp()
    config = TrainConfig(steps=8, loss="cross_entropy", monitor_every=None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = train(model, sampler(1), config, optimizer=optimizer)
    assert np.array_equal(history.loss, losses) and np.isfinite(history.train_accuracy).all()
    for p, q in zip(model.parameters(), by_hand.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="batch source needs a loss_fn"):
        train(_mlp(), sampler(1), TrainConfig(steps=1, monitor_every=None))


class _LossReader(torch.optim.SGD):
    """SGD that keeps what ``closure()`` returns at each step (the stacked trainers' optimizers read it)."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.read: list[torch.Tensor] = []

    def step(self, closure=None):
        self.read.append(closure().detach().clone())
        return super().step()


class _StackedLinear(nn.Module):
    """M linear maps without bias stacked on dim 0: (M, N, d) @ (M, d, 1)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.weight)


def test_the_optimizer_reads_each_steps_loss_from_its_closure_one_per_run_with_runs(small_circles):
    x, y = small_circles.x_train[:64], small_circles.y_train[:64]
    config = TrainConfig(steps=4, monitor_every=None)
    optimizer = _LossReader((model := _mlp()).parameters(), lr=0.1)
    history = train(model, (x, y), config, optimizer=optimizer)
    assert np.array_equal(history.loss, [float(loss) for loss in optimizer.read])  # the loss just computed
    # three linear models stacked on dim 0, each on its own targets: L = the sum of the runs' mean squares
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(3, 32, 2, generator=g), torch.randn(3, 32, 1, generator=g)
    start = torch.randn(3, 2, 1, generator=g)
    stacked = _StackedLinear(start)

    def run_losses(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target).pow(2).mean(dim=(1, 2))

    optimizer = _LossReader(stacked.parameters(), lr=0.1)
    history = train(stacked, (xs, ys), config, loss_fn=run_losses, optimizer=optimizer, runs=3)
    assert [tuple(loss.shape) for loss in optimizer.read] == [(3,)] * 4
    assert np.array_equal(history.loss, [float(loss.sum()) for loss in optimizer.read])
    for run in range(3):  # each run trained on its own loss alone: the same weights and losses
        alone = nn.Linear(2, 1, bias=False)
        alone.weight.data = start[run].T.clone()
        own = _LossReader(alone.parameters(), lr=0.1)
        train(alone, (xs[run], ys[run]), config, loss_fn=nn.functional.mse_loss, optimizer=own)
        torch.testing.assert_close(stacked.weight[run].T, alone.weight)
        torch.testing.assert_close(torch.stack([loss[run] for loss in optimizer.read]), torch.stack(own.read))
    with pytest.raises(ValueError, match=r"a loss per run, shape \(2,\); got \(3,\)"):
        train(stacked, (xs, ys), config, loss_fn=run_losses, runs=2)
    with pytest.raises(ValueError, match="runs needs a loss_fn"):
        train(stacked, (xs, ys), config, runs=3)
    with pytest.raises(TypeError, match="not LBFGS"):  # it re-evaluates the loss through its closure
        train(model, (x, y), config, optimizer=torch.optim.LBFGS(model.parameters()))


@pytest.mark.parametrize(
    ("loss_fn", "error", "match"),
    [
        # was: RuntimeError 'grad can be implicitly created only for scalar outputs'
        (
            functools.partial(nn.functional.cross_entropy, reduction="none"),
            ValueError,
            r"shape \(\); got \(64,\)",
        ),
        # was: AttributeError 'float' object has no attribute 'requires_grad'
        (lambda output, y: 1.0, TypeError, "must return a tensor; got float"),
    ],
)
def test_a_loss_fn_that_returns_no_scalar_loss_is_named(small_circles, loss_fn, error, match):
    x, y = small_circles.x_train[:64], small_circles.y_train[:64]
    with pytest.raises(error, match=match):
        train(_mlp(), (x, y), TrainConfig(steps=2, monitor_every=None), loss_fn=loss_fn)


class _Stop(Callback):
    """Stops the run from ``hook`` at step ``at``; records the gradient norm each backward pass sees."""

    def __init__(self, hook: str, at: int) -> None:
        self.hook, self.at, self.norms = hook, at, []

    def on_backward(self, event: StepEvent) -> None:
        grads = [p.grad for p in event.model.parameters()]
        self.norms.append(float(torch.nn.utils.get_total_norm(grads)))
        if self.hook == "on_backward" and event.step == self.at:
            raise StopTraining("enough")

    def on_step(self, event: StepEvent) -> None:
        if self.hook == "on_step" and event.step == self.at:
            raise StopTraining("enough")


@needs_monitor
def test_stop_training_keeps_the_history_and_on_backward_sees_unclipped_gradients(small_circles):
    stats = (*DEFAULT_STATS, "update_ratio")
    config = TrainConfig(steps=10, clip_norm=1e-3, eval_every=2, monitor_stats=stats, device="cpu")
    three = train(_mlp(), small_circles, dataclasses.replace(config, steps=3))
    before = _Stop("on_backward", 3)
    model = _mlp()
    history = train(model, small_circles, config, callbacks=[before])
    assert history.steps_run == 4 and not history.diverged and "stopped by a callback" in history.message
    assert "enough" in history.message and np.array_equal(history.loss[:3], three.loss)
    np.testing.assert_allclose(before.norms, history.grad_norm_total, rtol=1e-6)
    assert np.all(history.grad_norm_total > 1e-3)  # before clipping
    assert history.monitor.steps.tolist() == [0, 1, 2, 3] and np.isnan(history.monitor.update_ratio[3]).all()
    assert np.isfinite(history.monitor.update_ratio[:3]).all()  # the applied updates were recorded
    trained = _mlp()
    train(trained, small_circles, dataclasses.replace(config, steps=3))
    for p, q in zip(model.parameters(), trained.parameters(), strict=True):
        assert torch.equal(p, q)  # the stopped step's update was not applied
    after = train(_mlp(), small_circles, config, callbacks=[_Stop("on_step", 2)])
    assert after.steps_run == 3 and np.array_equal(after.loss, three.loss)
    assert after.eval_steps.tolist() == [1, 2]  # the last step run is evaluated


class _PerPosition(nn.Module):
    """(N, T, F) -> (N, T, C): a class per position."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _positions(n: int = 96, steps: int = 5, classes: int = 3) -> DataSplit:
    """Label each position by the largest of its first ``classes`` features."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 32, steps, 4, generator=g)
    y = x[..., :classes].argmax(dim=-1)
    return DataSplit("toy-positions", x[:n], y[:n], x[n:], y[n:], classes)


def test_sequence_outputs_flatten_positions_in_loss_and_accuracy():
    data = _positions()
    model = _PerPosition(4, 3)
    output = model(data.x_val)
    flat = nn.functional.cross_entropy(output.reshape(-1, 3), data.y_val.reshape(-1))
    assert torch.allclose(loss_value(output, data.y_val, "cross_entropy"), flat)
    val_loss, val_acc = evaluate(model, data.x_val, data.y_val, batch_size=7)
    assert val_loss == pytest.approx(flat.item(), rel=1e-5)
    assert val_acc == pytest.approx((output.argmax(-1) == data.y_val).float().mean().item())
    mse_loss, _ = evaluate(model, data.x_val, data.y_val, "mse", batch_size=7)
    one_hot = nn.functional.one_hot(data.y_val, 3).float()
    assert mse_loss == pytest.approx(nn.functional.mse_loss(output, one_hot).item(), rel=1e-5)
    history = train(model, data, TrainConfig(steps=150, lr=0.5, batch_size=32, monitor_every=None))
    assert history.final_val_accuracy > 0.8 and history.train_accuracy[-1] > 0.8
    with pytest.raises(ValueError, match=r"\(N, T, C\) with \(N, T\)"):
        loss_value(output, data.y_val[:, :2], "cross_entropy")


@needs_monitor
def test_monitor_records_the_gradient_before_clipping_and_the_stats_asked_for(small_circles):
    config = TrainConfig(steps=4, clip_norm=1e-4, monitor_every=1, monitor_stats=("grad_norm", "grad_std"))
    history = train(_mlp(), small_circles, config)
    record = history.monitor
    assert record.recorded == ("grad_norm", "grad_std")
    # every layer's weight gradient alone is far above the clipping bound: measured before clipping
    assert np.all(record.grad_norm > 1e-3) and np.all(record.grad_norm <= history.grad_norm_total[:, None])
    assert np.isnan(record.update_ratio).all()
    with pytest.raises(ValueError, match="not recorded"):
        record.values("update_ratio")
    default = train(_mlp(), small_circles, TrainConfig(steps=2)).monitor
    assert set(default.recorded) == {"grad_norm", "backward_norm", "forward_rms"} == set(DEFAULT_STATS)
    assert np.isfinite(default.backward_norm).all() and np.isnan(default.grad_std).all()


def test_fused_optimizers_match_the_default_ones(small_circles):
    kernels: list[object] = []  # what each run's optimizer was built with: the comparison needs both kinds

    class Kernel(Callback):
        def on_step(self, event: StepEvent) -> None:
            if event.step == 0:
                kernels.append(event.optimizer.defaults.get("fused"))

    for optimizer in ("sgd", "momentum", "adam"):
        kernels.clear()
        config = TrainConfig(steps=5, optimizer=optimizer, lr=0.01)
        runs = [
            train(_mlp(), small_circles, dataclasses.replace(config, fused=fused), callbacks=[Kernel()])
            for fused in (False, True)
        ]
        assert kernels == [None, True], (optimizer, kernels)
        np.testing.assert_allclose(runs[0].loss, runs[1].loss, rtol=1e-5)
    for bad, error in (({"fused": 1}, TypeError), ({"monitor_stats": ("grad_nrom",)}, ValueError)):
        with pytest.raises(error, match=r"fused|grad_nrom"):
            TrainConfig(steps=1, **bad)
    assert TrainConfig(steps=1, monitor_stats=["grad_norm"]).monitor_stats == ("grad_norm",)


def test_monitor_stats_declares_its_names_and_metrics():
    stats = constraints(TrainConfig)["monitor_stats"]  # declared, so no hand check in TrainConfig.check
    assert stats.kind == "tuple" and stats.choices == ("default", "all") and stats.unique
    assert stats.each is not None and stats.each.choices == METRICS + HISTOGRAMS
    for good in ("default", "all", ("grad_norm", "act_hist")):
        assert TrainConfig(steps=1, monitor_stats=good).monitor_stats == good
    listed = (
        r"must be non-empty tuple of distinct values, each one of: grad_norm, .*, grad_hist or 'default' or "
        r"'all'; got "
    )
    for bad in ("grad_norm", "everything", (), ("grad_norm", "grad_norm")):
        with pytest.raises(ValueError, match=f"monitor_stats {listed}"):
            TrainConfig(steps=1, monitor_stats=bad)
    with pytest.raises(TypeError, match=f"monitor_stats {listed}3"):
        TrainConfig(steps=1, monitor_stats=3)


def test_config_declares_its_constraints():
    declared = constraints(TrainConfig)
    assert declared["lr"].kind == "float" and declared["lr"].low == 0 and declared["lr"].low_open
    assert declared["optimizer"].choices == ("sgd", "momentum", "adam") and declared["steps"].optional
    config = TrainConfig(steps=1, lr=1, clip_norm=2)
    assert isinstance(config.lr, float) and isinstance(config.clip_norm, float)
    with pytest.raises(TypeError):
        TrainConfig(1)  # keyword-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 0.5


def test_step_sizes_refuses_a_one_element_tensor():
    """std of one number is undefined (torch gives NaN and a warning): refused when the callback is built."""
    weight, scalar = torch.zeros(3, requires_grad=True), torch.zeros((), requires_grad=True)
    with pytest.raises(ValueError, match=r"parameter 1 has 1 element"):
        StepSizes([weight, scalar])
    with pytest.raises(TypeError, match=r"params\[1\] must be a torch.Tensor; got float"):
        StepSizes([weight, 0.5])
