"""GradientMonitor against PyTorch computed by hand on the same gradients and activations."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from vgcourse.monitor import DEFAULT_STATS, METRICS, STATS, GradientMonitor, MonitorRecord, snapshot


@pytest.fixture(scope="module", autouse=True)
def import_optimizers() -> None:
    """The first optimizer of a process imports torch._dynamo (seconds, once): pay that in setup."""
    torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def small_mlp(activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), activation(), nn.Linear(16, 16), activation(), nn.Linear(16, 3))


def one_step(model: nn.Module, monitor: GradientMonitor, x: torch.Tensor, step: int = 0) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.pow(2).mean().backward()
    monitor.step(step)
    return out


def test_gradient_statistics_match_torch() -> None:
    model = small_mlp()
    x = torch.randn(64, 5)
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        one_step(model, mon, x)
    record = mon.record()
    grads = [m.weight.grad for _, m in linear_layers(model)]
    np.testing.assert_allclose(record.grad_norm[0], [g.norm().item() for g in grads], rtol=1e-5)
    np.testing.assert_allclose(record.grad_mean[0], [g.mean().item() for g in grads], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(record.grad_std[0], [g.std().item() for g in grads], rtol=1e-4)
    np.testing.assert_allclose(record.grad_max[0], [g.abs().max().item() for g in grads], rtol=1e-6)
    assert record.layer_names == ["0", "2", "4"]
    assert record.steps.tolist() == [0]
    assert all(getattr(record, m).shape == (1, 3) for m in METRICS)


def test_activation_mean_std_match_torch_and_last_layer_reports_its_output() -> None:
    model = small_mlp(nn.Tanh)
    x = torch.randn(64, 5)
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        out = one_step(model, mon, x)
    h1 = torch.tanh(model[0](x))
    h2 = torch.tanh(model[2](h1))
    record = mon.record()
    expected_mean = [h1.mean().item(), h2.mean().item(), out.mean().item()]
    expected_std = [h1.std().item(), h2.std().item(), out.std().item()]
    np.testing.assert_allclose(record.act_mean[0], expected_mean, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(record.act_std[0], expected_std, rtol=1e-4)
    assert np.isnan(record.dead_frac[0]).all()
    assert np.isnan(record.saturated_frac[0, 2])  # the output layer has no activation


@pytest.mark.parametrize("activation", [nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU])
@pytest.mark.parametrize("k", [0, 3, 8])
def test_dead_fraction_on_hand_built_layer(activation: type[nn.Module], k: int) -> None:
    n = 8
    layer = nn.Linear(4, n)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(1.0)
        layer.bias[:k] = -1.0  # pre-activation -1 for every example: exactly k dead units
    model = nn.Sequential(layer, activation(), nn.Linear(n, 1))
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        one_step(model, mon, torch.randn(10, 4))
    assert mon.record().dead_frac[0, 0] == pytest.approx(k / n)
    assert np.isnan(mon.record().dead_frac[0, 1])


def test_unit_alive_on_a_single_example_is_not_dead() -> None:
    layer = nn.Linear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        layer.bias.copy_(torch.tensor([-2.5, -10.0]))
    x = torch.tensor([[0.0], [1.0], [3.0]])  # unit 0 fires only on the last example; unit 1 never
    model = nn.Sequential(layer, nn.ReLU(inplace=True), nn.Linear(2, 1))
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        one_step(model, mon, x)
    assert mon.record().dead_frac[0, 0] == 0.5


@pytest.mark.parametrize("activation", [nn.Tanh, nn.Sigmoid])
def test_saturated_fraction_on_hand_built_layer(activation: type[nn.Module]) -> None:
    layer = nn.Linear(1, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[20.0], [-20.0], [0.1], [0.0], [1.0]]))
        layer.bias.zero_()
    model = nn.Sequential(layer, activation(), nn.Linear(5, 1))
    with GradientMonitor(model, layers=linear_layers(model), stats="all", saturation=0.99) as mon:
        one_step(model, mon, torch.ones(7, 1))
    # units 0 and 1 saturate (tanh(±20), sigmoid(±20)); 0.1, 0 and 1 do not
    assert mon.record().saturated_frac[0, 0] == pytest.approx(2 / 5)
    assert np.isnan(mon.record().dead_frac[0, 0])


def test_hooks_are_removed_after_an_exception() -> None:
    model = small_mlp()
    before = hook_count(model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        GradientMonitor(model, layers=linear_layers(model), stats="all") as mon,
    ):
        assert hook_count(model) > before
        one_step(model, mon, torch.randn(4, 5))
        raise RuntimeError("boom")
    assert hook_count(model) == before
    mon.close()  # a second close is harmless
    assert mon.record().steps.tolist() == [0]


def test_layer_hooks_are_attached_only_before_recorded_steps() -> None:
    model = small_mlp()
    with GradientMonitor(model, layers=linear_layers(model), stats="all", every=3) as mon:
        attached = []
        for step in range(4):
            attached.append(hook_count(model) > 0)
            one_step(model, mon, torch.randn(4, 5), step)
        assert hook_count(model) == 0  # step 4 will not be recorded: the plain model runs it
    assert attached == [True, False, False, True]
    assert hook_count(model) == 0
    assert np.isfinite(mon.record().act_mean).all()


def test_frozen_and_unused_layers_give_nan() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(3, 4)
            self.used = nn.Linear(4, 1)
            self.unused = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(torch.relu(self.body(x)))

    model = TwoHeads()
    model.body.weight.requires_grad_(False)
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        one_step(model, mon, torch.randn(8, 3))
        with torch.no_grad():  # plain SGD by hand
            for p in model.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
        mon.after_update()
    record = mon.record()
    assert np.isnan(record.grad_norm[0, [0, 2]]).all() and np.isfinite(record.grad_norm[0, 1])
    assert np.isnan(record.update_ratio[0, [0, 2]]).all() and record.update_ratio[0, 1] > 0
    assert np.isfinite(record.act_mean[0, :2]).all() and np.isnan(record.act_mean[0, 2])


def test_conv_bn_relu_reports_to_the_conv() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([-50.0, 0.0, 0.0, -50.0]))  # channels 0 and 3 are dead
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 2))
    x = torch.randn(6, 2, 5, 5)
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        one_step(model, mon, x)
    record = mon.record()
    relu_out = torch.relu(bn(conv(x)))
    assert record.layer_names == ["0", "4"]
    assert record.dead_frac[0, 0] == 0.5
    assert record.act_mean[0, 0] == pytest.approx(relu_out.mean().item(), rel=1e-5)
    assert record.grad_norm[0, 0] == pytest.approx(conv.weight.grad.norm().item(), rel=1e-5)


def test_reused_activation_module_reports_to_the_layer_that_ran_last() -> None:
    class Block(nn.Module):  # like a ResNet block: one relu module called twice
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.relu = nn.Linear(3, 4), nn.Linear(4, 4), nn.ReLU()
            with torch.no_grad():
                self.fc2.bias.fill_(-100.0)  # every fc2 unit dead, no fc1 unit forced dead

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.fc2(self.relu(self.fc1(x)))).sum(dim=1)

    model = Block()
    with torch.no_grad():
        model.fc1.weight.fill_(1.0)
        model.fc1.bias.fill_(1.0)
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        model.zero_grad()
        model(torch.rand(5, 3)).sum().backward()
        mon.step(0)
    assert mon.record().dead_frac[0].tolist() == [0.0, 1.0]


def test_lstm_with_track_inputs_matches_manual_input_gradients() -> None:
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(3, 6, batch_first=True)
            self.head = nn.Linear(6, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    model = Net()
    steps = [torch.randn(4, 7, 3) for _ in range(2)]
    with GradientMonitor(
        model, layers=[("lstm", model.rnn), ("head", model.head)], stats="all", track_inputs=True
    ) as mon:
        for step, x in enumerate(steps):
            one_step(model, mon, x, step)
    record = mon.record()
    assert record.input_grad_norm.shape == (2, 7)
    for step, x in enumerate(steps):
        x = x.clone().requires_grad_(True)
        model.zero_grad()
        model(x).pow(2).mean().backward()
        np.testing.assert_allclose(record.input_grad_norm[step], x.grad.norm(dim=(0, 2)).numpy(), rtol=1e-5)
    weights = [p.grad for name, p in model.rnn.named_parameters() if name.startswith("weight")]
    flat = torch.cat([g.reshape(-1) for g in weights])
    assert record.grad_norm[-1, 0] == pytest.approx(flat.norm().item(), rel=1e-5)
    assert record.grad_std[-1, 0] == pytest.approx(flat.std().item(), rel=1e-4)


def test_vanilla_rnn_reports_its_tanh_saturation() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(2, 4, batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.mul_(40.0)
    x = torch.randn(3, 5, 2)
    with GradientMonitor(rnn, layers=[("rnn", rnn)], stats="all") as mon:
        rnn.zero_grad()
        out, _ = rnn(x)
        out.sum().backward()
        mon.step(0)
    assert mon.record().saturated_frac[0, 0] == pytest.approx((out.abs() > 0.99).float().mean().item())


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_update_ratio_matches_manual_computation(optimizer: type[torch.optim.Optimizer]) -> None:
    model = small_mlp()
    opt = optimizer(model.parameters(), lr=0.01)
    x = torch.randn(32, 5)
    layers = linear_layers(model)
    with GradientMonitor(model, layers=layers, stats="all") as mon:
        ratios = []
        for step in range(3):
            before = [m.weight.detach().clone() for _, m in layers]
            one_step(model, mon, x, step)
            opt.step()
            mon.after_update()
            after = [m.weight.detach() for _, m in layers]
            ratios.append([((a - b).std() / b.std()).item() for a, b in zip(after, before, strict=True)])
    np.testing.assert_allclose(mon.record().update_ratio, np.array(ratios, dtype=np.float64), rtol=1e-4)


def test_same_shaped_layers_get_their_own_update_ratio_and_exact_grad_max() -> None:
    torch.manual_seed(0)  # three 16x16 layers share one scratch tensor in after_update
    model = nn.Sequential(*(m for _ in range(3) for m in (nn.Linear(16, 16), nn.Tanh())), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    layers = linear_layers(model)
    with GradientMonitor(model, layers=layers, stats="all") as mon:
        ratios, grad_max = [], []
        for step in range(3):
            before = [m.weight.detach().clone() for _, m in layers]
            one_step(model, mon, torch.randn(8, 16), step)
            grad_max.append([m.weight.grad.abs().max().item() for _, m in layers])
            opt.step()
            mon.after_update()
            after = [m.weight.detach() for _, m in layers]
            ratios.append([((a - b).std() / b.std()).item() for a, b in zip(after, before, strict=True)])
    record = mon.record()
    np.testing.assert_allclose(record.update_ratio, np.array(ratios, dtype=np.float64), rtol=1e-4)
    assert len(set(record.update_ratio[-1].tolist())) == len(layers)
    np.testing.assert_array_equal(record.grad_max, np.array(grad_max, dtype=np.float64))  # max is exact


def test_norms_beyond_float32_range_are_measured_not_inf() -> None:
    """Weights ×1e9 give float32 gradients with finite entries up to ~1e33 whose norm (Σg² past 3.4e38)
    overflows: the CPU path measures such a norm again in float64, so the record equals a float64 copy's.
    The device path does so for the weight gradients only (the other tensors are gone by the fetch)."""
    torch.manual_seed(0)
    model = small_mlp()
    with torch.no_grad():
        model[2].weight.mul_(1e9)
        model[4].weight.mul_(1e9)
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    records = []
    for read, dtype in ((True, torch.float32), (False, torch.float32), (True, torch.float64)):
        twin = small_mlp().to(dtype)
        twin.load_state_dict(model.state_dict())
        optimizer = torch.optim.SGD(twin.parameters(), lr=1e-10)
        with GradientMonitor(twin, optimizer, stats="all") as mon:
            mon._read = read
            train_steps(twin, optimizer, [x.to(dtype)])
        records.append(mon.record())
        if dtype == torch.float32:
            grad = twin[0].weight.grad
            assert torch.isfinite(grad).all() and torch.linalg.vector_norm(grad) == math.inf
    cpu, device, wide = records
    metrics = ("grad_norm", "grad_std", "act_std", "forward_rms", "backward_norm", "update_ratio")
    for metric in metrics:
        assert np.isfinite(cpu.values(metric)).all(), metric
        np.testing.assert_allclose(cpu.values(metric), wide.values(metric), rtol=1e-5, err_msg=metric)
    np.testing.assert_array_equal(device.grad_norm, cpu.grad_norm)


@pytest.mark.parametrize("clip", [{"clip_norm": 1.0}, {"clip_value": 1.0}])
def test_device_path_keeps_inf_for_an_overflowing_norm_clipped_before_the_fetch(clip: dict) -> None:
    """The device path measures an overflowing weight-gradient norm again at the fetch, after the step;
    train's clipping (a step pre-hook after the monitor's) has changed that gradient in place by then, so the
    record keeps inf, not the clipped gradient's norm (it gave NaN for clip_norm, 4 for clip_value); the CPU
    path measured it before the clip."""
    from vgcourse.training import TrainConfig, train

    records = []
    for read in (True, False):
        model = nn.Linear(4, 4)
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) * 1e20  # ‖∂J/∂W‖ ~1e21
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-30)
        monitor = GradientMonitor(model, optimizer)
        monitor._read = read  # False: the path a GPU model takes
        config = TrainConfig(steps=1, stop_on_divergence=False, **clip)
        loss_fn = lambda out, _: out.sum()  # noqa: E731
        records.append(train(model, (x, x), config, loss_fn=loss_fn, optimizer=optimizer, monitor=monitor))
    cpu, device = (history.monitor.values("grad_norm")[0, 0] for history in records)
    assert 1e20 < cpu < math.inf
    assert device == math.inf


def test_infinite_gradients_give_nan_or_inf_without_warnings() -> None:
    model = small_mlp()
    with warnings.catch_warnings(), GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        warnings.simplefilter("error")
        model(torch.randn(4, 5)).sum().backward()
        model[0].weight.grad[0, 0] = math.inf
        mon.step(0)
        with torch.no_grad():
            model[0].weight[0, 0] = math.inf
        mon.after_update()
    record = mon.record()
    assert record.grad_norm[0, 0] == math.inf and math.isnan(record.grad_std[0, 0])
    assert np.isfinite(record.grad_norm[0, 1:]).all() and not np.isfinite(record.update_ratio[0, 0])


def test_every_records_only_those_steps_with_activation_stats() -> None:
    model = small_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with GradientMonitor(model, layers=linear_layers(model), stats="all", every=3) as mon:
        for step in range(7):
            one_step(model, mon, torch.randn(8, 5), step)
            opt.step()
            mon.after_update()
    record = mon.record()
    assert record.steps.tolist() == [0, 3, 6]
    for metric in ("grad_norm", "act_mean", "act_std", "dead_frac", "update_ratio"):
        assert np.isfinite(getattr(record, metric)[:, :2]).all(), metric


def test_forward_without_grad_does_not_replace_the_training_activations() -> None:
    model = small_mlp()
    x = torch.randn(16, 5)
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        model.zero_grad()
        model(x).sum().backward()
        with torch.no_grad():
            model(100 * torch.randn(16, 5))  # e.g. an evaluation pass
        mon.step(0)
    h1 = torch.relu(model[0](x))
    assert mon.record().act_mean[0, 0] == pytest.approx(h1.mean().item(), rel=1e-5)


def test_default_layers_follow_named_layers() -> None:
    from vgcourse.models import MLP, named_layers

    torch.manual_seed(0)
    model = MLP(4, 2, depth=3, width=8, activation="relu")
    x = torch.randn(16, 4)
    with GradientMonitor(model, stats="all") as mon:
        one_step(model, mon, x)
    record = mon.record()
    assert record.layer_names == model.layer_names()
    expected = [m.weight.grad.norm().item() for _, m in named_layers(model)]
    np.testing.assert_allclose(record.grad_norm[0], expected, rtol=1e-5)
    assert np.isfinite(record.dead_frac[0, :3]).all() and np.isnan(record.dead_frac[0, 3])


def test_snapshot_returns_a_one_step_record_and_keeps_the_weights() -> None:
    from vgcourse.models import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel("gru", 2, 5, 3)
    weights = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(4, 6, 2), torch.randint(0, 3, (4,))
    record = snapshot(model, x, y, nn.CrossEntropyLoss(), track_inputs=True)
    assert isinstance(record, MonitorRecord) and record.steps.tolist() == [0]
    assert record.layer_names == model.layer_names()
    assert record.input_grad_norm.shape == (1, 6)
    assert np.isnan(record.update_ratio).all() and np.isfinite(record.grad_norm).all()
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters(), strict=True))
    assert model.head.weight.grad is not None  # gradients stay for plots.grad_histograms
    assert hook_count(model) == 0


def test_record_helpers_and_frame() -> None:
    model = small_mlp()
    with GradientMonitor(model, layers=linear_layers(model), stats="all") as mon:
        for step in range(2):
            one_step(model, mon, torch.randn(8, 5), step)
    record = mon.record()
    frame = record.to_frame()
    measurable = [m for m in METRICS if m != "saturated_frac"]  # "all" on a ReLU network
    assert list(frame.columns) == ["step", "layer", "layer_index", *measurable]
    assert len(frame) == 2 * 3
    assert frame["layer_index"].tolist() == [1, 2, 3, 1, 2, 3]
    assert frame["grad_norm"].tolist() == record.grad_norm.reshape(-1).tolist()
    np.testing.assert_array_equal(record.values("grad_norm"), record.grad_norm)
    assert mon.record().input_grad_norm is None


def test_same_seed_gives_identical_records() -> None:
    def run() -> MonitorRecord:
        model = small_mlp()
        torch.manual_seed(1)
        return snapshot(model, torch.randn(8, 5), torch.randn(8, 3), nn.MSELoss(), linear_layers(model))

    a, b = run(), run()
    for metric in METRICS:
        np.testing.assert_array_equal(getattr(a, metric), getattr(b, metric))


def test_train_fills_history_monitor() -> None:
    from vgcourse.data import DataSplit
    from vgcourse.models import MLP
    from vgcourse.training import TrainConfig, train

    torch.manual_seed(0)
    x, y = torch.randn(96, 2), torch.randint(0, 2, (96,))
    data = DataSplit("toy", x[:64], y[:64], x[64:], y[64:], n_classes=2)
    model = MLP(2, 2, depth=2, width=8)
    stats = (*DEFAULT_STATS, "update_ratio")
    history = train(model, data, TrainConfig(steps=6, monitor_every=2, monitor_stats=stats, device="cpu"))
    record = history.monitor
    assert record.steps.tolist() == [0, 2, 4]
    assert record.grad_norm.shape == (3, 3) and np.isfinite(record.update_ratio).all()
    assert hook_count(model) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every": 0}, ValueError, "every"),
        ({"every": 1.5}, TypeError, "every"),
        ({"every": True}, TypeError, "every"),
        ({"saturation": 1.0}, ValueError, "saturation"),
        ({"saturation": 0.0}, ValueError, "saturation"),
        ({"saturation": -0.5}, ValueError, "saturation"),
        ({"saturation": 1.5}, ValueError, r"\(0, 1\)"),
        ({"saturation": "high"}, TypeError, "saturation"),
        ({"track_inputs": "yes"}, TypeError, "track_inputs"),
        ({"layers": nn.Linear(2, 2)}, TypeError, "layers"),
        ({"layers": [("a", "not a module")]}, TypeError, "pair"),
        ({"layers": [nn.Linear(2, 2)]}, TypeError, "pair"),
        ({"layers": [("relu", nn.ReLU())]}, ValueError, "no weight"),
        ({"layers": []}, ValueError, "no layers"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, error: type[Exception], match: str) -> None:
    model = small_mlp()
    kwargs.setdefault("layers", linear_layers(model))
    with pytest.raises(error, match=match):
        GradientMonitor(model, **kwargs)


def test_bad_calls_are_rejected() -> None:
    model = small_mlp()
    with pytest.raises(TypeError, match="model"):
        GradientMonitor("model", linear_layers(model))
    mon = GradientMonitor(model, layers=linear_layers(model), stats="all")
    with pytest.raises(ValueError, match="step"):
        mon.step(-1)
    with pytest.raises(TypeError, match="step"):
        mon.step(1.0)
    record = snapshot(model, torch.randn(4, 5), torch.randn(4, 3), nn.MSELoss(), linear_layers(model))
    with pytest.raises(ValueError, match="unknown metric"):
        record.values("grad_nrom")
    with pytest.raises(AttributeError):  # frozen (dataclasses.FrozenInstanceError)
        record.grad_norm = np.zeros_like(record.grad_norm)
    with pytest.raises(TypeError, match="metric"):
        record.values(3)
    with pytest.raises(ValueError, match="shape"):
        MonitorRecord(["a", "b"], np.zeros(1), **{m: np.zeros((1, 3)) for m in METRICS})
    with pytest.raises(TypeError, match="loss_fn"):
        snapshot(model, torch.randn(4, 5), None, "mse", linear_layers(model))
    with pytest.raises(TypeError, match="x"):
        snapshot(model, [[1.0] * 5], None, nn.MSELoss(), linear_layers(model))
    with pytest.raises(ValueError, match="scalar"):
        snapshot(model, torch.randn(4, 5), None, lambda out, y: out, linear_layers(model))


def test_layer_weights_of_linear_rnn_and_norm_layers() -> None:
    from vgcourse.monitor import layer_weights

    linear = nn.Linear(3, 4)
    assert layer_weights(linear) == [linear.weight]
    rnn = nn.LSTM(3, 5, num_layers=2)
    assert [p.shape for p in layer_weights(rnn)] == [(20, 3), (20, 5), (20, 5), (20, 5)]
    assert layer_weights(nn.ReLU()) == []
    norm = nn.BatchNorm1d(4)
    assert layer_weights(norm) == [norm.weight]  # a weight, though named_layers skips 1-D ones


# -- the optimizer-driven monitor (no calls in the loop) and its default statistics -------------------------


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    for x in batches:
        optimizer.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        optimizer.step()


def test_default_record_equals_a_hand_computed_reference() -> None:
    batches = [torch.randn(8, 5, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    records = []
    for stats in ("default", [*DEFAULT_STATS, "update_ratio"]):
        model = small_mlp(nn.Tanh)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        with GradientMonitor(model, optimizer, layers=linear_layers(model), stats=stats) as mon:
            train_steps(model, optimizer, batches)
        records.append(mon.record())
    record, with_updates = records
    assert set(record.recorded) == {"grad_norm", "backward_norm", "forward_rms"}
    assert record.steps.tolist() == [0, 1, 2]
    for metric in DEFAULT_STATS:  # asking for update_ratio changes nothing else
        np.testing.assert_array_equal(with_updates.values(metric), record.values(metric))
    reference = small_mlp(nn.Tanh)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9)
    layers = [m for _, m in linear_layers(reference)]
    for step, x in enumerate(batches):
        outputs: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda m, a, out, keep=outputs: keep.append(out)) for m in layers]
        ref_optimizer.zero_grad(set_to_none=True)
        out = reference(x)
        for h in outputs:
            h.retain_grad()
        out.pow(2).mean().backward()
        before = [m.weight.detach().clone() for m in layers]
        ref_optimizer.step()
        for handle in handles:
            handle.remove()
        expected = {
            "grad_norm": [m.weight.grad.norm().item() for m in layers],
            "backward_norm": [h.grad.norm().item() for h in outputs],
            "forward_rms": [h.detach().pow(2).mean().sqrt().item() for h in outputs],
        }
        for metric, values in expected.items():
            np.testing.assert_allclose(record.values(metric)[step], values, rtol=2e-5, err_msg=metric)
        ratios = [
            ((m.weight.detach() - b).std() / b.std()).item() for m, b in zip(layers, before, strict=True)
        ]
        np.testing.assert_allclose(with_updates.update_ratio[step], ratios, rtol=2e-5)
    assert np.isnan(record.grad_std).all() and np.isnan(record.update_ratio).all()  # not asked for
    with pytest.raises(ValueError, match=r"update_ratio was not recorded.*stats="):
        record.values("update_ratio")


def test_optimizer_hooks_give_the_same_record_as_the_manual_calls() -> None:
    batches = [torch.randn(16, 5, generator=torch.Generator().manual_seed(s)) for s in range(5)]
    records = []
    for hooked in (False, True):
        model = small_mlp()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        monitor = GradientMonitor(model, optimizer if hooked else None, every=2, stats=METRICS)
        with monitor:
            for step, x in enumerate(batches):
                optimizer.zero_grad(set_to_none=True)
                model(x).pow(2).mean().backward()
                if not hooked:
                    monitor.step(step)
                optimizer.step()
                if not hooked:
                    monitor.after_update()
        records.append(monitor.record())
    assert records[1].steps.tolist() == [0, 2, 4]
    for metric in METRICS:
        np.testing.assert_array_equal(records[0].values(metric), records[1].values(metric), err_msg=metric)


@pytest.mark.parametrize("stats", ["default", "all", ["grad_norm", "act_hist", "grad_hist"]])
def test_device_path_gives_the_same_record_as_reading_on_the_cpu(stats: str | list[str]) -> None:
    """On a GPU the numbers wait on the device for one stack and copy; on the CPU each is read as it comes."""
    batches = [torch.randn(16, 5, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    records = []
    for read in (True, False):
        model = small_mlp(nn.Tanh)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with GradientMonitor(model, optimizer, stats=stats) as mon:
            mon._read = read  # False: the path a GPU model takes
            train_steps(model, optimizer, batches)
        records.append(mon.record())
    for name in (*METRICS, "act_hist", "grad_hist"):
        np.testing.assert_array_equal(getattr(records[0], name), getattr(records[1], name), err_msg=name)


def test_hooked_monitor_syncs_once_per_recorded_step_and_removes_its_hooks(monkeypatch) -> None:
    from vgcourse import monitor as monitor_module

    fetches = []
    original = monitor_module._Pending.fetch
    monkeypatch.setattr(monitor_module._Pending, "fetch", lambda self: fetches.append(1) or original(self))
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientMonitor(model, optimizer, every=3) as mon:
        assert len(optimizer._optimizer_step_pre_hooks) == len(optimizer._optimizer_step_post_hooks) == 1
        train_steps(model, optimizer, [torch.randn(4, 5) for _ in range(7)])
        with pytest.raises(RuntimeError, match="step hooks"):
            mon.step(7)
        with pytest.raises(RuntimeError, match="step hooks"):
            mon.after_update()
    assert len(fetches) == 3 and mon.record().steps.tolist() == [0, 3, 6]
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    assert hook_count(model) == 0
    optimizer.step()  # steps after the block are not recorded
    assert mon.record().steps.tolist() == [0, 3, 6]


def test_backward_and_forward_signal_of_a_layer_called_twice() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, nn.Tanh(), layer)  # one module, two calls: their norms add in squares
    x = torch.randn(6, 4)
    h1 = layer(x)
    h2 = layer(torch.tanh(h1))
    h1.retain_grad()
    h2.retain_grad()
    h2.pow(2).mean().backward()
    backward = math.sqrt(h1.grad.norm().item() ** 2 + h2.grad.norm().item() ** 2)
    forward = math.sqrt((h1.pow(2).sum() + h2.pow(2).sum()).item() / (h1.numel() + h2.numel()))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientMonitor(model, optimizer, layers=[("shared", layer)]) as mon:
        train_steps(model, optimizer, [x])
    record = mon.record()
    assert record.backward_norm[0, 0] == pytest.approx(backward, rel=1e-5)
    assert record.forward_rms[0, 0] == pytest.approx(forward, rel=1e-5)


def test_backward_signal_of_a_layer_whose_output_is_modified_in_place() -> None:
    # The hook sits on the node that made h, so an in-place ReLU after it does not change what it reads:
    # dL/dh of the value the layer produced (the pre-activation), as a hook registered before the change.
    torch.manual_seed(0)
    first, last = nn.Linear(4, 6), nn.Linear(6, 2)
    x = torch.randn(5, 4)
    h = first(x)
    h.retain_grad()
    last(torch.relu(h)).pow(2).mean().backward()
    model = nn.Sequential(first, nn.ReLU(inplace=True), last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with GradientMonitor(model, optimizer, layers=[("first", first)], stats=["backward_norm"]) as mon:
        train_steps(model, optimizer, [x])
    assert mon.record().backward_norm[0, 0] == pytest.approx(h.grad.norm().item(), rel=1e-6)


class Functional(nn.Module):
    """5 -> 8 -> 2 with ReLU as a function (torch.relu), not a module: no activation module to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_functional_activations_are_reported_not_silently_nan() -> None:
    model = Functional()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with (
        pytest.warns(UserWarning, match=r"no activation module.*F\.relu"),
        GradientMonitor(model, optimizer, stats=("dead_frac", "forward_rms")) as mon,
    ):
        train_steps(model, optimizer, [torch.randn(4, 5)])
    record = mon.record()
    assert record.activations == ("", "") and np.isnan(record.dead_frac).all()
    assert np.isfinite(record.forward_rms).all()
    module_model = small_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = snapshot(
            module_model, torch.randn(4, 5), torch.randn(4, 3), nn.MSELoss(), linear_layers(module_model)
        )
    assert record.activations == ("relu", "relu", "")


