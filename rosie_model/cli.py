"""``python -m rosie_model COMMAND``: the one entry point of the model package.

    python -m rosie_model train --phase base --config train.json [--set key=value ...]
    torchrun --nproc-per-node 2 -m rosie_model train ...        (DDP; FSDP2 with --set distributed=fsdp)
    python -m rosie_model evaluate --model-dir DIR --spec spec.json --out results.json
    python -m rosie_model register --model-dir DIR --evaluation results.json [--dataset MANIFEST ...]
    python -m rosie_model export SOURCE OUT_DIR [--weights base|personality|final] [--gguf [--quant f16|q8_0]]
    python -m rosie_model bootstrap-tokenizer --pretrained SRC --rosie-tokenizer DIR --out DIR
    python -m rosie_model chat|web|serve [--model models:/rosie@champion] [--user U] [sampling flags]
    python -m rosie_model memory list|forget [IDS] [--user U] [--all]

The ``rosie`` command line (dagster_project) runs these as processes, and Dagster launches the first four
through Pipes; the package itself never needs the orchestrator. Each command imports only its own room, so
``chat`` starts without the training engine. A bad setting exits 2 with one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: How the user called us: ``rosie`` runs these commands as ``python -m rosie_model`` with ROSIE_PROG=rosie.
PROG = os.environ.get("ROSIE_PROG") or "python -m rosie_model"


class UsageError(Exception):
    """A setting or input the user can fix; printed as one line, exit status 2."""


def _train(args: argparse.Namespace) -> int:
    from rosie_model.training.config import TrainConfig
    from rosie_model.training.config import Stop
    from rosie_model.training.guard import FolderBusy, exit_with
    from rosie_model.training.trainer import train

    try:
        config = TrainConfig.from_sources(args.config, args.set, args.phase)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    exit_with()  # a launcher that names itself in ROSIE_EXIT_WITH takes this trainer with it when it dies
    try:
        result = train(config)
    except Stop as interrupted:
        return 128 + interrupted.signum
    except FolderBusy as exc:
        raise UsageError(str(exc)) from exc
    if int(os.environ.get("RANK", "0")) == 0:
        print_result({"steps": result.steps, "final_loss": result.final_loss, "val_loss": result.val_loss,
                      "tokens_seen": result.tokens_seen, "weights": result.weights, "run_id": result.run_id})
    return 0


def print_result(result: dict[str, Any]) -> None:
    """A command's result as one JSON line on stdout, for the script that runs it. Under a Dagster step the
    result is in the run's log and metadata already, and the terminal of `rosie demo` is not handed raw JSON."""
    from rosie_model.core.reporting import launched_by_dagster

    if not launched_by_dagster():
        print(json.dumps(result))


class PipesLogHandler(logging.Handler):
    """Log records as Dagster log lines, through the Pipes session."""

    def __init__(self, pipes) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        self.pipes.log.info(record.getMessage())


def _evaluate(args: argparse.Namespace) -> int:
    from rosie_model.core.checkpoint import write_text_atomic
    from rosie_model.core.reporting import pipes_session
    from rosie_model.evaluation.evaluate import evaluate, log_to_mlflow

    from rosie_model.training.guard import exit_with

    exit_with()  # an evaluation outlives no launcher that names itself in ROSIE_EXIT_WITH
    with pipes_session() as pipes:
        progress = logging.getLogger("rosie.evaluate")  # what the evaluation is doing, in the run's log or on stderr
        progress.setLevel(logging.INFO)
        progress.addHandler(PipesLogHandler(pipes) if pipes is not None else logging.StreamHandler(sys.stderr))
        progress.propagate = False  # the root logger's console handler would print every line a second time
        results = evaluate(args.model_dir, json.loads(args.spec.read_text(encoding="utf-8")), args.max_rows,
                           diagnostics=not args.no_diagnostics)
        results["mlflow_run_id"] = log_to_mlflow(results, args.experiment)
        write_text_atomic(args.out, json.dumps(results, indent=2))
        summary = {k: v for k, v in results.items() if k != "scorecard_rows"}
        print_result(summary)
        if pipes is not None:
            pipes.log.info(f"evaluation: {json.dumps(summary)}")
    return 0


