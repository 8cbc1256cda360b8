"""The artifact's command line: serve (default), `--chat`, one-shot `-p`, `--info`, `--verify`;
and the build tool's hidden `--embed-service` (runtime/embed_service.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from runtime import __version__, embed_service, frozen, system
from runtime import settings as settings_mod
from runtime.artifact.format import new_checksum
from runtime.artifact.manifest import Manifest, Section, locate, read_manifest_at
from runtime.errors import LlamabundleError, RequestError
from runtime.generation import ChatMessage, Defaults, Sources
from runtime.knowledge.retrieve import cited_list
from runtime.load import load_engine
from runtime.settings import Settings

log = logging.getLogger("llamabundle")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    system.utf8_output()
    # The build tool's embedder (no artifact, not in --help) says only what went wrong: its
    # last line on stderr becomes the build's error message.
    service = argv[:1] == [embed_service.FLAG]
    logging.basicConfig(level=logging.WARNING if service else logging.INFO,
                        format="llamabundle: %(message)s", stream=sys.stderr)
    # asyncio warns "socket.send() raised exception." for every client that hangs up while its
    # answer streams: normal for a chat server, and thousands of lines under load.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    if frozen.frozen():
        frozen.prepare_process()
    if service:
        return embed_service.main(argv[1:])
    if frozen.frozen():
        artifact = sys.executable
    else:  # run from a source checkout: python -m runtime ARTIFACT [options]
        if not argv or argv[0].startswith("-"):
            print("usage: python -m runtime ARTIFACT [options]", file=sys.stderr)
            return 2
        artifact = argv.pop(0)
    try:
        manifest = read_manifest_at(artifact)
        args = _parser(manifest).parse_args(argv)
        return _run(artifact, manifest, args)
    except LlamabundleError as e:
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser(manifest: Manifest) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=os.path.basename(sys.executable) if frozen.frozen() else "llamabundle-runtime",
        description=f"{manifest.title}: a local assistant. Serves a chat page and an "
                    "OpenAI-compatible API on http://localhost:8080/.")
    settings_mod.add_arguments(parser, manifest.defaults)
    parser.add_argument("-p", "--prompt", metavar="TEXT",
                        help="Answer TEXT on stdout and exit (no server).")
    parser.add_argument("--chat", action="store_true",
                        help="Chat in this terminal instead of serving (/help inside for more); "
                             "with stdin not a terminal, answers each line read from it.")
    _llamafile_arguments(parser)
    parser.add_argument("--info", action="store_true",
                        help="Print the manifest, and the CPU code chosen here, as JSON.")
    parser.add_argument("--verify", action="store_true",
                        help="Check the weights against the manifest's checksum.")
    parser.add_argument("--licenses", action="store_true",
                        help="Print the license notices of the libraries bundled in the runtime.")
    parser.add_argument("--version", action="version",
                        version=f"llamabundle runtime {__version__}")
    return parser


def _llamafile_arguments(parser: argparse.ArgumentParser) -> None:
    """llamafile's flags, so that scripts and guides written for llamafile run unchanged
    (LangChain's: `./model.llamafile --server --nobrowser`)."""
    group = parser.add_argument_group("llamafile compatibility")
    group.add_argument("--server", action="store_true",
                       help="Serve the chat page and API (the default anyway).")
    group.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", dest="gpu_layers", type=int,
                       metavar="N", help="Accepted and ignored: this build runs on the CPU.")
    group.add_argument("--embedding", "--embeddings", action="store_true",
                       help="Accepted: embeddings are always served.")
    group.add_argument("-m", "--model", metavar="PATH",
                       help="Refused: the artifact carries its own model.")


def _check_modes(manifest: Manifest, args: argparse.Namespace) -> str | None:
    """The one line that refuses a contradictory command line, or None."""
    if args.model is not None:
        return (f"-m {args.model}: this artifact carries its own model ({manifest.name}); "
                "run it without -m")
    modes = [flag for flag, on in (("--chat", args.chat), ("-p", args.prompt is not None),
                                   ("--server", args.server)) if on]
    if len(modes) > 1:
        return f"{' and '.join(modes)} cannot be used together; pick one"
    return None


def _run(artifact: str, manifest: Manifest, args: argparse.Namespace) -> int:
    problem = _check_modes(manifest, args)
    if problem:
        log.error("%s", problem)
        return 2
    if args.gpu_layers is not None:
        log.info("-ngl %d: this build runs on the CPU; the flag is ignored", args.gpu_layers)
    if args.licenses:
        print(frozen.notices())
        return 0
    if args.info:
        from runtime.llama import cpu  # imports llama.cpp

        info = {**manifest.summary(), "cpu": cpu.load().as_dict()}
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    if args.verify:
        return verify(artifact, manifest)
    given = {o.name: getattr(args, o.name) for o in settings_mod.OPTIONS}
    settings = settings_mod.resolve(manifest.defaults, given)
    if args.prompt is not None:
        return one_shot(artifact, manifest, settings, args.prompt)
    if args.chat:
        from runtime.terminal import chat

        return chat(artifact, manifest, settings)
    from runtime.serve import serve

    return serve(artifact, manifest, settings)


def verify(artifact: str, manifest: Manifest) -> int:
    """Checks every section against its checksum (weights, and the knowledge bundle's embedder
    and index when there are), and that a knowledge index opens."""
    for section in manifest.sections:
        if not _section_intact(artifact, section):
            what = "weights are" if section.name == "weights" else f"{section.name} section is"
            log.error("%s: %s corrupted (checksum mismatch); get a fresh copy", artifact, what)
            return 1
        print(f"OK: {section.name} match {section.checksum}")
    if manifest.knowledge is not None:
        from runtime.knowledge.format import SECTION, read_section, unpack
        from runtime.knowledge.search import Index

        index = Index(unpack(read_section(artifact, manifest.section(SECTION)), artifact))
        print(f"OK: knowledge index opens ({index.documents()} documents, "
              f"{index.meta.count} chunks)")
    return 0


def _section_intact(artifact: str, section: Section) -> bool:
    algorithm, _, expected = section.checksum.partition(":")
    digest = new_checksum(algorithm)
    path, offset = locate(artifact, section)
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = section.length
        while remaining:
            chunk = f.read(min(remaining, 1 << 22))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return not remaining and digest.hexdigest() == expected


def one_shot(artifact: str, manifest: Manifest, settings: Settings, prompt: str) -> int:
    engine = load_engine(artifact, manifest, settings)
    log.info("CPU code: %s", engine.cpu.describe())
    request = Defaults.from_settings(settings).request(messages=[ChatMessage("user", prompt)])
    sources: list[str] = []
    try:
        for event in engine.generate(request):
            if isinstance(event, str):
                sys.stdout.write(event)
                sys.stdout.flush()
            elif isinstance(event, Sources):  # a knowledge bundle's: listed after the answer
                sources = cited_list(event.hits)
    except RequestError as e:
        log.error("%s", e)
        return 1
    sys.stdout.write("\n")
    sys.stdout.flush()
    for line in sources:  # on stderr: stdout stays the answer alone, for pipes
        print(line, file=sys.stderr)
    return 0
