"""The ``fenchel-cvx`` command line: ``train`` a Fenchel lifted network (or a backprop baseline) and ``plot`` runs.

Main job, no arguments needed::

    fenchel-cvx train

trains the batched (Algorithm 2) 784-300-10 ReLU cross-entropy network on the MNIST subset shipped with the
package (10,000 train / 2,000 test) for 3 epochs in the fast default mode (one running-curvature W-step per block,
15 float32 FISTA steps per X-update, ``fenchel_cvx.settings.FAST_MODE``; any mode flag, e.g. ``--curvature batch``,
selects the certified MM mode of Appendix C instead); then an Adam network of the same architecture, initial
weights, batches and epochs; and prints both final test accuracies. Every run writes a run directory
(:mod:`fenchel_cvx.runs`); ``fenchel-cvx plot RUN_DIR ...`` overlays their test-accuracy curves (paper Figs. 1-2)
into a PNG.

The flags of ``train`` are generated from :mod:`fenchel_cvx.settings`, one per setting, with the same defaults
and help as the Python API (``fenchel-cvx train --help`` lists them). Errors the user can fix (a missing data
file, a bad option, a checkpoint of another run) print one message in the command line's words and exit with
status 2; an interrupted run prints how to resume it and exits with 130. This module imports neither torch nor
CVXPY until a command runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import FenchelError
from .settings import RunConfig, Spec, fields_of, resumable, unread_settings

__all__ = ["FLAGS", "build_parser", "main"]

#: Options of ``train`` that are actions, not settings (where to write, whether to resume, what to compare).
ACTIONS = ("--out", "--resume", "--compare", "--no-progress")


def _flag(path: str, spec: Spec) -> str:
    return spec.flag or "--" + path.rpartition(".")[2].replace("_", "-")


#: Setting (dotted path) -> its flag, for every field of :class:`~fenchel_cvx.settings.RunConfig`.
FLAGS: dict[str, str] = {path: _flag(path, spec) for path, _, spec in fields_of(RunConfig)}
#: The flag that turns a boolean setting off (``--no-<flag>`` unless its spec names another, e.g. ``--exact``).
FLAGS_OFF: dict[str, str] = {path: spec.flag_off or "--no-" + _flag(path, spec)[2:]
                             for path, _, spec in fields_of(RunConfig) if spec.kind == "bool"}


# -- one flag per setting ------------------------------------------------------------------------------------------
def _parse(spec: Spec, path: str, text: str) -> Any:
    """Command-line text -> the setting's value, checked by the setting itself (errors in argparse's words)."""
    name = path.rpartition(".")[2]
    if spec.none_word is not None and text.strip().lower() == spec.none_word:
        return None
    try:
        if spec.kind == "int":
            value: Any = int(text)
        elif spec.kind == "float":
            value = float(text)
        elif spec.kind == "layers":
            values = [float(t) for t in text.split(",")]
            value = values[0] if len(values) == 1 else tuple(values)
        elif spec.kind == "sizes":
            value = tuple(int(t) for t in text.replace("x", "-").split("-"))
        elif spec.kind == "json":
            value = json.loads(text)
        else:
            value = text
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {_expects(spec)}, got {text!r}") from None
    try:
        return spec.check(name, value)
    except FenchelError as exc:
        raise argparse.ArgumentTypeError(_in_flag_words(str(exc)).partition(": ")[2] or str(exc)) from None


def _expects(spec: Spec) -> str:
    words = {"layers": "a number or comma-separated numbers (one per layer, e.g. 1,100)",
             "sizes": "layer sizes joined by '-', e.g. 784-300-10", "json": "a JSON object"}
    text = words.get(spec.kind) or spec.expects().split(", or None")[0]
    return text + (f", or '{spec.none_word}'" if spec.none_word else "")


def _default_text(f: Any, spec: Spec) -> str:
    default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    if default is None:
        return spec.none or "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, dict):
        return json.dumps(default)
    return f"{default:g}" if isinstance(default, float) else str(default)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`~fenchel_cvx.settings.RunConfig`, grouped as the settings are."""
    groups: dict[str, Any] = {}
    for path, f, spec in fields_of(RunConfig):
        group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        flag = FLAGS[path]
        text = f"{spec.help} (default: {_default_text(f, spec)})"
        if spec.kind == "bool":
            pair = group.add_mutually_exclusive_group()
            off = spec.flag_off or "--no-" + flag[2:]
            pair.add_argument(flag, dest=path, action="store_const", const=True, default=argparse.SUPPRESS,
                              help=text)
            pair.add_argument(off, dest=path, action="store_const", const=False, default=argparse.SUPPRESS,
                              help=f"the opposite of {flag}")
        elif spec.kind == "choice":
            group.add_argument(flag, dest=path, choices=spec.choices, default=argparse.SUPPRESS, help=text)
        else:
            group.add_argument(flag, dest=path, metavar=spec.metavar or "X", default=argparse.SUPPRESS, help=text,
                               type=lambda t, s=spec, p=path: _parse(s, p, t))


