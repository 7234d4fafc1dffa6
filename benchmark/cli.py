"""The ``rsbench`` command line, on top of both packages: ``benchmark.running`` (sweeps, pretraining, verify)
and ``benchmark.analysis`` (reports). A command is a ``_cmd_<name>(args) -> exit code`` function and its
sub-parser in :func:`build_parser`; heavy imports stay inside the command."""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports: a sweep's timing.json counts them

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from mmengine.config import DictAction  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from .running.provenance import REPO_ROOT  # noqa: E402

console = Console()
err_console = Console(stderr=True)
DEMO_SPEC = REPO_ROOT / "configs" / "sweeps" / "demo.py"
TRACK_HELP = ("send each cell's training curves to tensorboard, wandb and/or mlflow (comma-separated; local/offline), "
              "tagged with backbone, task, fraction and seeds; overrides the spec's `tracking`")  # fmt: skip


def _cmd_backbones(args: argparse.Namespace) -> int:
    import backbones

    table = Table(title="registered backbones")
    for col in ("name", "method", "arch", "description"):
        table.add_column(col)
    for name in backbones.list_backbones(args.pattern):
        entry = backbones.get_entry(name)
        table.add_row(name, entry.method, entry.arch, entry.description)
    console.print(table)
    return 0


def _cmd_data_list(args: argparse.Namespace) -> int:
    from rsdatasets import dataset_class, list_datasets
    from rsdatasets.download import describe

    table = Table(title="registered datasets (download: yes = `rsbench data download NAME`; login / manual: by hand)")
    for col in ("name", "class", "download", "description"):
        table.add_column(col)
    for name in list_datasets():
        cls = dataset_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        table.add_row(name, f"{cls.__module__}.{cls.__name__}", describe(name), doc[0] if doc else "")
    console.print(table)
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from rsdatasets.synthetic import synthesize

    for split in args.splits:
        path = synthesize(root=args.root, split=split, seed=args.seed, size=args.size, n=args.n, progress=True)
        console.print(f"{split}: {path}")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from rsdatasets.download import download

    root = download(args.name, args.root, sha256=args.sha256, keep_archive=args.keep_archive)
    console.print(f"{args.name}: {root} (check it: rsbench data check {root} --dataset {args.name})", soft_wrap=True)
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from rsdatasets.check import check_dataset, print_report

    report = check_dataset(args.dataset, args.root, full=not args.quick, **(args.options or {}))
    print_report(report, console)
    if not report.ok:
        err_console.print(f"rsbench: {args.dataset} at {args.root}: {len(report.bad_files)} problem(s), listed above")
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .analysis.summary import write_summary
    from .running.progress import print_plan
    from .running.spec import SweepSpec
    from .running.sweep import run_sweep

    spec_path = Path(args.spec)
    if not spec_path.is_file():
        raise FileNotFoundError(f"sweep spec {spec_path} does not exist; see configs/sweeps/ for examples")
    spec = SweepSpec.from_file(spec_path, args.cfg_options)
    if args.track is not None:  # experiment tracking changes no number and no cell hash (tasks/tracking.py)
        spec = replace(spec, tracking=args.track)
        spec.validate()
    run_dir = Path(args.run_dir) if args.run_dir else REPO_ROOT / "results" / "runs" / spec.name
    if args.dry_run:
        print_plan(spec.with_pretrained(run_dir), run_dir, console, force=args.force, jobs=args.jobs)
        return 0
    run_sweep(spec, run_dir, force=args.force, console=console, jobs=args.jobs, executor=args.executor,
              accept_stale=args.accept_stale, slurm=args.slurm, started=STARTED, summarize=write_summary)  # fmt: skip
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from .running.pretrain import build_runner

    runner = build_runner(args.config, args.work_dir, args.resume, args.ddp, args.cfg_options)
    runner.train()
    console.print(f"encoder checkpoint: {runner.work_dir}/encoder.pth")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """``rsbench convert NAME SRC DST``: any registered converter (backbones/convert.py), one report printer."""
    from backbones.convert import convert

    report = convert(args.method, args.src, args.dst, img_size=args.img_size, patch_size=args.patch_size,
                     dsm_init=args.dsm_init, teacher=args.teacher)  # fmt: skip
    for line in report.lines():
        console.print(line, soft_wrap=True, highlight=False)  # paths must stay on one line
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .analysis.summary import write_summary
    from .running.cells import expand_cells
    from .running.spec import SweepSpec
    from .running.store import ResultStore
    from .running.sweep import run_sweep

    name, _, checkpoint = args.backbone.partition(":")
    spec = SweepSpec(
        name=args.name,
        backbones=[dict(name=name, checkpoint=checkpoint or None, kwargs=dict(args.backbone_options or {}))],
        tasks=[args.task],
        dataset=dict(name=args.dataset, **(args.dataset_options or {})),
        fractions=[args.fraction],
        protocols=[args.protocol],
        split_seeds=[args.split_seed],
        train_seeds=[args.seed],
        modalities=args.modalities,
        budgets={args.task: dict(args.budget or {})},
        task_kwargs={args.task: dict(args.task_options or {})},
        tracking=args.track,
    )
    spec.validate()
    if checkpoint:  # a checkpoint that does not load is bad input: one line, exit 2, no row
        import backbones

        cell = expand_cells(spec)[0]
        backbones.build(name, cell.modalities, checkpoint, **cell.config["backbone_kwargs"])
    run_dir = Path(args.run_dir) if args.run_dir else REPO_ROOT / "results" / "runs" / spec.name
    run_sweep(spec, run_dir, force=args.force, console=console, ddp=args.ddp, summarize=write_summary)
    from mmengine.dist import is_main_process

    if not is_main_process():  # under DDP rank 0 writes the row and answers for the cell
        return 0
    chash = expand_cells(spec)[0].config_hash  # after the sweep: under DDP its world size is in the hash
    rows = ResultStore(run_dir).load()
    status = rows.loc[rows["config_hash"] == chash, "status"]
    if status.empty or (status != "ok").all():  # the one cell failed: its row says why; the exit code too
        err_console.print(f"rsbench: the cell failed: {status.iloc[0] if len(status) else 'no row'}", highlight=False)
        return 1
    return 0


