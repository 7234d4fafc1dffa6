"""Reports: Markdown, LaTeX and HTML files from a result store, the `rsbench report` command, a real browser."""

import json
import math
import os
import re
import shutil
import subprocess
import zlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from benchmark.analysis.summary import report_run, write_summary
from benchmark.cli import main
from benchmark.running.rundir import RunDir
from benchmark.running.store import ResultStore
from benchmark.running.tilestats import save_tile_stats

FRACTIONS = (0.05, 0.25, 1.0)
# mean score per backbone and fraction; mssdf matches random init at 100 % from 25 %, mae never does; the supervised
# control (the aggregate's 1) sits between mssdf and random init
CURVES = {
    "random_init_vit_t16": (30.0, 45.0, 60.0),
    "mssdf_vit_t16": (50.0, 62.0, 70.0),
    "mae_vit_t16": (35.0, 50.0, 58.0),
    "supervised_vit_t16": (40.0, 55.0, 65.0),
}
#: Corrupted test passes of every segmentation cell: what each backbone loses in mIoU under gaussian_noise 2
DROPS = {"random_init_vit_t16": 8.0, "mssdf_vit_t16": 2.0, "mae_vit_t16": 5.0, "supervised_vit_t16": 6.0}
#: What a cell records when it starts (benchmark.running.provenance.cell_provenance), as the report reads it.
PROVENANCE = {"environment": {"sys.platform": "linux", "Python": "3.11.7 (main) [GCC 12.2.0]",
                              "CUDA available": "False", "PyTorch": "2.14.1+cu130", "MMEngine": "0.10.7"},
              "libraries": {"mmsegmentation": "1.2.2", "timm": "1.0.31"}, "config": {"budget": {"max_iters": 200}}}


N_TILES = 40
_SHARED = np.random.default_rng(0).normal(0, 0.05, N_TILES)  # tile difficulty shared by every model


def _centred(x):
    return x - x.mean()


def _tile_stats(run_dir, chash, task, value, seed):
    """Per-tile statistics whose metric is exactly ``value`` (paired: the tiles' difficulty is shared)."""
    own = np.random.default_rng(zlib.crc32(chash.encode())).normal(0, 0.01, N_TILES)
    if task == "segmentation":
        stats = {"intersect": ((value / 100 + _centred(_SHARED) + _centred(own)) * 100)[:, None],
                 "union": np.full((N_TILES, 1), 100.0)}  # fmt: skip
    else:  # depth: RMSE pools squared errors over tiles of 100 valid pixels
        stats = {"n": np.full(N_TILES, 100.0), "sse": 100 * value**2 * (1 + _centred(_SHARED) + _centred(own))}
    save_tile_stats(RunDir(run_dir).tile_stats(chash), stats, task=task)


