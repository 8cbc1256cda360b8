"""Building from the models people already have: split GGUFs and the local Ollama store."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xxhash
from split_model import gguf_split_merge_header, split_gguf

from bundler.gguf_info import read_header, read_model
from bundler.model_source import plan_merge, resolve_model, write_merged
from bundler.ollama_store import parse_name, short_name
from runtime.errors import InvalidModelError


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> list[Path]:
    return split_gguf(tiny_gguf, tmp_path_factory.mktemp("split") / "tiny", [7, 7, 7])


@pytest.fixture
def loose_parts(tmp_path: Path, parts: list[Path]) -> list[Path]:
    """A copy of the parts that a test may break."""
    return [Path(shutil.copy(p, tmp_path / p.name)) for p in parts]


def merge(parts: list[Path], out: Path, **kwargs: bool) -> tuple[str, int]:
    plan = plan_merge(parts, **kwargs)
    written: list[int] = []
    with open(out, "wb") as f:
        checksum = write_merged(plan, f, written.append)
    assert sum(written) == plan.size == out.stat().st_size
    return checksum, plan.size


def test_split_model_merges_back_into_the_original_file(parts: list[Path], tiny_gguf: Path,
                                                        tmp_path: Path) -> None:
    checksum, _ = merge(parts, tmp_path / "merged.gguf")
    merged = (tmp_path / "merged.gguf").read_bytes()
    assert merged == tiny_gguf.read_bytes()
    assert checksum == f"xxh3-128:{xxhash.xxh3_128(merged).hexdigest()}"


def test_merged_header_matches_llama_cpp_gguf_split_merge(parts: list[Path],
                                                          tmp_path: Path) -> None:
    merge(parts, tmp_path / "merged.gguf", as_gguf_split=True)
    expected = gguf_split_merge_header(parts[0], parts)
    merged = (tmp_path / "merged.gguf").read_bytes()
    assert merged[:len(expected)] == expected
    # the data after it: every tensor padded to 32 bytes, in the parts' order
    assert merged[len(expected):] == b"".join(
        _tensor_bytes(p) for p in parts)


def _tensor_bytes(part: Path) -> bytes:
    header, raw = read_header(part), part.read_bytes()
    return b"".join(raw[header.data_start + t.offset:][:t.nbytes] + bytes(-t.nbytes % 32)
                    for t in header.tensors)


def test_merged_model_generates_what_the_unsplit_model_does(parts: list[Path], tiny_gguf: Path,
                                                            tmp_path: Path) -> None:
    from llama_cpp import Llama

    from runtime.llama import cpu

    cpu.load()  # llama.cpp's CPU backend, as the runtime loads it
    merge(parts, tmp_path / "merged.gguf")
    results = []
    for path in (tiny_gguf, tmp_path / "merged.gguf"):
        llm = Llama(model_path=str(path), n_ctx=128, n_threads=1, logits_all=True, seed=1,
                    verbose=False)
        tokens = llm.tokenize(b"hello world the cat sat")
        llm.eval(tokens)
        logits = np.array(llm.scores[:len(tokens)])
        llm.reset()
        text = llm.create_completion("the cat", max_tokens=12, temperature=0.0)
        results.append((tokens, logits, text["choices"][0]["text"]))  # type: ignore[index]
        llm.close()
    (tokens_a, logits_a, text_a), (tokens_b, logits_b, text_b) = results
    assert tokens_a == tokens_b and len(tokens_a) > 3
    assert np.array_equal(logits_a, logits_b) and np.abs(logits_a).sum() > 0
    assert text_a == text_b and text_a


def test_merge_without_copy_file_range_writes_the_same_bytes_after_a_prefix(
        parts: list[Path], tiny_gguf: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")  # as older kernels answer across filesystems

    monkeypatch.setattr(os, "copy_file_range", refuse)
    out = tmp_path / "artifact"
    with open(out, "wb") as f:
        f.write(b"x" * 65536)  # the merged GGUF lands after the runtime, as in an artifact
        checksum = write_merged(plan_merge(parts), f, lambda n: None)
        f.write(b"manifest")
    data = out.read_bytes()
    assert data[65536:-8] == tiny_gguf.read_bytes() and data.endswith(b"manifest")
    assert checksum == f"xxh3-128:{xxhash.xxh3_128(data[65536:-8]).hexdigest()}"


def test_plan_of_one_file_keeps_its_layout(tiny_gguf: Path) -> None:
    plan = plan_merge([tiny_gguf])
    header, raw = read_header(tiny_gguf), tiny_gguf.read_bytes()
    assert plan.header == raw[:header.data_start]
    assert plan.size == len(raw)
    assert [(p, o, n) for p, o, n, _ in plan.ranges] == [
        (tiny_gguf, header.data_start + t.offset, t.nbytes) for t in header.tensors]
    assert len(plan.header) % 32 == 0  # the weights stay aligned for mmap


def test_split_model_info_covers_all_parts(parts: list[Path], tiny_gguf: Path) -> None:
    source, whole = resolve_model(str(parts[0])), read_model(tiny_gguf)
    assert source.model_id == "tiny"
    assert source.parts == parts
    assert source.size == tiny_gguf.stat().st_size
    assert source.info is not None
    assert (source.info.parameters, source.info.tensors, source.info.quantization) == (
        whole.parameters, whole.tensors, whole.quantization)
    assert source.info.name == "Tiny Test"


def test_plain_gguf_resolves_to_itself(tiny_gguf: Path) -> None:
    source = resolve_model(str(tiny_gguf))
    assert (source.model_id, source.parts, source.size) == (
        "tiny", [tiny_gguf], tiny_gguf.stat().st_size)
    assert (source.system_prompt, source.defaults, source.notes) == (None, {}, [])


def test_read_model_refuses_a_lone_part(parts: list[Path]) -> None:
    with pytest.raises(InvalidModelError, match="part 1 of a GGUF split into 3; it must be "
                                                "merged with its other parts"):
        read_model(parts[0])


def test_missing_part_is_named(loose_parts: list[Path]) -> None:
    loose_parts[1].unlink()
    with pytest.raises(InvalidModelError) as e:
        resolve_model(str(loose_parts[0]))
    assert str(e.value) == (f"{loose_parts[0]}: part 2 of 3 is missing "
                            "(no tiny-00002-of-00003.gguf beside it)")


def test_a_later_part_given_points_at_the_first(loose_parts: list[Path]) -> None:
    with pytest.raises(InvalidModelError, match=r"part 2 of 3 of a split GGUF; give the first "
                                                r"part \(.*tiny-00001-of-00003\.gguf\)"):
        resolve_model(str(loose_parts[1]))


@pytest.mark.parametrize(("sizes", "error"), [
    ([5, 8, 8], "its 3 parts hold 22 tensors, but split.tensors.count says 21"),
    ([6, 7, 8], "tensor blk.0.ffn_norm.weight is in two parts")])
def test_part_from_a_different_split_is_refused(loose_parts: list[Path], tiny_gguf: Path,
                                                tmp_path: Path, sizes: list[int],
                                                error: str) -> None:
    (tmp_path / "other").mkdir()
    other = split_gguf(tiny_gguf, tmp_path / "other" / "x", sizes)
    shutil.copy(other[1], loose_parts[1])
    with pytest.raises(InvalidModelError) as e:
        resolve_model(str(loose_parts[0]))
    assert str(e.value) == f"{loose_parts[0]}: {error}"


def test_part_of_a_split_with_another_count_is_refused(loose_parts: list[Path], tiny_gguf: Path,
                                                       tmp_path: Path) -> None:
    (tmp_path / "four").mkdir()
    four = split_gguf(tiny_gguf, tmp_path / "four" / "x", [6, 5, 5, 5])
    shutil.copy(four[2], loose_parts[2])
    with pytest.raises(InvalidModelError) as e:
        resolve_model(str(loose_parts[0]))
    assert str(e.value) == (f"{loose_parts[2]}: does not belong with tiny-00001-of-00003.gguf "
                            "(it says part 3 of 4 with 21 tensors; expected part 3 of 3 with 21)")


def test_part_that_is_not_gguf_is_named(loose_parts: list[Path]) -> None:
    loose_parts[2].write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(InvalidModelError, match=r"tiny-00003-of-00003\.gguf: not a GGUF file"):
        resolve_model(str(loose_parts[0]))


def test_renamed_first_part_says_why_parts_cannot_be_found(loose_parts: list[Path]) -> None:
    renamed = loose_parts[0].rename(loose_parts[0].with_name("model.gguf"))
    with pytest.raises(InvalidModelError, match="not named NAME-00001-of-00003.gguf"):
        resolve_model(str(renamed))


# --- the Ollama store ---------------------------------------------------------------------

PARAMS = {"temperature": 0.2, "num_ctx": 2048, "top_k": 20, "top_p": 0.9,
          "repeat_penalty": 1.05, "num_predict": 256, "num_thread": 4,
          "stop": ["<|im_end|>"], "mirostat": 2}


def add_blob(store: Path, data: bytes, media: str) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (store / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}


def add_model(store: Path, name: str, model: bytes, extra: dict[str, bytes] | None = None) -> None:
    """Writes blobs and the manifest as `ollama pull` / `ollama create` leave them."""
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    prefix = "application/vnd.ollama.image."
    layers = [add_blob(store, model, prefix + "model")]
    layers += [add_blob(store, data, prefix + kind) for kind, data in (extra or {}).items()]
    config = add_blob(store, json.dumps({"model_format": "gguf", "model_family": "llama",
                                         "file_type": "F32", "rootfs": {"type": "layers"}})
                      .encode(), "application/vnd.docker.container.image.v1+json")
    host, ns, rest = name.split("/")
    model_name, tag = rest.split(":")
    path = store / "manifests" / host / ns / model_name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": config, "layers": layers}))


@pytest.fixture
def store(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ollama-models"
    add_model(root, "registry.ollama.ai/library/tiny:latest", tiny_gguf.read_bytes(), {
        "template": b"{{ .Prompt }}", "system": "You are a tiny model. 回答要简短。".encode(),
        "params": json.dumps(PARAMS).encode(), "license": b"MIT License\n..."})
    add_model(root, "registry.ollama.ai/alice/tiny2:v1", tiny_gguf.read_bytes())
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    return root


@pytest.mark.parametrize(("text", "parsed", "shown"), [
    ("qwen2.5:1.5b", ("registry.ollama.ai", "library", "qwen2.5", "1.5b"), "qwen2.5:1.5b"),
    ("tiny", ("registry.ollama.ai", "library", "tiny", "latest"), "tiny:latest"),
    ("alice/tiny", ("registry.ollama.ai", "alice", "tiny", "latest"), "alice/tiny:latest"),
    ("localhost:5000/ns/m:q4", ("localhost:5000", "ns", "m", "q4"), "localhost:5000/ns/m:q4"),
])
def test_ollama_names_parse_with_ollama_defaults(text: str, parsed: tuple[str, ...],
                                                 shown: str) -> None:
    assert parse_name(text) == parsed
    assert short_name(*parsed) == shown


@pytest.mark.parametrize("text", ["", "a/b/c/d", "/tiny", "tiny:a:b"])
def test_malformed_ollama_name_is_refused(text: str) -> None:
    with pytest.raises(InvalidModelError, match="not an Ollama model name"):
        resolve_model(f"ollama:{text}")


@pytest.mark.parametrize("spec", ["ollama:tiny", "ollama:tiny:latest",
                                  "ollama:library/tiny:latest",
                                  "ollama:registry.ollama.ai/library/tiny"])
def test_ollama_model_resolves_with_its_system_prompt_and_parameters(store: Path,
                                                                      spec: str) -> None:
    source = resolve_model(spec)
    assert source.model_id == "tiny:latest"
    assert source.display == "ollama:tiny:latest"
    assert len(source.parts) == 1 and source.parts[0].parent == store / "blobs"
    assert source.parts[0].read_bytes()[:4] == b"GGUF"
    assert source.system_prompt == "You are a tiny model. 回答要简短。"
    assert source.defaults == {"temp": 0.2, "ctx_size": 2048, "top_k": 20, "top_p": 0.9,
                               "repeat_penalty": 1.05, "n_predict": 256, "threads": 4}
    assert source.notes == [
        "Ollama's Go template is not used: the GGUF's own tokenizer.chat_template is",
        'parameter stop=["<|im_end|>"] has no llamabundle setting (the chat template\'s '
        "end-of-turn token ends answers)",
        "parameter mirostat=2 has no llamabundle setting",
        "the license layer is not bundled: keep its terms with the artifact "
        "(`ollama show --license`)",
        "the GGUF carries no chat template, so a built-in fallback is used (pass "
        "--chat-template to choose one)"]
    assert source.info is not None and source.info.name == "Tiny Test"


def test_ollama_store_under_home_when_ollama_models_is_unset(store: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.delenv("OLLAMA_MODELS")
    shutil.copytree(store, Path(os.environ["HOME"]) / ".ollama" / "models")
    source = resolve_model("ollama:alice/tiny2:v1")
    assert source.model_id == "alice/tiny2:v1"
    assert source.parts[0].is_relative_to(Path(os.environ["HOME"]))
    assert (source.system_prompt, source.defaults, source.notes) == (None, {}, [])


def test_unknown_ollama_name_lists_what_the_store_has(store: Path) -> None:
    with pytest.raises(InvalidModelError) as e:
        resolve_model("ollama:qwen2.5:1.5b")
    assert str(e.value) == (f"ollama:qwen2.5:1.5b: not in the Ollama store at {store} "
                            "(it has: alice/tiny2:v1, tiny:latest)")


def test_unknown_ollama_tag_lists_the_tags(store: Path) -> None:
    with pytest.raises(InvalidModelError) as e:
        resolve_model("ollama:tiny:7b")
    assert str(e.value) == (f"ollama:tiny:7b: no tag '7b' in the Ollama store at {store} "
                            "(tiny has: latest)")


def test_ollama_blob_that_is_not_gguf_is_refused(store: Path) -> None:
    add_model(store, "registry.ollama.ai/library/broken:latest", b"\x89PNG not a model")
    with pytest.raises(InvalidModelError, match=r"^ollama:broken: the model blob is not a "
                                                r"usable GGUF \(.*sha256-[0-9a-f]{64}: not a "
                                                r"GGUF file \(magic b'\\x89PNG'\)\)$"):
        resolve_model("ollama:broken")


def test_ollama_missing_blob_says_to_pull_again(store: Path, tiny_gguf: Path) -> None:
    for blob in (store / "blobs").iterdir():
        if blob.read_bytes() == tiny_gguf.read_bytes():
            blob.unlink()
    with pytest.raises(InvalidModelError, match=r"ollama:tiny: blob sha256:[0-9a-f]{64} is "
                                                r"missing from the store \(run `ollama pull "
                                                r"tiny`\)"):
        resolve_model("ollama:tiny")


def test_ollama_adapter_is_refused(store: Path, tiny_gguf: Path) -> None:
    add_model(store, "registry.ollama.ai/library/lora:latest", tiny_gguf.read_bytes(),
              {"adapter": b"GGUF lora"})
    with pytest.raises(InvalidModelError, match="has a LoRA adapter layer"):
        resolve_model("ollama:lora")


def test_out_of_range_ollama_parameter_is_noted_not_baked(store: Path,
                                                          tiny_gguf: Path) -> None:
    add_model(store, "registry.ollama.ai/library/hot:latest", tiny_gguf.read_bytes(),
              {"params": json.dumps({"top_p": 5, "temperature": 0.5}).encode()})
    source = resolve_model("ollama:hot")
    assert source.defaults == {"temp": 0.5}
    assert source.notes[0] == "parameter top_p=5 not used (--top-p: 5.0 is out of range [0.0, 1.0])"


def test_no_ollama_store_says_where_it_looked(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "none"))
    with pytest.raises(InvalidModelError, match=r"ollama:tiny: no Ollama store at .*none "
                                                r"\(set OLLAMA_MODELS"):
        resolve_model("ollama:tiny")


# ---- `llamabundle build` and `inspect` on these sources, end to end

@pytest.mark.usefixtures("built")
def test_build_from_a_split_gguf_writes_one_weights_section_that_answers(
        parts: list[Path], tiny_gguf: Path, tmp_path: Path) -> None:
    import subprocess

    from click.testing import CliRunner

    from bundler.cli import main
    from runtime.artifact.manifest import read_manifest_at

    runner = CliRunner()
    out = tmp_path / "split.llamabundle"
    result = runner.invoke(main, ["build", str(parts[0]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = read_manifest_at(str(out))
    assert manifest.model_id == "tiny"  # the -0000N-of-0000M suffix dropped
    weights = manifest.section("weights")
    with open(out, "rb") as f:
        f.seek(weights.offset)
        assert f.read(weights.length) == tiny_gguf.read_bytes()  # merged back byte for byte
    info = json.loads(runner.invoke(main, ["inspect", str(parts[0]), "--json"]).output)
    assert info["parts"] == 3 and info["size"] == tiny_gguf.stat().st_size
    answer = subprocess.run([str(out), "-p", "hello", "-n", "4"], capture_output=True,
                            text=True, timeout=120)
    assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr


def test_build_from_a_later_part_is_one_line(parts: list[Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bundler.cli import main

    result = CliRunner().invoke(main, ["build", str(parts[1]), "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert parts[0].name in result.output and not (tmp_path / "x").exists()


@pytest.mark.usefixtures("built")
def test_build_from_the_ollama_store_bakes_its_system_prompt_and_parameters(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bundler.cli import main
    from runtime.artifact.manifest import read_manifest_at

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["build", "ollama:tiny", "--temp", "0.6"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny-latest.llamabundle"
    manifest = read_manifest_at(str(out))
    assert manifest.model_id == "tiny:latest"
    assert manifest.defaults["system_prompt"] == "You are a tiny model. 回答要简短。"
    assert manifest.defaults["temp"] == 0.6  # the builder's flag wins over Ollama's 0.2
    assert manifest.defaults["ctx_size"] == 2048
    missing = CliRunner().invoke(main, ["build", "ollama:nosuch", "-o", str(tmp_path / "y")])
    assert missing.exit_code == 1 and "tiny:latest" in missing.output