def _cmd_results_verify(args: argparse.Namespace) -> int:
    from .running.verify import verify

    result = verify(args.run_dir, fix=args.fix)
    for check, problems in result.problems.items():
        mark = "[green]ok[/green]" if not problems else f"[red]{len(problems)} problem(s)[/red]"
        console.print(f"{check:11s} {mark}")
        for line in problems[:20]:
            console.print(f"    {line}", highlight=False, soft_wrap=True)
        if len(problems) > 20:
            console.print(f"    ... and {len(problems) - 20} more")
    return 0 if result.ok else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from .analysis.render import parse_formats
    from .analysis.summary import report_run

    report_run(args.run_dir, args.out, parse_formats(args.format), console=console)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    args.spec = str(DEMO_SPEC)
    return _cmd_sweep(args)


def _option_value(text: str):
    """``key=value`` values: ints, floats, booleans and None by their plain spelling, comma lists, else strings.

    Stricter than Python literals on purpose: tile ids such as ``2_10`` must stay strings.
    """
    if "," in text:
        return [_option_value(t) for t in text.split(",") if t]
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)", text):
        return float(text)
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


class OptionsAction(argparse.Action):
    """Collects ``key=value`` pairs into a dict (see ``_option_value``)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        options = dict(getattr(namespace, self.dest) or {})
        for item in values:
            key, sep, value = item.partition("=")
            if not sep or not key:
                parser.error(f"{option_string} expects key=value pairs, got {item!r}")
            options[key] = _option_value(value)
        setattr(namespace, self.dest, options)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs and the tests)."""
    parser = argparse.ArgumentParser(
        prog="rsbench",
        description="Benchmark remote-sensing pretraining (MSSDF, CMID, MAE, random init) under label-fraction sweeps.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of its one-line summary")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("backbones", help="list registered backbones")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'random_init_*'")
    p.set_defaults(func=_cmd_backbones)

    data = sub.add_parser("data", help="datasets: list them, generate the synthetic benchmark, check a real copy")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    p = data_sub.add_parser("list", help="list the registered datasets (built-in and $RSBENCH_PLUGINS)")
    p.set_defaults(func=_cmd_data_list)
    p = data_sub.add_parser("synth", help="generate (or reuse) the synthetic benchmark in the cache")
    p.add_argument("--root", default=None, help="cache directory (default $RSBENCH_DATA or ~/.cache/rsbench/data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="tile size in pixels")
    p.add_argument("--n", type=int, default=None, help="samples per split (default: the split's standard size)")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test", "pool"])
    p.set_defaults(func=_cmd_data_synth)
    p = data_sub.add_parser("check", help="validate a real dataset in its original layout; exit 1 on problems")
    p.add_argument("root", help="the dataset's folder as distributed")
    p.add_argument("--dataset", required=True, help="a name from `rsbench data list`")
    p.add_argument("--quick", action="store_true", help="headers only (GeoTIFF datasets), seconds instead of minutes")
    p.add_argument("--options", "--dataset-options", dest="options", nargs="+", action=OptionsAction,
                   help="dataset options, e.g. image=IRRG tiles=2_10,2_11")  # fmt: skip
    p.set_defaults(func=_cmd_data_check)
    p = data_sub.add_parser("download", help="download a dataset with a public direct link (sha256-verified, "
                            "resumable) and unpack it in the layout its reader expects")  # fmt: skip
    p.add_argument("name", help="a dataset marked 'yes' in `rsbench data list`")
    p.add_argument("--root", default=None, help="target folder (default $RSBENCH_DATA_ROOT/NAME or data/NAME)")
    p.add_argument("--sha256", default=None, help="the archive's sha256, if you verified another one")
    p.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive after unpacking")
    p.set_defaults(func=_cmd_data_download)

    p = sub.add_parser("pretrain", help="pretrain a backbone with an mmengine config (MSSDF, ...)")
    p.add_argument("config", help="e.g. configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py")
    p.add_argument("--work-dir", default=None, help="default results/pretrain/<config name>")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the work dir")
    p.add_argument("--ddp", choices=["none", "pytorch", "slurm"], default="none",
                   help="DDP across the ranks of this job: pytorch under torchrun, slurm under srun")
    p.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override config keys, e.g. train_cfg.max_epochs=1"
    )
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("finetune", help="train and evaluate one cell: a backbone on a task at one label fraction")
    p.add_argument("--task", required=True, help="a registered task (segmentation, classification, detection, "
                   "change_detection, depth, or a plugin's)")
    p.add_argument("--backbone", required=True, help="registered name, optionally NAME:CHECKPOINT")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of the training labels, in (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the label subset")
    p.add_argument("--modalities", nargs="+", default=["rgb", "dsm"])
    p.add_argument("--protocol", choices=["frozen", "finetune"], default="finetune",
                   help="frozen: encoder fixed, features cached, task side trained (classification: linear probe)")
    p.add_argument("--name", default="finetune", help="run name (results/runs/<name>)")
    p.add_argument("--track", default=None, help=TRACK_HELP)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--force", action="store_true", help="recompute even if this cell has a result")
    p.add_argument("--ddp", choices=["none", "pytorch", "slurm"], default="none",
                   help="DDP inside the cell across the ranks of this job: pytorch under torchrun, slurm under srun")
    for opt, example in (("dataset", "size=64"), ("backbone", "img_size=64 patch_size=8"), ("task", "head_channels=64"),
                         ("budget", "max_iters=100 batch_size=8 lr=5e-4")):  # fmt: skip
        names = [f"--{opt}-options"] + (["--budget"] if opt == "budget" else [])
        p.add_argument(*names, dest=f"{opt}_options" if opt != "budget" else "budget", nargs="+",
                       action=OptionsAction, help=f"e.g. {example}")  # fmt: skip
    p.set_defaults(func=_cmd_finetune)

    results = sub.add_parser("results", help="check a run's result store")
    results_sub = results.add_subparsers(dest="results_command", required=True, metavar="RESULTS_COMMAND")
    p = results_sub.add_parser("verify", help="duplicates, missing cells, non-finite values, CSV vs parquet, stale "
                               "rows, mixed code versions; exit 1 when anything is found")  # fmt: skip
    p.add_argument("run_dir", help="a sweep's output folder")
    p.add_argument("--fix", action="store_true", help="first fold appended cells into results.parquet / .csv "
                   "and rewrite a CSV that is behind the parquet file")  # fmt: skip
    p.set_defaults(func=_cmd_results_verify)

    p = sub.add_parser("report", help="write a run's report: Markdown, LaTeX table, self-contained HTML")
    p.add_argument("run_dir", help="a sweep's output folder, e.g. results/runs/demo")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR)")
    p.add_argument("--format", default="md,tex,html", help="comma-separated subset of md,tex,html")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("convert", help="convert official weights (MSSDF, MAE, CMID, any timm ViT) to an rsbench "
                       "encoder checkpoint")  # fmt: skip
    p.add_argument("method", help="a registered converter: mssdf, mae, cmid, timm (backbones/convert.py)")
    p.add_argument("src", help="official file, e.g. vit_base_500.pth")
    p.add_argument("dst", help="output, e.g. checkpoints/mssdf_vit_b16.pth")
    p.add_argument("--img-size", type=int, default=None, help="input size to build for (default: the source's)")
    p.add_argument("--patch-size", type=int, default=None)
    p.add_argument("--dsm-init", choices=["rgb_sum", "none"], default="rgb_sum")
    p.add_argument("--teacher", action="store_true", help="take the EMA teacher instead of the student")
    p.set_defaults(func=_cmd_convert)

    from .running.diagnose import add_parser as add_diagnose_parser

    add_diagnose_parser(sub, OptionsAction, DictAction)

    for name, helptext in (("sweep", "run a sweep spec"), ("demo", "run the demo sweep on the synthetic benchmark")):
        p = sub.add_parser(name, help=helptext)
        if name == "sweep":
            p.add_argument("spec", help="sweep config, e.g. configs/sweeps/demo.py")
        p.add_argument("--run-dir", default=None, help="output directory (default results/runs/<spec name>)")
        again = p.add_mutually_exclusive_group()
        again.add_argument("--resume", action="store_true", help="skip cells with results in the store (the default)")
        again.add_argument("--force", action="store_true", help="recompute cells that already have results")
        p.add_argument("--accept-stale", action="store_true",
                       help="keep rows computed by other code than this checkout's instead of recomputing them")
        p.add_argument("--jobs", type=int, default=1, help="local worker processes (cores split between them); "
                       "with --executor slurm, at most this many jobs at once")  # fmt: skip
        p.add_argument("--executor", choices=["local", "slurm"], default="local",
                       help="slurm: one submitit job per cell")  # fmt: skip
        p.add_argument("--slurm", nargs="+", action=OptionsAction, default=None, metavar="KEY=VALUE",
                       help="e.g. partition=gpu time_min=240 gpus=1 cpus=8 mem_gb=64 (docs/sweeps.md)")  # fmt: skip
        p.add_argument("--dry-run", action="store_true",
                       help="list the cells, their status and time estimate; run nothing")  # fmt: skip
        p.add_argument("--track", default=None, help=TRACK_HELP)
        p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                       help="override spec fields, e.g. fractions=[1.0] train_seeds=[0] dataset.root=/data/x")
        p.set_defaults(func=_cmd_sweep if name == "sweep" else _cmd_demo)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rsbench")
    except PackageNotFoundError:
        return "dev"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rsbench`` console script; bad input ends in one error line and exit code 2."""
    from .running.preemption import EXIT_PREEMPTED, Preempted, handle_sigterm

    args = build_parser().parse_args(argv)
    # mmseg warns about its own internal use of build_loss on every model build.
    warnings.filterwarnings("ignore", message=".*build_loss.*")
    try:
        with handle_sigterm():  # SIGTERM (Slurm pre-emption): stop at the next iteration, resumable
            return args.func(args)
    except Preempted as exc:
        err_console.print(f"rsbench: {exc}; run the same command again to resume (exit {EXIT_PREEMPTED})",
                          highlight=False, soft_wrap=True)  # fmt: skip  (one line: job logs are grepped)
        return EXIT_PREEMPTED
    except (ValueError, KeyError, OSError) as exc:  # OSError: missing files, permissions, a full disk
        if args.debug:  # the same error types also come from bugs: keep the way to their traceback open
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err_console.print(f"[red]rsbench: error:[/red] {message}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("rsbench: interrupted; finished cells are saved, re-run the same command to resume",
                          soft_wrap=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
