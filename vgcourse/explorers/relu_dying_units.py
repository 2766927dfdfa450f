"""Explorer of the ReLU chapter (dying units): learning rate × bias initialization × activation
→ dead units during training."""

from __future__ import annotations

import dataclasses
from typing import Any

import ipywidgets as widgets
import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vgcourse._cache import copied_cache
from vgcourse.experiments.relu_dying_units import DyingConfig, DyingResult, run_dying
from vgcourse.plots.relu_dying_units import dead_over_training
from vgcourse.widgets import Explorer, control

__all__ = ["EXPLORER_BASE", "LEARNING_RATES", "LiveView", "dying_explorer", "explorer_config"]

LEARNING_RATES = (0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
"""The learning-rate slider's stops: a 1-2-3-5 series holding the chapter's 0.1, 0.3, 1 and 3."""

EXPLORER_BASE = DyingConfig(steps=50, measure_every=10, reference="val")
"""The explorer's run: a sixth of the chapter's 300 steps, and units counted on the validation images (about
a quarter of the training set), so that one update, a whole training run, takes about 0.1 s on a CPU core.
Units killed by a large step or a negative bias die in the first steps, so the explorer shows them; the
slower dying of the chapter's lr-3 run needs its 300 steps."""


def explorer_config(
    lr: float = 3.0, bias_init: float = 0.0, activation: str = "relu", init: str = "kaiming_normal"
) -> DyingConfig:
    """The ``DyingConfig`` the explorer runs for these control values (everything else from EXPLORER_BASE)."""
    return dataclasses.replace(EXPLORER_BASE, lr=lr, bias_init=bias_init, activation=activation, init=init)


@copied_cache(maxsize=256)
def _cached_run(config: DyingConfig) -> DyingResult:
    """``run_dying`` remembered per config (a revisited setting is instant), a copy for each call."""
    return run_dying(config)


class _BlitCanvas(FigureCanvasAgg):
    """An Agg canvas that redraws only the artists that change between the explorer's updates.

    The first PNG (and any after the figure's size, dpi or axes positions change) is drawn in full, once
    more with the dynamic artists hidden to keep as the background; every PNG after it restores that
    background and draws the dynamic artists on top (Agg blitting), then writes a fast-compressed PNG.
    The ticks, labels and legend, whose text layout is most of a full draw, are drawn once.
    """

    def __init__(self, figure: Figure, dynamic: list[Any]) -> None:
        super().__init__(figure)
        self.dynamic = dynamic
        self._background: Any = None
        self._key: tuple | None = None

    def _blit_draw(self) -> None:
        figure = self.figure
        key = (tuple(figure.bbox.bounds), tuple(tuple(ax.get_position().bounds) for ax in figure.axes))
        # a layout engine (tight_layout leaves a placeholder one) makes savefig lay out and draw first:
        # draw in full then, as Figure.draw is what that pass needs
        if self._background is None or key != self._key or figure.get_layout_engine() is not None:
            visible = [artist.get_visible() for artist in self.dynamic]
            for artist in self.dynamic:
                artist.set_visible(False)
            try:  # savefig's layout pass stops the draw with an exception
                FigureCanvasAgg.draw(self)
            finally:
                for artist, shown in zip(self.dynamic, visible, strict=True):
                    artist.set_visible(shown)
            self._background, self._key = self.copy_from_bbox(figure.bbox), key
            FigureCanvasAgg.draw(self)  # this PNG: everything, drawn the ordinary way
            return
        self.restore_region(self._background)
        renderer = self.get_renderer()
        for artist in self.dynamic:
            if artist.get_visible():
                artist.draw(renderer)

    def print_png(
        self, filename_or_obj: Any, *, metadata: Any = None, pil_kwargs: Any = None, **_: Any
    ) -> None:
        """Write the figure as PNG, drawing only the dynamic artists over the kept background."""
        self._blit_draw()
        matplotlib.image.imsave(
            filename_or_obj,
            self.buffer_rgba(),
            format="png",
            origin="upper",
            dpi=self.figure.dpi,
            metadata=metadata,
            pil_kwargs={"compress_level": 1, **(pil_kwargs or {})},
        )


class LiveView:
    """``dead_over_training`` for the explorer, drawn once and then updated in place.

    The first call draws the figure with ``dead_over_training`` (legend below the axes, both axis limits
    fixed: steps 0 to ``config.steps``, fractions 0 to 1); later calls with the same number of layers and
    steps only replace the lines' data, the title and the divergence marker. Its PNGs are drawn by a
    ``_BlitCanvas``: ticks, labels and legend once, then only the lines and the title (issue 18:
    explorers fast on slow CPUs). Each call returns the same ``Figure``, already showing ``result``.
    """

    def __init__(self) -> None:
        self._figure: Figure | None = None
        self._shape: tuple[int, int] | None = None
        self._dead: list = []
        self._accuracy: Any = None
        self._marker: Any = None

    def __call__(self, result: DyingResult) -> Figure:
        """Show ``result`` (from ``run_dying``); return the explorer's figure."""
        shape = (len(result.layer_names), result.config.steps)
        if self._figure is None or shape != self._shape:
            self._draw(result)
            self._shape = shape
        assert self._figure is not None
        # the margins stay as fitted (tight_layout leaves a placeholder engine that would make every
        # savefig run a layout pass and a full draw)
        self._figure.set_layout_engine(None)
        for line, column in zip(self._dead, result.dead_frac.T, strict=True):
            line.set_data(result.steps, column)
        self._accuracy.set_data(result.steps, result.val_accuracy)
        self._marker.set_data([result.steps[-1]], [result.val_accuracy[-1]])
        self._marker.set_visible(result.diverged)
        ax = self._figure.axes[0]
        stop = " (diverged)" if result.diverged else ""
        ax.set_title(f"{_title(result)}{stop}", fontsize="medium")
        return self._figure

    def _draw(self, result: DyingResult) -> None:
        # a figure outside pyplot (closing it cannot swap its canvas) and without a layout engine: the
        # explorer fits its margins once (tight_layout) and keeps them, so a PNG needs no layout pass
        figure = Figure(figsize=(6.4, 4.0), layout="none")
        ax = figure.add_subplot()
        dead_over_training(result, ax=ax, legend=False)
        lines = ax.get_lines()
        n_layers = len(result.layer_names)
        self._dead, self._accuracy = lines[:n_layers], lines[n_layers]
        (self._marker,) = ax.plot([np.nan], [np.nan], "x", color="red", markersize=10)
        steps = result.config.steps
        ax.set_xlim(-0.02 * steps, 1.02 * steps)
        ax.legend(
            handles=lines[: n_layers + 1],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.17),
            ncol=3,
            fontsize=9,
            frameon=False,
        )
        _BlitCanvas(figure, [*self._dead, self._accuracy, self._marker, ax.title])
        self._figure = figure