def make_run(run_dir, corruptions: bool = False):
    """A run directory as a sweep leaves it: results, tile statistics and one training log per cell, one failed
    cell with its log; with ``corruptions``, a corrupted test pass of every segmentation cell too."""
    rows = []
    for backbone, curve in CURVES.items():
        method = backbone.split("_vit")[0]
        for fraction, mean in zip(FRACTIONS, curve):
            for seed, delta in enumerate((-1.0, 1.0)):
                chash = f"{backbone[:5]}{int(fraction * 100):03d}s{seed}"
                base = dict(method=method, backbone=backbone, arch="vit_t16", checkpoint_hash="-", dataset="synthetic",
                            modalities="rgb+dsm", fraction=fraction, n_train=int(200 * fraction), split_seed=0,
                            train_seed=seed, status="ok", code_version="v0.1-test", device="cpu (test, 2 threads)",
                            wall_time_s=3.0, created="2026-11-25T00:00:00+00:00")  # fmt: skip
                rows += [dict(base, task="segmentation", config_hash=chash, metric=m, value=mean + delta + off)
                         for m, off in (("mIoU", 0.0), ("OA", 20.0))]  # fmt: skip
                rmse = (100 - mean - delta) / 40
                rows += [dict(base, task="depth", config_hash=chash + "d", metric="RMSE", value=rmse)]
                _tile_stats(run_dir, chash, "segmentation", mean + delta, seed)
                _tile_stats(run_dir, chash + "d", "depth", rmse, seed)
                if corruptions:
                    bad = mean + delta - DROPS[backbone]
                    rows += [dict(base, task="segmentation", config_hash=chash + "~gn2", metric="mIoU", value=bad,
                                  corruption="gaussian_noise", severity=2, trained_config_hash=chash)]  # fmt: skip
                    _tile_stats(run_dir, chash + "~gn2", "segmentation", bad, seed)
                (run_dir / "cells" / chash / "provenance.json").write_text(json.dumps(PROVENANCE))
    rows.append(dict(rows[0], train_seed=7, config_hash="failedcell", value=math.nan,
                     status="failed: RuntimeError: CUDA out of memory"))  # fmt: skip
    (run_dir / "cells" / "failedcell").mkdir(parents=True)
    (run_dir / "cells" / "failedcell" / "error.log").write_text("Traceback ...\nRuntimeError: CUDA out of memory\n")
    (run_dir / "cells" / "failedcell" / "provenance.json").write_text(
        json.dumps({**PROVENANCE, "config": {"budget": {"max_iters": 3}}})
    )
    (run_dir / "sweep_spec.py").write_text('name = "tiny"\ntasks = ["segmentation", "depth"]\n')
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "segmentation_synthetic_random_init_vit_t16_f0.05_s0-7_failedcell.log").write_text(
        'cell: ...\nconfig_hash: failedcell\nconfig: {"budget": {"max_iters": 3}}\n\nstatus: failed: ...\n'
    )
    ResultStore(run_dir).append(rows)
    return run_dir


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run"), corruptions=True)
    out = tmp_path_factory.mktemp("report")
    written = report_run(run, out, console=Console(file=open(os.devnull, "w")))
    return out, written


def test_report_writes_all_three_formats_and_the_figures(report_dir):
    out, written = report_dir
    names = sorted(p.name for p in written)
    assert names == ["aggregate.csv", "aggregate.png", "baseline_monotonicity.csv", "comparisons.csv", "compute.csv",
                     "label_efficiency_depth.png", "label_efficiency_segmentation.png", "label_savings.csv",
                     "label_savings.png", "performance_profile.png", "report.html", "report.md", "report.tex",
                     "robustness.csv", "stats.csv", "verdict_heatmap.png"]  # fmt: skip
    for path in written:
        assert path.stat().st_size > (100 if path.suffix == ".csv" else 500), path
    assert not list(out.glob("*.tmp*"))


def test_markdown_has_the_tables_savings_failures_and_provenance(report_dir):
    md = (report_dir[0] / "report.md").read_text()
    # mssdf is best at 100 % (70 +- 1.41 over two seeds), with an interval over seeds and test tiles
    best = re.search(r"\*\*70\.00 ± 1\.41 \[(\d+\.\d+), (\d+\.\d+)\]\*\*", md)
    assert best and float(best.group(1)) < 70 < float(best.group(2))
    assert "seeds x tiles" in md
    assert "25 % of labels (saves 75 %)" in md  # mssdf 62 > 60 at 25 % (resolved), 50 < 60 at 5 %
    assert "not reached (worse at every fraction)" in md  # mae: 58 < 60 even at 100 %
    assert "Paired differences vs random init" in md and "Does random init improve with labels?" in md
    assert "RuntimeError: CUDA out of memory" in md and "cells/failedcell/error.log" in md
    assert "logs/segmentation_synthetic_random_init_vit_t16_f0.05_s0-7_failedcell.log" in md
    assert '"max_iters": 3' in md  # the failed cell's config, from its provenance.json
    assert "v0.1-test" in md and "cpu (test, 2 threads)" in md
    assert "PyTorch" in md and "2.14.1+cu130" in md and "MMEngine" in md  # from the cells' provenance.json
    assert "mmsegmentation" in md and "timm" in md  # versions where the report was made
    assert 'name = "tiny"' in md  # the sweep spec found in the run directory
    assert "no published number matches this run" in md
    assert "![segmentation on synthetic (finetune): mIoU" in md