def _register(args: argparse.Namespace) -> int:
    from rosie_model.core.checkpoint import write_text_atomic
    from rosie_model.core.reporting import pipes_session
    from rosie_model.evaluation.registry import register

    # logging the chat model copies the model folder into the store: no page of progress bars for that
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with pipes_session() as pipes:
        result = register(args.model_dir, json.loads(args.evaluation.read_text(encoding="utf-8")), args.dataset,
                          dict(t.split("=", 1) for t in args.tag))
        if args.out:
            write_text_atomic(args.out, json.dumps(result, indent=2))
        print_result(result)
        if pipes is not None:
            pipes.log.info(f"registered {result['model_uri']}: champion={result['champion']} ({result['reason']})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from rosie_model.export.hf import export_hf

    folder = export_hf(args.source, args.out_dir, args.weights)
    print(f"Hugging Face folder: {folder}")
    if args.gguf:
        from rosie_model.export.gguf import export_gguf

        print(f"GGUF ({args.quant}): {export_gguf(folder, folder / f'rosie-{args.quant}.gguf', args.quant)}")
    return 0


def _bootstrap_tokenizer(args: argparse.Namespace) -> int:
    from rosie_model.core.bootstrap import BootstrapSettings, prepare_tokenizer, resolve_pretrained

    try:
        pretrained = resolve_pretrained(args.pretrained)
        out = prepare_tokenizer(BootstrapSettings(pretrained), args.rosie_tokenizer, args.out)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(str(exc)) from exc
    print(json.dumps({"tokenizer": str(out), "pretrained": pretrained}))
    return 0


def _load_chat(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The chat model named on the command line (the home's champion by default)."""
    import dataclasses

    from rosie_model.serving.chat import Rosie

    given = {key: value for key, value in (("max_new_tokens", args.max_tokens), ("temperature", args.temperature),
                                           ("top_k", args.top_k), ("top_p", args.top_p),
                                           ("repetition_penalty", args.repetition_penalty), ("seed", args.seed))
             if value is not None}
    print(f"rosie: loading {args.model}{' (int8)' if args.int8 else ''}…", flush=True)
    rosie = Rosie.load(args.model, int8=args.int8)  # with the sampling settings chosen for this model
    try:
        rosie.options = dataclasses.replace(rosie.options, **given)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return rosie


def _chat(args: argparse.Namespace) -> int:
    from rosie_model.core.layout import feedback_db
    from rosie_model.serving import terminal
    from rosie_model.serving.feedback import FeedbackStore

    return terminal.run(_load_chat(args), args.user, FeedbackStore(feedback_db()))


def _serve(args: argparse.Namespace) -> int:
    """``rosie serve`` and ``rosie web``: one server (the OpenAI API and the web chat page); they differ in
    the default port and in what they announce."""
    import os

    from rosie_model.core.layout import feedback_db
    from rosie_model.serving import api
    from rosie_model.serving.feedback import FeedbackStore

    key = args.api_key or os.environ.get("ROSIE_API_KEY") or None
    if args.host not in ("127.0.0.1", "::1", "localhost") and key is None:
        raise UsageError(f"serving on {args.host} lets other machines talk to Rosie: give an API key with "
                         "--api-key KEY or ROSIE_API_KEY (clients send it as `Authorization: Bearer KEY`)")
    rosie = _load_chat(args)
    try:
        return api.run(rosie, FeedbackStore(feedback_db()), args.host, args.port, key, args.max_waiting, args.user,
                       web=args.command == "web")
    except OSError as exc:  # the port is taken, the host is not this machine's
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {exc}") from exc


def _memory(args: argparse.Namespace) -> int:
    from rosie_model.core.layout import memory_db
    from rosie_model.serving.memory_store import MemoryStore

    path = memory_db()
    store = MemoryStore(path, read_only=args.action == "list")
    if args.action == "list":
        entries = store.list(args.user)
        for entry in entries:
            print(f"[{entry.id}] {entry.user_id}  {entry.kind:4}  {entry.text}")
        print(f"rosie: {len(entries)} memories{f' of {args.user}' if args.user else ''} in {path}")
        return 0
    if not args.all and not args.ids:
        raise UsageError("say which memories to forget (ids from `rosie memory list`) or --all")
    if args.all:
        count = store.forget(args.user) if args.user else sum(store.forget(u) for u in store.users())
    else:
        count = store.forget(args.user, args.ids)
    print(f"rosie: forgot {count} memories")
    return 0


def _card(args: argparse.Namespace) -> int:
    from rosie_model.core.layout import rosie_home
    from rosie_model.serving.card import write_card

    rosie = _load_chat(args)
    out = args.out or rosie_home() / "card"
    print(f"rosie: writing {rosie.label} as a character card (her greeting and examples are decoded now)…", flush=True)
    files = write_card(rosie, out)
    print(f"rosie: card {files.png} (Character Card V3 + V2 chunks) and {files.json}; SillyTavern text-completion "
          f"presets in {files.presets[0].parent} (context, instruct, sysprompt)")
    return 0


def _chat_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", default="models:/rosie@champion",
                         help="a model folder or registry URI (default: models:/rosie@champion of this home)")
    command.add_argument("--user", default="local", help="whose long-term memory to use (default: local)")
    command.add_argument("--int8", action="store_true", help="dynamic int8 quantization for faster CPU replies")
    # unset: the settings chosen for the model when it was evaluated (its sampling.json), else the defaults
    command.add_argument("--max-tokens", type=int)
    command.add_argument("--temperature", type=float)
    command.add_argument("--top-k", type=int)
    command.add_argument("--top-p", type=float)
    command.add_argument("--repetition-penalty", type=float)
    command.add_argument("--seed", type=int)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from rosie_model.core.layout import WEIGHT_NAMES
    from rosie_model.export.gguf import QUANTS

    parser = argparse.ArgumentParser(prog=prog, description="Rosie's model package: train, evaluate, register, "
                                     "export and talk to a model.")
    commands = parser.add_subparsers(dest="command", required=True)
    add: Callable[..., argparse.ArgumentParser] = commands.add_parser

    train = add("train", help="one training phase (the engine behind base_model, personality_model, rosie_model)")
    train.add_argument("--phase", choices=("base", "personality", "emotion_memory"))
    train.add_argument("--config", help="JSON file with TrainConfig fields")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    train.set_defaults(func=_train)

    evaluate = add("evaluate", help="evaluate a model folder on held-out sets written by the pipeline")
    evaluate.add_argument("--model-dir", type=Path, required=True)
    evaluate.add_argument("--spec", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, required=True)
    evaluate.add_argument("--max-rows", type=int, default=512)
    evaluate.add_argument("--no-diagnostics", action="store_true",
                          help="the scorecard and conversation bits per byte only, without the likelihood diagnostics")
    evaluate.add_argument("--experiment", default="rosie-evaluation")
    evaluate.set_defaults(func=_evaluate)

    register = add("register", help="register a model folder in MLflow and apply the champion rule")
    register.add_argument("--model-dir", type=Path, required=True)
    register.add_argument("--evaluation", type=Path, required=True)
    register.add_argument("--dataset", type=Path, action="append", default=[], help="a shard split's manifest.json")
    register.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    register.set_defaults(func=_register)

    export = add("export", help="write a model as a Hugging Face folder (and a GGUF file) that other tools run")
    export.add_argument("source", help="a model folder, or models:/rosie@champion")
    export.add_argument("out_dir", type=Path)
    export.add_argument("--weights", choices=WEIGHT_NAMES, default=None,
                        help="which phase's weights (default: the latest, what a chat loads)")
    export.add_argument("--gguf", action="store_true", help="also write OUT_DIR/rosie-QUANT.gguf for llama.cpp")
    export.add_argument("--quant", choices=QUANTS, default="f16", help="the GGUF's weight type")
    export.set_defaults(func=_export)

    tokenizer = add("bootstrap-tokenizer", help="the pretrained tokenizer with Rosie's tokens and chat settings")
    tokenizer.add_argument("--pretrained", required=True, help="a Hugging Face folder, a .gguf file or 'smollm2'")
    tokenizer.add_argument("--rosie-tokenizer", type=Path, required=True, help="Rosie's tokenizer folder")
    tokenizer.add_argument("--out", type=Path, required=True)
    tokenizer.set_defaults(func=_bootstrap_tokenizer)

    chat = add("chat", help="talk to Rosie in the terminal")
    _chat_arguments(chat)
    chat.set_defaults(func=_chat)

    for name, port, purpose in (("web", 7860, "a web chat with Rosie on 127.0.0.1 (the same server as serve)"),
                                ("serve", 8000, "Rosie behind the OpenAI API (for SillyTavern, Open WebUI, the openai "
                                                "package), with the web chat on /")):
        server = add(name, help=purpose)
        _chat_arguments(server)
        server.add_argument("--host", default="127.0.0.1", help="another address than loopback needs --api-key")
        server.add_argument("--port", type=int, default=port)
        server.add_argument("--api-key", help="required as `Authorization: Bearer KEY` (default: $ROSIE_API_KEY)")
        server.add_argument("--max-waiting", type=int, default=16,
                            help="requests in the server at once; more get 503")
        server.set_defaults(func=_serve)

    card = add("card", help="write Rosie as a character card (PNG and JSON, V2/V3) with SillyTavern presets")
    _chat_arguments(card)
    card.add_argument("--out", type=Path, help="where to write it (default: $ROSIE_HOME/card)")
    card.set_defaults(func=_card)

    memory = add("memory", help="list or forget what Rosie remembers")
    memory.add_argument("action", choices=["list", "forget"])
    memory.add_argument("ids", nargs="*", type=int, help="memory ids to forget (see `rosie memory list`)")
    memory.add_argument("--user", default=None, help="only this user's memories")
    memory.add_argument("--all", action="store_true", help="forget all (of --user, or of everyone)")
    memory.set_defaults(func=_memory)
    return parser


def quiet_libraries() -> None:
    """Rosie's own lines only: no weight-loading bars, no notices about what Rosie does on purpose (mean-resized
    token rows, saved with the adapters), no deprecation notes about code that is not Rosie's."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not "started monitoring system metrics" per run
    for message, category in ((r".*is_gradient_checkpointing", FutureWarning),
                              (r"Setting `save_embedding_layers` to `True`", UserWarning)):  # Rosie resized on purpose
        warnings.filterwarnings("ignore", message=message, category=category)


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # keeps alembic/sqlite chatter out
    quiet_libraries()
    from rosie_model.core.errors import RosieError

    try:
        return int(args.func(args))
    except (UsageError, RosieError) as exc:
        print(f"{prog.split()[-1]}: {exc}", file=sys.stderr)
        _report_failure(str(exc))
        return 2
    except Exception:
        _report_failure(traceback.format_exc())
        raise


#: Where a launcher (a Dagster step) wants the reason a command failed, to put it in its failure message.
ERROR_FILE = "ROSIE_ERROR_FILE"


def _report_failure(text: str, max_lines: int = 15) -> None:
    path = os.environ.get(ERROR_FILE)
    if path:
        Path(path).write_text("\n".join(text.strip().splitlines()[-max_lines:]) + "\n", encoding="utf-8")
