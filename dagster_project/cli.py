"""The ``rosie`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rosie_pipeline.paths import RosieHome


#: Sizes that suit the demo's small sample on a 2-core CPU: a small vocabulary, short rows, a larger
#: validation share, and the tiny preset trained for a few minutes in all (the bootstrap phases take the
#: sizes for this machine). ``rosie demo`` writes them into the home's settings.yaml, so that `rosie run`,
#: automation and the UI go on building with them.
DEMO_SETTINGS: dict[str, dict[str, object]] = {
    "rosie_tokenizer": {"vocab_size": 4096},
    "pretrain_shards": {"seq_len": 128, "val_permille": 200},
    "personality_dialogues": {"target": 3000, "chitchat_limit": 500},
    "emotion_dialogues": {"chitchat_limit": 1000},
    "memory_dialogues": {"count": 2500, "distractor_conversations": 300},
    "dialogue_shards": {"seq_len": 128},
    "base_model": {"steps": 60},
    "personality_model": {"steps": 200},
    "rosie_model": {"steps": 200, "lr": 0.002, "emotion_head_fit_rows": 320},
    # held-out documents are the pretrain shards' validation share
    "model_evaluation": {"val_permille": 200},
    "bootstrap_evaluation": {"val_permille": 200},
}


def _run(args: argparse.Namespace) -> int:
    from dagster_project.definitions import build_definitions
    from dagster_project.headless import prepare_instance, run_selection
    from dagster_project.settings import SettingsError, layered, load_run_config

    home = RosieHome.from_env(args.home)
    try:
        defs = build_definitions(str(home.root))
    except SettingsError as exc:
        print(f"rosie: {exc}", file=sys.stderr)
        return 2
    selection: object = getattr(args, "selection", None)
    config: dict[str, dict[str, object]] = {}
    try:
        if getattr(args, "job", None):  # a named job: its selection and its run config, as the UI launches it
            jobs = {job.name: job for job in defs.jobs or ()}
            if args.job not in jobs:
                raise ValueError(f"no job {args.job!r}; jobs: {', '.join(sorted(jobs))}")
            if selection:
                raise ValueError("give a selection or --job, not both")
            job = jobs[args.job]
            selection = job.selection
            config = layered(config, {name: entry.get("config", {})
                                      for name, entry in ((job.config or {}).get("ops") or {}).items()})
        if getattr(args, "config", None):
            config = layered(config, load_run_config(args.config))
    except ValueError as exc:
        print(f"rosie: {exc}", file=sys.stderr)
        return 2
    instance = prepare_instance(home)
    print(f"rosie: home {home.root}; materializing {args.job if getattr(args, 'job', None) else selection or 'the whole graph'}",
          flush=True)

    began = time.monotonic()

    def started(number: int, total: int, assets: list[str], partition: str | None) -> None:
        elapsed = int(time.monotonic() - began)
        where = f"[{partition}]" if partition else ""
        print(f"  [{number}/{total}] {', '.join(assets)}{where} … ({elapsed // 60}m{elapsed % 60:02d}s so far)",
              flush=True)

    def show(outcome) -> None:  # type: ignore[no-untyped-def]
        where = f"[{outcome.partition}]" if outcome.partition else ""
        mark = "ok  " if outcome.success else "FAIL"
        checks = f"  checks failed: {', '.join(outcome.failed_checks)}" if outcome.failed_checks else ""
        print(f"  {mark} {', '.join(outcome.assets)}{where}  run {outcome.run_id[:8]}{checks}", flush=True)

    try:
        report = run_selection(defs, instance, home, selection, on_run=show, op_config=config, on_start=started)
    except ValueError as exc:
        print(f"rosie: {exc}", file=sys.stderr)
        return 2
    if not report.outcomes:
        print("rosie: nothing to run: no landed files for the selected partitioned assets "
              f"(drop files into {home.landing})")
    if report.failed:
        print(f"rosie: {len(report.failed)} of {len(report.outcomes)} runs failed; "
              "see the run logs with `make ui`", file=sys.stderr)
        return 1
    print(f"rosie: {len(report.outcomes)} runs succeeded; outputs under {home.lake}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import shutil

    from dagster_project.settings import remember_settings
    from rosie_pipeline.samples import PYWB_DEMO_WARCS, pywb_sample_warcs

    home = RosieHome.from_env(args.home)
    home.create_layout()
    print("rosie demo: landing a small real sample (pywb's WARC captures from PyPI; conversations from the "
          "chitchat-dataset package), running the whole graph on CPU: Rosie's own model (the tiny preset) "
          "and the bootstrap approach (LoRA on SmolLM2-135M-Instruct), each evaluated and registered", flush=True)
    warcs = pywb_sample_warcs()
    for name in PYWB_DEMO_WARCS:
        target = home.landing_dir("common_crawl") / name
        if not target.exists():
            shutil.copy(warcs / name, target)
    print(f"rosie demo: the demo's settings go into {remember_settings(home, DEMO_SETTINGS)}", flush=True)
    status = _run(argparse.Namespace(home=args.home, selection=None))
    if status == 0:
        print(
            "rosie demo: done.\n"
            f"  models:      {home.models / 'rosie_model'} (scratch), {home.models / 'rosie_bootstrap'} (bootstrap); "
            "the better one is models:/rosie@champion\n"
            f"  evaluation:  {home.lake / 'scorecard_comparison' / 'comparison.md'} (both scorecards; every number in "
            f"{home.lake / 'model_evaluation' / 'results.json'} and {home.lake / 'bootstrap_evaluation' / 'results.json'})\n"
            "  talk to her: `rosie chat`\n"
            f"  curation:    {home.lake / 'curation_report' / 'report.md'}\n"
            "  look around: `make ui` (Dagster on http://127.0.0.1:3000, MLflow on http://127.0.0.1:5000)\n"
            "Books and Reddit dumps you drop into landing/books and landing/reddit are picked up the same way."
        )
    return status


def _download_cc(args: argparse.Namespace) -> int:
    from rosie_pipeline.ingest.download import DownloadOptions, download_crawl

    home = RosieHome.from_env(args.home)
    home.create_layout()
    options = DownloadOptions(
        base_url=args.base_url, retries=args.retries, min_interval_s=args.min_interval, timeout_s=args.timeout
    )
    paths = download_crawl(args.crawl, args.kind, home.landing_dir("common_crawl"), args.limit, options)
    print(f"rosie: {len(paths)} files in {home.landing_dir('common_crawl')}")
    return 0


def _ui(args: argparse.Namespace) -> int:
    """The Dagster UI and the MLflow UI on 127.0.0.1, both on this Rosie home, until Ctrl-C."""
    import signal
    import subprocess
    import time

    from dagster_project.headless import prepare_home
    from dagster_project.training_report import tracking_uri

    home = RosieHome.from_env(args.home)
    prepare_home(home)
    bin_dir = Path(sys.executable).parent
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    mlflow = [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", tracking_uri(home), "--default-artifact-root",
              (home.mlflow / "artifacts").as_uri(), "--host", args.host, "--port", str(args.mlflow_port)]
    dagster = [str(bin_dir / "dagster"), "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    print(f"rosie: Dagster UI on http://{args.host}:{args.port}, MLflow UI on http://{args.host}:{args.mlflow_port} "
          f"(home {home.root}); Ctrl-C stops both", flush=True)
    # the MLflow links Dagster shows point at this MLflow UI, whatever its port
    links = {**os.environ, "ROSIE_MLFLOW_UI": f"http://{args.host}:{args.mlflow_port}"}
    processes = [subprocess.Popen(mlflow), subprocess.Popen(dagster, env=links)]
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(timeout=30)
    return 0 if all(p.returncode in (0, -signal.SIGTERM) for p in processes) else 1


#: Commands that belong to the model package: run as ``python -m rosie_model COMMAND ...`` processes, so the
#: orchestration side never imports it (and a chat starts without Dagster).
MODEL_COMMANDS = {
    "train": "run one training phase (python -m rosie_model train --help)",
    "chat": "talk to Rosie in the terminal",
    "web": "a web chat with Rosie on 127.0.0.1",
    "serve": "Rosie behind the OpenAI API on 127.0.0.1:8000 (SillyTavern, Open WebUI, the openai package)",
    "memory": "list or forget what Rosie remembers",
    "card": "write Rosie as a character card (PNG and JSON, V2/V3) with SillyTavern presets",
    "export": "write a model folder in the Hugging Face Llama format",
}


def run_model_command(command: str, rest: Sequence[str], home: str | None) -> int:
    """``python -m rosie_model COMMAND REST...`` on this home, in the foreground; its exit status."""
    import subprocess

    env = {**os.environ, "ROSIE_HOME": str(RosieHome.from_env(home).root), "ROSIE_PROG": "rosie"}
    try:
        return subprocess.call([sys.executable, "-m", "rosie_model", command, *rest], env=env)
    except KeyboardInterrupt:  # the child got the same Ctrl-C and says goodbye itself
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rosie", description="Rosie: raw public text to a chatty little model.")
    parser.add_argument("--home", default=None, help="Rosie home (default: $ROSIE_HOME or ./.rosie)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialize the asset graph (or a selection) over landing/")
    run.add_argument("selection", nargs="?", default=None,
                     help="Dagster asset selection, e.g. 'group:ingest' or 'key:cc_documents' (default: all)")
    run.add_argument("--job", help="run a named job as the UI does (its selection and run config), e.g. "
                                   "bootstrap_training")
    run.add_argument("--config", type=Path, help="run config (YAML/JSON) as in the Launchpad: "
                                                "`ops: {ASSET: {config: {...}}}`, or `ASSET: {...}`")
    run.set_defaults(func=_run)

    demo = commands.add_parser("demo", help="land a small real sample and run the whole graph on it")
    demo.set_defaults(func=_demo)

    ui = commands.add_parser("ui", help="start the Dagster web UI on this Rosie home")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--mlflow-port", type=int, default=5000)
    ui.set_defaults(func=_ui)

    for name, text in MODEL_COMMANDS.items():  # their flags belong to rosie_model: passed through as they are
        commands.add_parser(name, help=text, add_help=False).set_defaults(func=None)

    download = commands.add_parser("download-cc", help="download Common Crawl WARC/WET files into landing/")
    download.add_argument("--crawl", required=True, help="crawl id, e.g. CC-MAIN-2024-10")
    download.add_argument("--kind", choices=["warc", "wet"], default="wet")
    download.add_argument("--limit", type=int, default=1, help="how many files of the crawl's list to fetch")
    download.add_argument("--base-url", default="https://data.commoncrawl.org/")
    download.add_argument("--retries", type=int, default=5)
    download.add_argument("--min-interval", type=float, default=1.0, help="seconds between requests")
    download.add_argument("--timeout", type=float, default=60.0)
    download.set_defaults(func=_download_cc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # keeps alembic/sqlite chatter out
    args, rest = build_parser().parse_known_args(argv)
    if args.command in MODEL_COMMANDS:  # everything after the command belongs to rosie_model
        return run_model_command(args.command, rest, args.home)
    if rest:
        build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