def test_the_summaries_a_reader_looks_for_first(report_dir):
    out = report_dir[0]
    md = (out / "report.md").read_text()
    sections = re.findall(r"^## (.+)$", md, flags=re.M)
    assert sections[:6] == ["Verdict", "Label efficiency", "Per task", "Robustness to corruptions", "Compute",
                            "All tables"]  # fmt: skip
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    # mssdf is +20/+17/+10 over random init where the control is +10: its normalised score is 2, 1.53, 2 at the
    # three fractions (depth alike), so its IQM is above the control's 1, and every run beats random init.
    mssdf = next(line for line in verdict.splitlines() if line.startswith("| mssdf_vit_t16"))
    iqm, p_better = (float(x) for x in re.findall(r"(\d\.\d\d) \[", mssdf)[:2])
    assert 1.5 < iqm <= 2.0 and p_better == 1.0
    assert re.search(r"\| supervised_vit_t16 \(reference\) \| 1\.00 \[0\.\d\d, 1\.\d\d\]", verdict)
    assert "![Paired difference of the label-efficiency AUC to random init" in verdict
    # One narrow table per task, each fraction's mean with its CI and the AUC.
    tasks = md.split("## Per task")[1].split("\n## ")[0]
    assert "### segmentation: mIoU ↑" in tasks and "### depth: RMSE ↓" in tasks and re.search(r"\|\s+AUC\s+\|", tasks)
    stats = pd.read_csv(out / "stats.csv")
    auc = stats[(stats["task"] == "segmentation") & (stats["backbone"] == "mssdf_vit_t16")]
    # AUC of 50, 62, 70 at 5, 25, 100 %: log-trapezoids (ln 5 (50 + 62) / 2 + ln 4 (62 + 70) / 2) / ln 20.
    expected = (np.log(5) * 56 + np.log(4) * 66) / np.log(20)
    assert auc["auc"].iloc[0] == pytest.approx(expected) and (auc["auc_verdict"] == "better").all()
    # Robustness: every backbone's drop under the corruption with its paired CI, mssdf the least degraded.
    robust = pd.read_csv(out / "robustness.csv").set_index(["backbone", "fraction"])
    for backbone, drop in DROPS.items():
        row = robust.loc[(backbone, 1.0)]
        assert row["drop"] == pytest.approx(drop, abs=1e-9) and row["ci_low"] < drop < row["ci_high"]
    least = md.split("### Which backbone degrades least")[1].split("\n### ")[0]
    assert re.search(r"\| segmentation +\| gaussian_noise 2 +\| mssdf_vit_t16 +\| mae_vit_t16 +\| \+3\.00", least)
    assert re.search(r"\| yes +\|", least)
    assert "### Compute behind every row" in md and "pretraining FLOPs" in md


def test_a_robustness_row_is_never_counted_as_a_clean_row_in_any_table(tmp_path, report_dir):
    clean = make_run(tmp_path / "clean")
    report_run(clean, tmp_path / "out", formats=["md"])
    robust_out = report_dir[0]
    for name in ("stats", "comparisons", "label_savings", "baseline_monotonicity", "aggregate"):
        a, b = (pd.read_csv(d / f"{name}.csv") for d in (tmp_path / "out", robust_out))
        pd.testing.assert_frame_equal(a, b, obj=name)
    compute = [pd.read_csv(d / "compute.csv").drop(columns=["adapt_s"]) for d in (tmp_path / "out", robust_out)]
    pd.testing.assert_frame_equal(*compute, obj="compute")

    def clean_sections(md: str) -> str:
        kept = [s for s in md.split("\n## ")[1:] if not s.startswith(("Robustness", "Per-seed", "Provenance"))]
        return "\n## ".join(kept).split("generated:")[0]

    a = clean_sections((tmp_path / "out" / "report.md").read_text())
    b = clean_sections((robust_out / "report.md").read_text())
    assert a == b and "Method x task" in a and "Label savings" in a
    # ... and the robustness rows are there to be counted apart: 24 passes, each a pair of two cells' tiles.
    assert "24 corrupted test passes" in (robust_out / "report.md").read_text()