def test_all_stats_are_the_ones_the_models_activations_can_give() -> None:
    x = torch.randn(4, 5)
    fractions = ("dead_frac", "saturated_frac")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: "all" asks for what can be measured
        record = snapshot(Functional(), x, torch.randn(4, 2), nn.MSELoss())
    assert record.recorded == tuple(m for m in METRICS if m not in fractions)
    assert np.isnan(record.dead_frac).all() and "dead_frac" not in record.to_frame()
    with pytest.raises(ValueError, match=r"dead_frac was not recorded .* no activation module"):
        record.values("dead_frac")
    for activation, kept in ((nn.ReLU, "dead_frac"), (nn.GELU, "dead_frac"), (nn.Tanh, "saturated_frac")):
        model = small_mlp(activation)
        record = snapshot(model, x, torch.randn(4, 3), nn.MSELoss(), linear_layers(model))
        assert [m for m in fractions if m in record.recorded] == [kept], activation
        assert np.isfinite(record.values(kept)[0, :2]).all(), activation  # the hidden layers measured it
    for nonlinearity, kept in (("tanh", "saturated_frac"), ("relu", "dead_frac")):
        rnn = nn.RNN(2, 4, nonlinearity=nonlinearity, batch_first=True)
        record = snapshot(rnn, torch.randn(3, 5, 2), None, lambda out, _: out[0].sum(), [("rnn", rnn)])
        assert [m for m in fractions if m in record.recorded] == [kept], nonlinearity
        assert np.isfinite(record.values(kept)).all(), nonlinearity