def settings_given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user set on the command line, by dotted path (``{"train.epochs": 5}``)."""
    return {path: getattr(args, path) for path in FLAGS if hasattr(args, path)}


def _in_flag_words(message: str) -> str:
    """A settings error message in the command line's words: ``batch_size: ...`` -> ``--batch-size: ...``,
    ``inexact=True`` -> ``--inexact``, ``device='cpu'`` -> ``--device cpu``."""
    words = {**FLAGS, **{action[2:].replace("-", "_"): action for action in ACTIONS}}
    for path, flag in sorted(words.items(), key=lambda kv: -len(kv[0])):
        name = re.escape(path.rpartition(".")[2])
        message = re.sub(rf"(?<![\w.-]){name}=True\b", flag, message)
        message = re.sub(rf"(?<![\w.-]){name}=False\b", FLAGS_OFF.get(path, "--no-" + flag[2:]), message)
        message = re.sub(rf"(?<![\w.-]){name}=(['\"]?)([^\s'\",;)]*)\1", rf"{flag} \2", message)
        message = re.sub(rf"^{name}(\[\d+\])?:", rf"{flag}\1:", message)
    return message


# -- the parser ----------------------------------------------------------------------------------------------------
def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, e.g. 0.93,0.98, got {text!r}") \
            from None


def _glue_negative_ylim(argv: list[str]) -> list[str]:
    """``--ylim -1,-0.5`` as ``--ylim=-1,-0.5``: argparse takes a value that starts with ``-`` for an option."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--ylim":
            value = next(it, None)
            if value is None:
                out.append(a)
                break
            try:
                _floats(value)
            except argparse.ArgumentTypeError:
                out += [a, value]
            else:
                out.append(f"--ylim={value}")
        else:
            out.append(a)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fenchel-cvx`` (subcommands ``train`` and ``plot``)."""
    parser = argparse.ArgumentParser(
        prog="fenchel-cvx",
        description="Fenchel lifted networks (Gu, Askari, El Ghaoui, AISTATS 2020): train by block coordinate "
                    "descent, compare with backprop, plot. Run `fenchel-cvx train` for the main job.")
    parser.add_argument("--version", action="version", version=f"fenchel-cvx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,plot}")

    t = sub.add_parser(
        "train", help="train a network into a run directory (default: Fenchel BCD vs Adam on the MNIST subset)",
        description="Train a Fenchel lifted network by block coordinate descent (Algorithms 1-2) or a backprop\n"
                    "baseline, into a run directory (config.json, metrics.csv, checkpoint.pt, model.npz,\n"
                    "summary.json). With no options: batched 784-300-10 ReLU cross-entropy on the shipped MNIST\n"
                    "subset, Appendix C hyperparameters, next to an Adam run of the same budget. Every setting\n"
                    "below is a field of fenchel_cvx.settings, with the same default in the Python API.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  fenchel-cvx train                                   # main job: Fenchel vs Adam\n"
               "  fenchel-cvx train --dataset mnist --data-dir data --epochs 10 --out runs/fig2\n"
               "  fenchel-cvx train --out runs/fig2 --resume --epochs 12   # continue / extend a run\n"
               "  fenchel-cvx train --batch-size full --loss mse --compare sgd   # Algorithm 1, Fig. 1 setting\n"
               "  fenchel-cvx train --method lau-bcd --batch-size full --loss mse   # an earlier lifted model\n"
               "  fenchel-cvx plot runs/fig2 -o fig2.png")
    _add_settings(t)
    g = t.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="run directory (default: runs/<method>-<dataset>-<settings that "
                   "differ from the defaults>-s<seed>-<time>)")
    keep = ", ".join(flag for path, flag in FLAGS.items() if path.rpartition(".")[2] in resumable())
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   f"(only {keep} may change; another setting may be given at the value the run used)")
    g.add_argument("--compare", choices=("adam", "sgd", "none"), help="also train this baseline with the same "
                   "architecture, initial weights, batches and epochs, into DIR/compare-<name> (default: adam "
                   "for --method fenchel, none otherwise; with --resume, the comparisons DIR already holds)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")

    p = sub.add_parser("plot", help="overlay test-accuracy curves of run directories into a PNG",
                       description="Overlay a history column (default: test accuracy) against epochs for several "
                                   "run directories, like the paper's Figs. 1-2. A run directory's compare-* runs "
                                   "are included; a folder of run directories (a benchmark output) works too.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `fenchel-cvx train`")
    p.add_argument("-o", "--output", metavar="PNG", help="output file (default: <first RUN_DIR>/<metric>.png)")
    p.add_argument("--metric", default="test_acc", help="history column on the y axis: test_acc (default), "
                   "train_acc, test_loss, train_loss, J, primal, penalty")
    p.add_argument("--x", default="epoch", choices=("epoch", "step", "time"), help="x axis (default: epoch)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--ylim", type=_floats, metavar="LO,HI", help="range of the y axis, e.g. 0.93,0.98 to tell close "
                   "curves apart (default: fit every curve)")
    p.add_argument("--no-nested", action="store_true", help="ignore compare-* runs inside the run directories")
    return parser


# -- the commands --------------------------------------------------------------------------------------------------
def _fmt(v: Any, spec: str) -> str:
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return "-"


def _report(summaries: Sequence[dict]) -> str:
    lines = [f"{'method':<12}{'epochs':>7}{'test acc':>10}{'train acc':>11}{'train time':>12}{'s/epoch':>9}  run dir"]
    for s in summaries:
        f = s.get("final") or {}
        lines.append(f"{s['method']:<12}{s['epochs']:>7}{_fmt(f.get('test_acc'), '.4f'):>10}"
                     f"{_fmt(f.get('train_acc'), '.4f'):>11}{_fmt(s.get('time'), '.1f') + ' s':>12}"
                     f"{_fmt(s.get('time_per_epoch'), '.2f'):>9}  {s['run_dir']}")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    given = settings_given(args)
    if args.resume:
        if not args.out:
            raise FenchelError("--resume: expected --out DIR naming the run directory to continue, got none")
        out = Path(args.out)
    else:
        cfg = RunConfig().with_values(given)  # checks the settings before anything heavy is imported
        if args.out:
            out = Path(args.out)
        else:
            from .runs import default_run_name
            out = Path(default_run_name(cfg))
        args.out = str(out)  # so that an interruption message names it
    from .runs import _saved_config
    from .shards import barrier, broadcast_object, init_from_environment, leave

    run_cfg = _saved_config(out).with_values(given) if args.resume else cfg
    if not init_from_environment(run_cfg.train.dist_backend, run_cfg.train.device):
        return _train_and_report(args, given, out, run_cfg)
    try:  # started by torchrun: one process of a data-parallel run
        out = Path(broadcast_object(str(out)))  # rank 0's default name (it holds a timestamp)
        args.out = str(out)
        rc = _train_and_report(args, given, out, run_cfg)
        # every process past its last collective before any tears its gloo pairs down (an early teardown can
        # abort a peer at exit); on the error path a barrier could wait for a process that never comes
        barrier()
        return rc
    finally:
        leave()


def _train_and_report(args: argparse.Namespace, given: dict, out: Path, run_cfg: RunConfig) -> int:
    from .runs import CONFIG, _saved_config, load_data, train_run
    from .shards import world

    lead = world()[0] == 0  # the other processes of a data-parallel run train alongside; rank 0 reports
    comparisons = _comparisons(args, run_cfg, out)
    methods = [run_cfg.method, *comparisons]
    unread = unread_settings(given, methods)
    if unread and lead:
        print(f"fenchel-cvx train: warning: {', '.join(FLAGS[p] for p in unread)} set but not used: "
              f"{'an option' if len(unread) == 1 else 'options'} of another trainer; this run trains "
              f"{' and '.join(methods)}", file=sys.stderr)
    if args.resume and args.compare is None and not comparisons and run_cfg.method == "fenchel" and lead:
        print(f"fenchel-cvx train: note: {out} holds no comparison run (started with --compare none, or stopped "
              "before its comparison began); pass --compare adam to train one", file=sys.stderr)
    progress = not args.no_progress and lead
    summary = train_run(None, out, resume=args.resume, overrides=given, progress=progress)
    cfg = _saved_config(out)
    if summary["already_done"] and lead:
        print(f"fenchel-cvx train: {out} has already trained {summary['epochs']} of {cfg.train.epochs} epochs; "
              f"nothing left to do (pass --epochs N with N > {summary['epochs']} to extend it)")
    summaries = [summary]
    data = None
    for compare in comparisons:
        cdir = out / f"compare-{compare}"
        data = data if data is not None else load_data(cfg)
        if args.resume and (cdir / CONFIG).exists():
            # the main run has already refused any other change; the comparison differs in its method only
            keep = {k: v for k, v in given.items() if k.rpartition(".")[2] in resumable()}
            summaries.append(train_run(None, cdir, resume=True, overrides=keep, progress=progress, data=data))
        else:
            summaries.append(train_run(cfg.replace(method=compare), cdir, progress=progress, data=data))
    if not lead:
        return 0
    sizes = summary["sizes"]
    print(f"fenchel-cvx: {'-'.join(map(str, sizes))} {cfg.network.activation} {cfg.network.loss} on "
          f"{cfg.data.dataset} ({summary['n_train']} train / {summary['n_test']} test), batch "
          f"{cfg.train.batch_size or 'full'}, {cfg.train.epochs} epochs, seed {cfg.train.seed}, {cfg.train.device} "
          f"{cfg.train.dtype}")
    print(_report(summaries))
    print(f"plot the curves with: fenchel-cvx plot {out}")
    return 0


def _comparisons(args: argparse.Namespace, cfg: RunConfig, out: Path) -> list[str]:
    """The baselines to train beside the run in ``out``: ``--compare`` when given; on ``--resume`` without it,
    the ones the run directory already holds (a resumed run continues what it started, nothing more); else
    Adam for a Fenchel run."""
    from .runs import CONFIG

    if args.compare is not None:
        chosen = [args.compare]
    elif args.resume:
        chosen = sorted(d.name.removeprefix("compare-") for d in out.glob("compare-*") if (d / CONFIG).is_file())
    else:
        chosen = ["adam" if cfg.method == "fenchel" else "none"]
    return [c for c in chosen if c not in ("none", cfg.method)]


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plots import figure_path, plot_accuracy
    from .runs import collect_runs

    runs = collect_runs(args.runs, nested=not args.no_nested)
    output = figure_path(args.output, "-o") if args.output else Path(args.runs[0]) / f"{args.metric}.png"
    if args.ylim is not None and len(args.ylim) != 2:
        raise FenchelError(f"--ylim: expected two numbers LO,HI (e.g. 0.93,0.98), got {args.ylim}")
    plot_accuracy(runs, output, metric=args.metric, x=args.x, title=args.title,
                  ylim=None if args.ylim is None else tuple(args.ylim))
    print(f"wrote {output} ({', '.join(runs)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fenchel-cvx`` console script; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(_glue_negative_ylim(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _cmd_train(args) if args.command == "train" else _cmd_plot(args)
    except FenchelError as exc:
        print(f"fenchel-cvx {args.command}: error: {_in_flag_words(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" --out {args.out}" if getattr(args, "out", None) else " --out <run dir>"
        print(f"\nfenchel-cvx {args.command}: interrupted; the last completed epoch is checkpointed, continue "
              f"with: fenchel-cvx train{where} --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m fenchel_cvx.cli`
    sys.exit(main())