def test_several_datasets_of_a_task_get_their_own_columns_and_curves(tmp_path):
    rows = [
        dict(method=m, backbone=f"{m}_vit_t16", arch="vit_t16", task="segmentation", dataset=d, fraction=1.0,
             n_train=10, split_seed=0, train_seed=0, metric="mIoU", value=v, status="ok", config_hash=f"{m}{d}")
        for m, d, v in (("random_init", "potsdam", 60.0), ("mssdf", "potsdam", 70.0),
                        ("random_init", "vaihingen", 50.0), ("mssdf", "vaihingen", 40.0))
    ]  # fmt: skip
    ResultStore(tmp_path).append(rows)
    written = {p.name for p in report_run(tmp_path, tmp_path / "out", formats=["md"])}
    assert {"label_efficiency_segmentation_potsdam.png", "label_efficiency_segmentation_vaihingen.png"} <= written
    md = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in md.splitlines() if "segmentation potsdam mIoU ↑ 100 %" in line)
    assert "segmentation vaihingen mIoU ↑ 100 %" in header
    assert "**70.00**" in md and "**50.00**" in md  # best per dataset, not one value picked for both


def test_a_run_with_both_protocols_gets_the_frozen_vs_fine_tuning_section(tmp_path, report_dir):
    scores = {"frozen": {"random_init": 50.0, "mssdf": 60.0, "mae": 55.0},
              "finetune": {"random_init": 70.0, "mssdf": 60.0, "mae": 65.0}}  # the order reversed
    rows = [
        dict(method=m, backbone=f"{m}_vit_t16", arch="vit_t16", task="segmentation", dataset="synthetic",
             protocol=p, fraction=0.05, n_train=10, split_seed=0, train_seed=s, metric="mIoU", value=v + 0.1 * s,
             status="ok", config_hash=f"{m}{p}{s}")
        for p, by_method in scores.items() for m, v in by_method.items() for s in range(3)
    ]  # fmt: skip
    ResultStore(tmp_path).append(rows)
    report_run(tmp_path, tmp_path / "out", formats=["md"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Frozen vs fine-tuning" in md and "Kendall tau -1.00" in md
    assert "Frozen vs fine-tuning" not in (report_dir[0] / "report.md").read_text()  # one protocol: no section


def test_depth_ranks_favour_the_lowest_rmse(report_dir):
    md = (report_dir[0] / "report.md").read_text()
    ranks = md.split("## Ranks per task and label fraction")[1].split("## ")[0]
    mssdf_line = next(line for line in ranks.splitlines() if "mssdf_vit_t16" in line)
    assert mssdf_line.count("**1**") == 6  # best at every fraction of both tasks (RMSE = (100 - score) / 40)
    random_line = next(line for line in ranks.splitlines() if "random_init_vit_t16" in line)
    assert "| 3 " in random_line or "| 3" in random_line


def test_latex_is_booktabs_with_bold_best_and_compiles_ish(report_dir):
    tex = (report_dir[0] / "report.tex").read_text()
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    n_tables = body.count("\\begin{table}")
    # aggregate, AUC and AUC vs random init, one per task (2), robustness and which degrades least, compute; method
    # x task, paired, monotone, ranks, label savings (published vs ours is empty here)
    assert n_tables == 13
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert body.count(rule) == n_tables
    assert body.count("\\begin{tabular}") == body.count("\\end{tabular}") == n_tables
    assert re.search(r"\\textbf\{70\.00 \$\\pm\$ 1\.41 \[", body)
    unescaped = re.sub(r"\\[{}%_&#$]", "", body)
    depth = 0
    for ch in unescaped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0, "unbalanced braces"
    assert unescaped.count("$") % 2 == 0, "unbalanced math mode"
    text = body.replace("{%\n", "{\n")  # a "%" that ends a line on purpose (no space after \resizebox's brace)
    assert not re.search(r"(?<!\\)[_%#]", text), "unescaped LaTeX special character"
    for spec, rows in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", body, flags=re.S):
        for line in (r for r in rows.splitlines() if r.endswith("\\\\")):
            cells = re.split(r"(?<!\\)&", line)
            width = sum(int(m.group(1)) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", c)) else 1 for c in cells)
            assert width == len(spec), f"row spans {width} of {len(spec)} columns: {line}"
    assert not any(s in body for s in "±↑≥→✓✗")


def test_html_is_self_contained(report_dir):
    page = (report_dir[0] / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:|//|[\w./-]+\.(png|css|js))""", page)
    assert page.count('<img src="data:image/png;base64,') == 6
    assert "font-weight: bold" in page and "<table" in page


@pytest.mark.slow
def test_report_command_formats_and_errors(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["report", str(run), "--out", str(tmp_path / "md_only"), "--format", "md"]) == 0
    assert sorted(p.name for p in (tmp_path / "md_only").glob("report.*")) == ["report.md"]
    assert "Method x task" in capsys.readouterr().out

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no results" in err and "rsbench sweep" in err

    assert main(["report", str(run), "--format", "md,pdf"]) == 2
    assert "unknown report format" in capsys.readouterr().err

    assert main(["report", str(run), "--format", "tex"]) == 0  # default output folder: the run directory
    assert (run / "report.tex").is_file() and not (run / "report.html").exists()


def test_a_run_where_every_cell_failed_still_gets_a_report(tmp_path):
    row = dict(method="mae", backbone="mae_vit_t16", task="depth", dataset="us3d", fraction=1.0, n_train=0,
               split_seed=0, train_seed=0, metric="RMSE", value=math.nan, status="failed: FileNotFoundError: no data",
               config_hash="x1")  # fmt: skip
    ResultStore(tmp_path).append([row])
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    written = report_run(tmp_path, tmp_path / "out", console=console)
    assert sorted(p.name for p in written if p.suffix != ".csv") == ["report.html", "report.md", "report.tex"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "1 cells (1 failed), tasks: none finished" in md and "FileNotFoundError: no data" in md


def test_markdown_cells_keep_their_pipes_inside_the_cell():
    import pandas as pd

    from benchmark.analysis.tables import plain_table, to_markdown

    md = to_markdown(plain_table(pd.DataFrame({"status": ["failed: ValueError: a | b"], "n": [1]}), "t"))
    assert "a \\| b" in md and md.splitlines()[-1].count("|") == 4  # 3 borders + the escaped one


@pytest.mark.slow
def test_end_of_sweep_prints_the_table_and_writes_the_report(tmp_path):
    run = make_run(tmp_path / "run")
    spec = SimpleNamespace(name="tiny", tasks=["segmentation", "depth"], task_kwargs={})
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    write_summary(ResultStore(run).load(), spec, run, console)
    printed = console.export_text()
    assert "segmentation: mIoU per label fraction and seed" in printed
    assert "Method x task" in printed and "70.00 ± 1.41" in printed
    for name in ("report.md", "report.tex", "report.html", "table.md", "label_efficiency_segmentation.png"):
        assert (run / name).is_file(), name
    assert (run / "table.md").read_text() == (run / "report.md").read_text()


# ---- a real browser renders the page ----

BROWSER_HELP = (
    "needs a headless Chromium: `apt-get install -y chromium` (Debian), or `RSBENCH_BROWSER=1 bash scripts/install.sh`;"
    " set RSBENCH_CHROMIUM=/path/to/chromium for another location (docs/reports.md)"
)
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "rsbench-check";
  out.textContent = JSON.stringify({
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    rows: document.querySelectorAll("table.results tbody tr").length,
  });
  document.body.appendChild(out);
});
</script>"""


def _browser():
    path = os.environ.get("RSBENCH_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    if path is None:
        if os.environ.get("RSBENCH_REQUIRE_BROWSER"):
            pytest.fail(f"RSBENCH_REQUIRE_BROWSER is set but no Chromium was found: {BROWSER_HELP}")
        pytest.skip(f"no Chromium on PATH: this check {BROWSER_HELP}")
    return path


def _headless(browser, tmp_path, *args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_html_renders_tables_and_images_in_headless_chromium(report_dir, tmp_path):
    browser = _browser()
    page = (report_dir[0] / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK_SCRIPT + "\n</body>"))
    done = _headless(browser, tmp_path, "--dump-dom", probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    found = re.search(r'<pre id="rsbench-check">(.*?)</pre>', dom)
    assert found, "the page's load event never ran (no check element in the DOM)"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(check["images"]) == 6
    assert all(complete and width > 300 and height > 200 for complete, width, height in check["images"]), check
    assert check["rows"] >= 3 + 3 + 2  # method x task, ranks, label savings at least
    assert "mssdf_vit_t16" in dom and "not reached (worse at every fraction)" in dom


FIRST_SCREEN_SCRIPT = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "rsbench-screen";
  const top = el => el ? el.getBoundingClientRect().top : null;
  const verdict = document.getElementById("verdict");
  const overflowing = [...document.querySelectorAll("#verdict .scroll, #tasks .scroll, #label-efficiency .scroll,"
                                                    + " #robustness .scroll")]
    .filter(d => d.scrollWidth > d.clientWidth + 1).map(d => d.id);
  out.textContent = JSON.stringify({
    height: window.innerHeight, width: window.innerWidth, page_width: document.documentElement.scrollWidth,
    verdict: top(verdict), aggregate: top(verdict && verdict.querySelector("table")),
    heatmap: top(verdict && verdict.querySelector("img")), first_section: document.querySelector("section").id,
    overflowing: overflowing,
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
def test_the_first_screen_holds_the_verdict_and_nothing_scrolls_sideways(report_dir, tmp_path):
    browser = _browser()
    probe = tmp_path / "probe.html"
    probe.write_text((report_dir[0] / "report.html").read_text().replace("</body>", FIRST_SCREEN_SCRIPT + "</body>"))
    done = _headless(browser, tmp_path, "--window-size=1280,1000", "--dump-dom", probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="rsbench-screen">(.*?)</pre>', done.stdout)
    assert found, "the page's load event never ran"
    screen = json.loads(found.group(1).replace("&quot;", '"'))
    assert screen["first_section"] == "verdict"
    # The aggregate table and the heatmap start on the first screen, above the fold.
    assert 0 < screen["verdict"] < screen["aggregate"] < screen["heatmap"] < screen["height"] * 0.8, screen
    assert screen["page_width"] <= screen["width"], screen  # the page does not scroll sideways
    assert screen["overflowing"] == [], screen  # nor does any table of the verdict, curves, tasks or robustness


@pytest.mark.slow
def test_html_screenshot_is_not_blank(report_dir, tmp_path):
    import matplotlib.image

    browser = _browser()
    shot = tmp_path / "shot.png"
    done = _headless(browser, tmp_path, f"--screenshot={shot}", "--window-size=1100,1400",
                     (report_dir[0] / "report.html").as_uri())  # fmt: skip
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1100)
    ink = (pixels.mean(axis=2) < 0.5).mean()  # share of dark pixels: text, rules, plot lines
    assert 0.005 < ink < 0.5, ink
    colourful = (pixels.max(axis=2) - pixels.min(axis=2) > 0.3).mean()  # plot lines and bands are coloured
    assert colourful > 0 or pixels.std() > 0.05
