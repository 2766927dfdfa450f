"""The ``vgcourse`` command line.

``vgcourse profile``: per-layer gradient statistics of a fresh model on a fixed batch.
``vgcourse diagnose``: the same model and batch through ``vgcourse.diagnose``: flags and suggestions.
``vgcourse student-notebooks OUT_DIR``: the reader notebooks (``_build/colab``) without their solution cells.
``vgcourse grade SUBMISSION.ipynb ...``: execute submissions, check their exercises, write a CSV.
``vgcourse export-otter --chapter CHAPTER --out DIR``: the chapter's exercises as an Otter-Grader assignment.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vgcourse.activations import ACTIVATIONS
from vgcourse.models import ARCHS, NORMS
from vgcourse.profiling import PROFILE_INITS, Profile, profile
from vgcourse.training import OPTIMIZERS

if TYPE_CHECKING:
    from vgcourse.diagnose import DiagnosisReport


def _number(cast: Callable[[str], float], ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse ``type``: ``cast(text)`` if ``ok`` of it, else an error saying ``what`` was expected."""

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_float = _number(float, lambda v: v > 0, "a positive number")
_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The built-in model spec and its fixed batch, shared by ``profile`` and ``diagnose``."""
    parser.add_argument("--arch", choices=ARCHS, default="mlp")
    parser.add_argument("--depth", type=_positive_int, default=10)
    parser.add_argument("--width", type=_positive_int, default=64)
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    parser.add_argument("--init", choices=PROFILE_INITS, default="default")
    parser.add_argument("--norm", choices=NORMS, default=None)
    parser.add_argument("--seq-len", type=_positive_int, default=20)
    parser.add_argument("--seed", type=_non_negative_int, default=0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; invalid values exit with status 2 and list the valid choices."""
    parser = argparse.ArgumentParser(prog="vgcourse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser("profile", help="one forward/backward pass: per-layer gradient statistics")
    _add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    d = commands.add_parser(
        "diagnose", help="flag vanishing/exploding gradients, dead and saturated units, with suggestions"
    )
    _add_model_arguments(d)
    d.add_argument("--steps", type=_positive_int, default=1, help="training steps on the batch (default: 1)")
    d.add_argument("--lr", type=_positive_float, default=0.01, help="learning rate (default: 0.01)")
    d.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    d.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    d.add_argument(
        "--plot", metavar="FILE", default=None, help="also save the report's figure (.png, .svg, .pdf)"
    )

    s = commands.add_parser("student-notebooks", help="write the chapters without solution cells or outputs")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument(
        "--book",
        default="_build/colab",
        help="folder of the reader notebooks (default: _build/colab, written by make book)",
    )

    g = commands.add_parser("grade", help="execute submitted notebooks and check their exercises")
    g.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb")
    g.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    g.add_argument(
        "--timeout",
        type=_positive_float,
        default=600.0,
        help="seconds per notebook, a hard limit (default: 600)",
    )
    g.add_argument("--kernel", default="python3", help="Jupyter kernel with vgcourse installed")
    g.add_argument("--jobs", type=_positive_int, default=1, help="notebooks graded at once (default: 1)")
    g.add_argument("--chapter", default=None, help="grade this chapter's exercises for every submission")
    g.add_argument("--roster", default=None, help="CSV with columns file,student (default: file names)")

    o = commands.add_parser(
        "export-otter", help="write a chapter's exercises as an Otter-Grader assignment (one question each)"
    )
    o.add_argument("--chapter", required=True, help="the chapter whose exercises become the questions")
    o.add_argument("--out", required=True, metavar="DIR", help="folder for the master notebook and dist/")
    o.add_argument(
        "--no-assign", action="store_true", help="write the master notebook only (no `otter assign`)"
    )
    return parser


def format_table(result: Profile) -> str:
    """A plain-text table, one row per layer (input to output), then one row per time step."""

    def fmt(value: float) -> str:
        return "-" if not math.isfinite(value) else f"{value:.3e}"

    header = f"{'layer':<16}{'grad_norm':>12}{'grad_std':>12}{'act_std':>12}{'dead':>10}{'saturated':>11}"
    lines = [
        f"{result.arch} depth={result.depth} width={result.width} activation={result.activation} "
        f"init={result.init} norm={result.norm} seed={result.seed}",
        header,
    ]
    for layer in result.layers:
        lines.append(
            f"{layer.name:<16}{fmt(layer.grad_norm):>12}{fmt(layer.grad_std):>12}{fmt(layer.act_std):>12}"
            f"{fmt(layer.dead_frac):>10}{fmt(layer.saturated_frac):>11}"
        )
    if result.steps:
        lines.append(f"{'time step':<16}{'|dL/dx_t|':>12}")
        lines.extend(f"{t:<16}{fmt(g):>12}" for t, g in enumerate(result.steps))
    return "\n".join(lines)


def run_diagnose(args: argparse.Namespace) -> DiagnosisReport:
    """``diagnose`` on the built-in model (``profiling.standard_model``) and its fixed batch of 128: the
    same report as ``diagnose(standard_model(...), nn.CrossEntropyLoss(), standard_batch(...), ...)``."""
    from torch import nn

    from vgcourse.diagnose import diagnose
    from vgcourse.profiling import standard_batch, standard_model

    model = standard_model(**_model_options(args), seed=args.seed)
    batch = standard_batch(args.arch, args.seq_len, 128, args.seed)
    return diagnose(
        model, nn.CrossEntropyLoss(), batch, steps=args.steps, lr=args.lr, optimizer=args.optimizer
    )


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--arch`` ... ``--norm`` options of ``profile`` and ``diagnose``: `standard_model`'s arguments."""
    return {name: getattr(args, name) for name in ("arch", "depth", "width", "activation", "init", "norm")}


def _check_figure_path(parser: argparse.ArgumentParser, path: str) -> None:
    """Exit 2 unless matplotlib can write a figure to ``path``: a known format (its suffix), an existing
    folder."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix[1:].lower()
    if suffix and suffix not in formats:
        parser.error(f"--plot: cannot write the format {suffix!r}; valid: {', '.join(sorted(formats))}")
    if not Path(path).parent.is_dir():
        parser.error(f"--plot: no such folder {str(Path(path).parent)!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vgcourse`` console script and ``python -m vgcourse``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("profile", "diagnose") and args.norm is not None and args.arch != "resmlp":
        parser.error(f"--norm is only available with --arch resmlp (got --arch {args.arch})")
    if args.command == "profile":
        result = profile(**_model_options(args), seq_len=args.seq_len, seed=args.seed)
        print(json.dumps(result.to_json_dict()) if args.json else format_table(result))
    elif args.command == "diagnose":
        if args.plot is not None:
            _check_figure_path(parser, args.plot)  # before the run, which may take a while
        report = run_diagnose(args)
        print(json.dumps(report.to_dict()) if args.json else report.to_text())
        if args.plot is not None:
            from vgcourse.plots.diagnose import diagnosis

            try:
                diagnosis(report).savefig(args.plot)
            except OSError as error:
                parser.error(f"--plot: {error}")
            print(f"wrote {args.plot}", file=sys.stderr)
    elif args.command == "student-notebooks":
        from vgcourse.instructor import student_notebooks

        try:
            written = student_notebooks(args.book, args.out_dir)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print(f"wrote {len(written)} student notebooks to {args.out_dir}")
    elif args.command == "grade":
        from vgcourse.instructor import grade, read_roster, summary

        missing = [p for p in args.submissions if not Path(p).is_file()]
        if missing:
            parser.error(f"no such submission: {', '.join(missing)}")

        try:
            submissions = grade(
                args.submissions,
                out_csv=args.out,
                timeout=args.timeout,
                kernel_name=args.kernel,
                jobs=args.jobs,
                chapter=args.chapter,
                roster=read_roster(args.roster) if args.roster else None,
            )
        except (ValueError, OSError) as error:  # OSError: the roster or the CSV's folder is missing
            parser.error(str(error))
        print(summary(submissions))
        print(f"wrote {args.out}")
    elif args.command == "export-otter":
        from vgcourse.otter_export import export_otter

        try:
            master = export_otter(args.chapter, args.out, assign=not args.no_assign)
        except (ValueError, ModuleNotFoundError, OSError, RuntimeError) as error:  # OSError: --out is a file
            parser.error(str(error))
        print(f"wrote {master}" + ("" if args.no_assign else f" and {master.parent / 'dist'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