def _title(result: DyingResult) -> str:
    config = result.config
    return (
        f"{config.activation}, lr {config.lr:g}, bias {config.bias_init:g}: acc {result.final_accuracy:.2f}"
    )


def _readout(result: DyingResult) -> str:
    dead = ", ".join(
        f"{name} {value:.0%}" for name, value in zip(result.layer_names, result.dead_frac[-1], strict=True)
    )
    text = (
        f"after {result.steps_run} steps: validation accuracy {result.final_accuracy:.3f}; dead units "
        f"(z ≤ 0 on every validation image): {dead}"
    )
    return text + " — the run diverged and stopped" if result.diverged else text


def dying_explorer() -> Explorer:
    """Controls: learning rate (stops ``LEARNING_RATES``), bias initialization, activation and weights.

    Each change trains a fresh network (``EXPLORER_BASE`` with those values) with ``run_dying`` and
    shows it in a ``LiveView`` (``plots.relu_dying_units.dead_over_training`` updated in place); results
    are cached per setting.
    """
    base = EXPLORER_BASE
    controls = {
        "lr": control(
            DyingConfig,
            "lr",
            3.0,
            "learning rate",
            options=[(f"{lr:g}", lr) for lr in LEARNING_RATES],
            kind=widgets.SelectionSlider,
        ),
        "bias_init": control(
            DyingConfig, "bias_init", 0.0, "bias init", low=-3.0, high=1.0, step=0.25, readout_format=".2f"
        ),
        "activation": control(DyingConfig, "activation", "relu", kind=widgets.Dropdown),
        "init": control(
            DyingConfig,
            "init",
            "kaiming_normal",
            "weights",
            options=[("He", "kaiming_normal"), ("PyTorch default", "default")],
        ),
    }
    return Explorer(
        controls,
        explorer_config,
        _cached_run,
        LiveView(),
        readout=_readout,
        title=(
            f"Dead units per layer while training on digits ({base.depth} hidden layers of "
            f"{base.width} units, plain SGD, {base.steps} steps)"
        ),
        # the static page: 5 learning rates x 4 bias inits x 3 activations = 60 training runs with He
        # init (~25 s of one core at build time)
        page_grid={
            "lr": [0.1, 0.3, 1.0, 3.0, 10.0],
            "bias_init": [-2.0, -1.0, 0.0, 0.5],
            "activation": ["relu", "leaky_relu", "elu"],
        },
    )
