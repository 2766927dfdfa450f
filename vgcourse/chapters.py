"""The course's chapters, in reading order: the one place that names them.

A chapter's id is the stem of ``book/<id>.ipynb`` and of ``vgcourse.<layer>.<id>``; its number is its
1-based position. It imports nothing from the package, so every layer may read it (see CONTRIBUTING.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LAYERS = ("experiments", "plots", "explorers", "exercises")  # runs, figures, explorers, checked exercises

_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Chapter:
    """One chapter: ``id`` (the notebook's file stem), ``title`` (its first heading), ``number`` (1-based)."""

    id: str
    title: str
    number: int

    @property
    def notebook(self) -> str:
        """The notebook's path relative to the repository root, as _toc.yml names it (without suffix)."""
        return f"book/{self.id}"

    def module(self, layer: str) -> str:
        """The dotted name of the chapter's module in ``layer`` (one of ``LAYERS``)."""
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}; got {layer!r}")
        return f"vgcourse.{layer}.{self.id}"


_TITLES = (
    ("linear_chain", "The linear chain"),
    ("sigmoid_bound", "The sigmoid's 0.25 bound"),
    ("relu_dying_units", "ReLU and dying units"),
    ("initialization", "Xavier/Glorot and He/Kaiming initialization"),
    ("residual_networks", "Residual networks"),
    ("recurrent_networks", "Recurrent networks: LSTMs and GRUs"),
    ("normalization_and_optimizers", "Normalization layers and adaptive optimizers"),
    ("transformers", "Transformers: residual streams, Post-LN and Pre-LN"),
    ("detecting_and_fixing", "Detecting and fixing vanishing gradients"),
)

CHAPTERS: tuple[Chapter, ...] = tuple(  # in reading order, as _toc.yml's numbered part
    Chapter(id=cid, title=title, number=number) for number, (cid, title) in enumerate(_TITLES, start=1)
)


def chapter_ids() -> tuple[str, ...]:
    """The chapters' ids in reading order."""
    return tuple(c.id for c in CHAPTERS)


def chapter(chapter_id: str) -> Chapter:
    """The chapter with id ``chapter_id``; a ValueError names the valid ids."""
    for c in CHAPTERS:
        if c.id == chapter_id:
            return c
    raise ValueError(f"chapter must be one of {chapter_ids()}; got {chapter_id!r}")


def has_module(chapter_id: str, layer: str) -> bool:
    """Whether the chapter has a module in ``layer`` (looked up as a file: nothing is imported)."""
    chapter(chapter_id).module(layer)  # validates both names
    return (_PACKAGE / layer / f"{chapter_id}.py").is_file()
