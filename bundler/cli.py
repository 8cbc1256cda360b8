"""The `llamabundle` command: parses options and calls the library layer, nothing more."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bundler import __version__, targets
from bundler.build import BuildOptions, BuildResult, build_all, chat_template_text
from bundler.inspect import inspect_path
from bundler.knowledge.index import KnowledgeOptions
from bundler.upgrade import upgrade
from runtime import settings as settings_mod
from runtime.artifact.manifest import Manifest
from runtime.errors import LlamabundleError, SettingsError, TemplateError

MAX_STARTERS = 6  # the page shows them all at once; more is a wall of text
MAX_STARTER_LENGTH = 200


def _baked_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per run-time setting (runtime/settings.py declares them all)."""
    for option in reversed(settings_mod.OPTIONS):
        help_text = f"Baked default for the artifact's {option.flags[-1]}: {option.help}"
        if option.type is bool:
            decorator = click.option(*option.flags, option.name, is_flag=True, default=None,
                                     help=help_text)
        else:
            decorator = click.option(*option.flags, option.name, type=option.type,
                                     default=None, metavar=option.metavar, help=help_text)
        command = decorator(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llamabundle")
def main() -> None:
    """Turn a GGUF model into one executable that serves a chat page and an OpenAI API."""
    logging.basicConfig(level=logging.INFO, format="llamabundle: %(message)s")


@main.command("build")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (default: ./<model stem>.llamabundle, or .exe for Windows; "
                   "with several --os, each OS's suffix is put on this name).")
@click.option("--os", "oses", default="linux", metavar="linux,windows", show_default=True,
              help="Which OS the artifact runs on: linux (NAME.llamabundle), windows "
                   "(NAME.exe, 64-bit Windows 10/11), or both from one command.")
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
@click.option("--name", help="Display name (default: the GGUF's general.name).")
@click.option("--title", help="Chat page heading (default: the name).")
@click.option("--system-prompt-file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="Read the baked system prompt from a file.")
@click.option("--chat-template", metavar="TEXT|PATH",
              help="Jinja chat template, or a file holding one (wins over the GGUF's).")
@click.option("--starter", "starters", metavar="QUESTION", multiple=True,
              help=f"An example question the chat page offers a first-time user (repeat it, "
                   f"up to {MAX_STARTERS}; a knowledge bundle without one asks about its "
                   "documents' headings).")
@click.option("--knowledge", "knowledge", multiple=True, type=click.Path(path_type=Path),
              metavar="PATH", help="Bundle the documents (.txt .md .html .pdf .docx) in this file "
              "or folder, searched for every chat turn; repeat for more.")
@click.option("--embedding-model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="EMB.gguf", help="GGUF embedding model for --knowledge (default: "
              "multilingual-e5-small, bundled with llamabundle).")
@_baked_options
def build_command(model: Path, output: Path | None, oses: str, force: bool, name: str | None,
                  title: str | None, system_prompt_file: Path | None,
                  chat_template: str | None, knowledge: tuple[Path, ...],
                  embedding_model: Path | None, starters: tuple[str, ...],
                  **baked: Any) -> None:
    """Build one executable from MODEL: a GGUF, the first part of a split GGUF, or
    ollama:NAME[:TAG] from the local Ollama store.

    \b
    Example:
      llamabundle build gemma-3-270m.gguf --system-prompt "Be brief." -c 8192
      chmod +x gemma-3-270m.llamabundle && ./gemma-3-270m.llamabundle
      llamabundle build ollama:qwen2.5:1.5b
      llamabundle build gemma-3-270m.gguf --os linux,windows
      llamabundle build qwen2.5-1.5b-instruct.gguf --knowledge docs/ --knowledge faq.pdf
    """
    if system_prompt_file is not None:
        if baked.get("system_prompt") is not None:
            raise click.UsageError("give --system-prompt or --system-prompt-file, not both")
        baked["system_prompt"] = system_prompt_file.read_text()
    defaults = {key: value for key, value in baked.items() if value is not None}
    try:
        settings_mod.resolve(defaults, {}, environ={})
        template = None if chat_template is None else chat_template_text(chat_template)
    except (SettingsError, TemplateError) as e:
        raise click.BadParameter(str(e)) from None
    if embedding_model is not None and not knowledge:
        raise click.BadParameter("--embedding-model is for --knowledge; give documents too")
    documents = KnowledgeOptions(list(knowledge), embedding_model) if knowledge else None
    try:
        options = BuildOptions(model, output, force, name, title, template, defaults, documents,
                               _starters(starters), targets.parse(oses))
        results = build_all(options, progress=_progress_bar)
    except LlamabundleError as e:
        raise click.ClickException(str(e)) from None
    if results[0].knowledge is not None:
        click.echo(_knowledge_summary(results[0]))
        if results[0].knowledge.starters_note:
            click.echo(results[0].knowledge.starters_note)
    for result in results:
        click.echo(f"Wrote {result.path} ({result.size / 1e6:.1f} MB) in {result.seconds:.1f} s")
        for path in result.beside:
            click.echo(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if result.note:
            click.echo(result.note)


def _starters(given: tuple[str, ...]) -> tuple[str, ...]:
    starters = tuple(" ".join(s.split()) for s in given)
    if len(starters) > MAX_STARTERS:
        raise click.BadParameter(f"at most {MAX_STARTERS} starters", param_hint="--starter")
    for starter in starters:
        if not starter or len(starter) > MAX_STARTER_LENGTH:
            raise click.BadParameter(f"a starter is a question of 1 to {MAX_STARTER_LENGTH} "
                                     "characters", param_hint="--starter")
    return starters


def _knowledge_summary(result: BuildResult) -> str:
    assert result.knowledge is not None
    info, skipped = result.knowledge.info, result.knowledge.skipped
    test = info["self_test"]
    levels = ", ".join(f"{group} {value:.3f}" for group, value in info["threshold"].items())
    return (f"Knowledge: {info['documents']} documents, {info['chunks']} chunks, "
            f"{len(skipped)} skipped; index {info['index_bytes'] / 1e6:.2f} MB "
            f"+ embedder {info['embedding_model']['name']}; {result.knowledge.seconds:.1f} s\n"
            f"Self-test: hit@5 {test['hit_at_5']:.2f} over {test['probes']} passages; "
            f"relevance thresholds ({levels}) keep {test['relevant_kept']:.0%} of them and "
            f"{test['unrelated_kept']:.0%} of unrelated questions")


# Bytes are shown as a bar without counts; files and chunks with counts, rate and ETA.
_UNITS = {"Writing": None, "Reading": "files", "Embedding": "chunks"}


def _progress_bar(total: int, label: str = "Writing") -> Callable[[int], None]:
    unit = _UNITS.get(label, "items")
    started = time.monotonic()
    stream = click.get_text_stream("stderr")
    if unit and not stream.isatty():
        return _progress_lines(total, label, unit)

    def rate(_: object) -> str:
        elapsed = time.monotonic() - started
        return f"{bar.pos / elapsed:.1f} {unit}/s" if unit and elapsed > 0 and bar.pos else ""

    bar = click.progressbar(length=total, label=f"{label:9}",
                            file=click.get_text_stream("stderr"), show_eta=unit is not None,
                            show_pos=unit is not None, item_show_func=rate)
    bar.__enter__()
    if total == 0:
        bar.__exit__(None, None, None)

    def advance(n: int) -> None:
        bar.update(n)
        if bar.pos >= total:
            bar.__exit__(None, None, None)

    return advance


def _progress_lines(total: int, label: str, unit: str) -> Callable[[int], None]:
    """Progress for a log or a pipe, where a bar shows nothing until it ends (a large
    knowledge folder embeds for many minutes): a line at each tenth done."""
    started = time.monotonic()
    done = shown = 0

    def advance(n: int) -> None:
        nonlocal done, shown
        done += n
        if done * 10 // total > shown or done >= total:
            shown = done * 10 // total
            elapsed = time.monotonic() - started
            click.echo(f"{label} {done}/{total} {unit}, {done / max(elapsed, 1e-9):.1f} {unit}/s",
                       err=True)

    return advance


@main.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect_command(path: Path, as_json: bool) -> None:
    """Describe a GGUF model or a built artifact.

    \b
    Example:
      llamabundle inspect gemma-3-270m.llamabundle --json
    """
    try:
        info = inspect_path(path)
    except LlamabundleError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key, value in info.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        click.echo(f"{key + ':':24} {value}")
    if info.get("runtime_current") is False:
        click.echo(f"This artifact carries an older runtime: `llamabundle upgrade {path} "
                   "--in-place` puts this llamabundle's around the same weights.")


@main.command("upgrade")
@click.argument("old", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the upgraded artifact to this file.")
@click.option("--in-place", is_flag=True, help="Replace OLD itself (atomically).")
@click.option("--force", is_flag=True, help="Overwrite the output if it exists; with "
              "--in-place, rewrite OLD even if it already carries this runtime.")
def upgrade_command(old: Path, output: Path | None, in_place: bool, force: bool) -> None:
    """Put this llamabundle's runtime around OLD's weights, knowledge and baked settings,
    without the GGUF.

    \b
    Example:
      llamabundle upgrade gemma-3-270m.llamabundle -o gemma-3-270m.new.llamabundle
      llamabundle upgrade gemma-3-270m.llamabundle --in-place
    """
    if in_place and output is not None:
        raise click.UsageError("give -o NEW or --in-place, not both")
    if not in_place and output is None:
        raise click.UsageError("give -o NEW to write a new file, or --in-place to replace OLD")
    try:
        result = upgrade(old, output, in_place=in_place, force=force, progress=_progress_bar)
    except LlamabundleError as e:
        raise click.ClickException(str(e)) from None
    if not result.written:
        click.echo(f"{old} already carries this runtime ({_runtime(result.manifest)}); "
                   "nothing to do (--force rewrites it)")
        return
    click.echo(f"Wrote {result.path} ({result.size / 1e6:.1f} MB) in {result.seconds:.1f} s: "
               f"runtime {_runtime(result.previous)} -> {_runtime(result.manifest)}")


def _runtime(manifest: Manifest) -> str:
    key = manifest.runtime_key[:12] or "unrecorded"
    return f"{manifest.runtime_version} ({key})"



@main.command("export-image")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Image file (default: ./<artifact stem>.image.tar).")
@click.option("--tag", help="Image name:tag (default: <artifact stem>:latest).")
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
def export_image_command(artifact: Path, output: Path | None, tag: str | None,
                         force: bool) -> None:
    """Write ARTIFACT as a container image (docker-archive) serving on 0.0.0.0:8080.

    \b
    Example:
      llamabundle export-image gemma-3-270m.llamabundle
      podman load -i gemma-3-270m.image.tar
      podman run -p 8080:8080 -e LLAMABUNDLE_API_KEY=secret gemma-3-270m:latest
    """
    # Imported here: PyInstaller's archive reader runs `ldd` as it loads, which a builder's
    # PATH need not have for any other command.
    from bundler.image import default_tag, export_image

    stem = artifact.name.removesuffix(".llamabundle")
    output = output or Path(f"{stem}.image.tar")
    try:
        image = export_image(artifact, output, tag or default_tag(artifact), force,
                             progress=_progress_bar)
    except LlamabundleError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Wrote {image.path} ({image.size / 1e6:.1f} MB, {image.tag}, "
               f"{len(image.libraries)} system libraries) in {image.seconds:.1f} s")