def test_histograms_count_activations_and_log_gradients() -> None:
    model = small_mlp(nn.Tanh)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(32, 5)
    outputs: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda m, a, out: outputs.append(out.detach()))
        for m in model
        if isinstance(m, nn.Tanh)
    ]
    stats = ("act_hist", "grad_hist")
    with GradientMonitor(
        model, optimizer, layers=linear_layers(model), stats=stats, bins=8, act_range=(-1, 1)
    ) as mon:
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        grads = [m.weight.grad.clone() for _, m in linear_layers(model)]
        optimizer.step()
    for handle in handles:
        handle.remove()
    record = mon.record()
    assert record.act_hist.shape == (1, 3, 8) and record.grad_hist.shape == (1, 3, 8)
    np.testing.assert_allclose(record.act_hist_edges, np.linspace(-1, 1, 9))
    for k, u in enumerate(outputs):  # tanh outputs lie in (-1, 1): all counted
        counts, _ = np.histogram(u.numpy(), bins=record.act_hist_edges)
        np.testing.assert_array_equal(record.act_hist[0, k], counts)
    for k, g in enumerate(grads):
        counts, _ = np.histogram(np.log10(np.abs(g.numpy())), bins=record.grad_hist_edges)
        assert np.abs(record.grad_hist[0, k] - counts).sum() <= 2  # float32 vs float64 at the bin edges
        assert record.grad_hist[0, k].sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stats": "cheap"}, ValueError, "default"),
        ({"stats": ["grad_nrom"]}, ValueError, "grad_nrom"),
        ({"stats": []}, ValueError, "non-empty"),
        ({"stats": ["grad_norm", "grad_norm"]}, ValueError, "distinct"),
        ({"stats": 3}, TypeError, "tuple"),
        ({"bins": 0}, ValueError, "bins"),
        ({"act_range": (1.0, 1.0)}, ValueError, "act_range"),
        ({"grad_range": 3}, TypeError, "grad_range"),
    ],
)
def test_bad_new_options_are_rejected(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        GradientMonitor(small_mlp(), **kwargs)
    with pytest.raises(TypeError, match="layers="):
        GradientMonitor(small_mlp(), [("a", nn.Linear(2, 2))])


def test_the_monitor_and_train_config_accept_the_same_stats() -> None:
    from vgcourse.config import constraints
    from vgcourse.training import TrainConfig

    assert constraints(TrainConfig)["monitor_stats"] is STATS
    for bad in ([], ["grad_norm", "grad_norm"], ["grad_nrom"], "cheap"):
        with pytest.raises(ValueError):
            TrainConfig(steps=1, monitor_stats=bad)
        with pytest.raises(ValueError):
            GradientMonitor(small_mlp(), stats=bad)


def test_skipped_step_records_gradients_without_an_update() -> None:
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientMonitor(model, optimizer, stats=[*DEFAULT_STATS, "update_ratio"]) as mon:
        train_steps(model, optimizer, [torch.randn(4, 5)])
        optimizer.zero_grad()
        model(torch.randn(4, 5)).pow(2).mean().backward()
        mon.skipped_step()  # as train() does at a diverged step: no optimizer.step()
    record = mon.record()
    assert record.steps.tolist() == [0, 1]
    assert np.isfinite(record.update_ratio[0]).all() and np.isnan(record.update_ratio[1]).all()
    assert np.isfinite(record.grad_norm).all() and np.isfinite(record.backward_norm).all()
    with pytest.raises(RuntimeError, match="optimizer"):
        GradientMonitor(model).skipped_step()
