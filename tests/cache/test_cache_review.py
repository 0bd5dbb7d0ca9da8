"""The teacher cache's fingerprint, build folders and refusals: what a changed teacher, wrapper, buffer or collator
setting does to it, what a failed or foreign build leaves behind (CPU, tiny models)."""

from __future__ import annotations

import enum
import os
import re
import socket

import datasets
import numpy as np
import pytest
import tiny
import torch
from trainers import make_args
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_distill import DistillationTrainer
from hf_distill.cache import store
from hf_distill.cache.collator import TeacherCacheCollator
from hf_distill.cache.fingerprint import collator_identity, fingerprint_model
from hf_distill.cache.store import LOGITS_COLUMN, TOPK_INDICES_COLUMN, TOPK_LOG_PROBS_COLUMN


def cached_trainer(tmp_path, teacher, data=None, **overrides) -> DistillationTrainer:
    values = dict(cache_teacher_logits=True, teacher_cache_dir=str(tmp_path / "cache"), teacher_cache_batch_size=5)
    values.update(overrides)
    return DistillationTrainer(
        model=tiny.classifier(layers=1, seed=1),
        teacher_model=teacher,
        args=make_args(tmp_path, **values),
        train_dataset=tiny.class_rows(12, seed=2) if data is None else data,
        data_collator=tiny.collate,
    )


def online_logits(teacher: torch.nn.Module, row: dict) -> torch.Tensor:
    with torch.no_grad():
        return teacher(input_ids=torch.tensor([row["input_ids"]])).logits[0]


def dead_pid() -> int:
    return next(pid for pid in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{pid}"))


# ---- a changed teacher, wrapper or buffer gets a new cache ---------------------------------------------------------


def test_a_second_prepare_after_the_teachers_weights_changed_in_place_builds_a_new_cache(tmp_path):
    # the attached cache came back without its fingerprint being computed again: the old teacher's logits were read
    # as the edited teacher's
    teacher = tiny.classifier(layers=2, seed=0)
    trainer = cached_trainer(tmp_path, teacher)
    first = trainer.prepare_teacher_cache()
    assert trainer.prepare_teacher_cache() is first  # nothing changed: the attached cache, not a rebuild
    with torch.no_grad():
        teacher.classifier.weight.mul_(-3)
    second = trainer.prepare_teacher_cache()
    assert second is not first and second.built and second.path != first.path
    rows = trainer._cache_source_dataset
    assert len(trainer.train_dataset) == len(rows)
    for index in range(len(rows)):
        cached = torch.as_tensor(trainer.train_dataset[index][LOGITS_COLUMN])
        torch.testing.assert_close(cached, online_logits(teacher, rows[index]), rtol=1e-4, atol=1e-5)
    assert trainer.train_dataset[0]["input_ids"] == rows[0]["input_ids"]  # attached to the rows, once


class Calibrated(torch.nn.Module):
    """A teacher wrapper with its own parameter: logits scaled by a learned temperature."""

    def __init__(self, model: torch.nn.Module, scale: float):
        super().__init__()
        self.module = model
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
        logits = self.module(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        return SequenceClassifierOutput(logits=logits * self.scale)


def test_a_teacher_wrappers_own_parameters_are_part_of_the_fingerprint(tmp_path):
    # the fingerprint hashed the module under any `.module`: scale 0.5 and 2.0 shared one cache
    caches = [
        cached_trainer(tmp_path, Calibrated(tiny.classifier(layers=2, seed=0), scale)).prepare_teacher_cache()
        for scale in (0.5, 2.0)
    ]
    assert all(cache.built for cache in caches) and caches[0].path != caches[1].path
    first, second = (torch.as_tensor(cache.columns[0][LOGITS_COLUMN]) for cache in caches)
    torch.testing.assert_close(second, 4 * first, rtol=1e-5, atol=1e-6)


def test_an_engine_wrapper_is_looked_through_by_the_fingerprint(tmp_path):
    # DataParallel (like DDP or a DeepSpeed engine) only places the teacher: the same cache as the bare teacher
    teacher = tiny.classifier(layers=2, seed=0)
    bare = cached_trainer(tmp_path, teacher).prepare_teacher_cache()
    trainer = cached_trainer(tmp_path, teacher)
    trainer._teacher_module = torch.nn.DataParallel(trainer._teacher_module)
    wrapped = trainer.prepare_teacher_cache()
    assert bare.built and not wrapped.built and wrapped.path == bare.path


class Scaled(torch.nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.register_buffer("scale", torch.tensor(scale), persistent=False)

    def forward(self, x):
        return self.linear(x) * self.scale


def test_non_persistent_buffers_are_part_of_the_teacher_hash():
    # state_dict() leaves out buffers registered with persistent=False
    torch.manual_seed(0)
    half = Scaled(0.5)
    double = Scaled(2.0)
    double.load_state_dict(half.state_dict())
    assert set(half.state_dict()) == {"linear.weight", "linear.bias"}
    assert fingerprint_model(half) != fingerprint_model(double)
    again = Scaled(0.5)
    again.load_state_dict(half.state_dict())
    assert fingerprint_model(again) == fingerprint_model(half)


def test_a_teacher_with_weights_on_the_meta_device_is_refused_before_any_build(tmp_path):
    # accelerate's offloading (a device_map with "disk" or "cpu" offload) keeps the weights on the meta device:
    # hashing them crashed with "NotImplementedError: Cannot copy out of meta tensor"
    teacher = tiny.classifier(layers=2, seed=0)
    teacher.classifier.to_empty(device="meta")
    teacher.hf_device_map = {"bert": "cpu", "classifier": "disk"}  # spread by a device_map: placed as it is
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    message = (
        r"^cache_teacher_logits=True cannot hash a teacher whose weights are on the meta device .*device_map.*: 2 "
        r"of them, the first 'classifier\.weight'\. Load the teacher whole on one device .*or set "
        r"cache_teacher_logits=False\.$"
    )
    with pytest.raises(ValueError, match=message):
        cached_trainer(tmp_path, teacher)
    trainer = cached_trainer(tmp_path, tiny.classifier(layers=2, seed=0))
    trainer._teacher_module = teacher  # or turned on since __init__
    with pytest.raises(ValueError, match=message):
        trainer.prepare_teacher_cache()
    assert calls == [] and not (tmp_path / "cache").exists()


# ---- the collator's identity ---------------------------------------------------------------------------------------


class Padding(enum.Enum):
    LONGEST = "longest"
    MAX_LENGTH = "max_length"


class Collator:
    def __init__(self, setting):
        self.setting = setting

    def __call__(self, rows):
        return tiny.collate(rows)


def class_with(max_length: int) -> type:
    class Truncating:
        # a setting kept on the class, not the instance
        max_length = 128

        def __call__(self, rows):
            return tiny.collate([{**row, "input_ids": row["input_ids"][: self.max_length]} for row in rows])

    Truncating.max_length = max_length
    return Truncating


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (torch.float16, torch.float32),
        (np.dtype("float16"), np.dtype("float32")),
        (np.dtype("<f4"), np.dtype(">f4")),
        (np.float16, np.float32),
        (torch.device("cpu"), torch.device("meta")),
        (Padding.LONGEST, Padding.MAX_LENGTH),
        (re.compile(r"\s+"), re.compile(r"\w+")),
        (re.compile(r"a"), re.compile(r"a", re.IGNORECASE)),
        (b"ab", b"ac"),
    ],
    ids=[
        "torch-dtype",
        "numpy-dtype",
        "numpy-byte-order",
        "numpy-type",
        "device",
        "enum",
        "regex",
        "regex-flags",
        "bytes",
    ],
)
def test_collator_settings_without_public_attributes_keep_their_values_in_its_identity(first, second):
    # each described as its type name alone: a float16 collator reused the float32 one's cache
    assert collator_identity(Collator(first)) != collator_identity(Collator(second))
    assert collator_identity(Collator(first)) == collator_identity(Collator(first))
    assert "0x" not in collator_identity(Collator(first))


def test_a_collators_class_attributes_are_part_of_its_identity():
    short, long = class_with(8)(), class_with(64)()
    assert collator_identity(short) != collator_identity(long)
    assert collator_identity(short) == collator_identity(class_with(8)())
    shadowed = class_with(8)()
    shadowed.max_length = 64  # the instance's own value wins, as in attribute lookup
    assert collator_identity(shadowed) == collator_identity(class_with(64)()) != collator_identity(short)


def test_a_transformers_collators_identity_is_its_instance_settings():
    # its dataclass fields are class attributes too, but the instance's values are what it uses
    from transformers import DataCollatorWithPadding

    from hf_distill.cache.fingerprint import _describe

    described = _describe(DataCollatorWithPadding(tokenizer=None, pad_to_multiple_of=8), 0)
    assert described["settings"]["pad_to_multiple_of"] == 8
    assert set(described["settings"]) == {"tokenizer", "padding", "max_length", "pad_to_multiple_of", "return_tensors"}


# ---- build folders -------------------------------------------------------------------------------------------------


def test_a_failed_build_leaves_no_build_folder_behind(tmp_path, monkeypatch):
    # save_to_disk wrote the .partial folder, then flushing it failed: the folder stayed in the cache root for ever
    def failing(folder):
        assert any(folder.glob("*.arrow"))  # written, then the failure
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(store, "_synced", failing)
    with pytest.raises(OSError, match="simulated"):
        cached_trainer(tmp_path, tiny.classifier(layers=2, seed=0)).prepare_teacher_cache()
    assert (tmp_path / "cache").is_dir() and list((tmp_path / "cache").iterdir()) == []


def test_only_build_folders_of_this_boot_and_pid_namespace_are_swept(tmp_path):
    # every Linux host has the same initial pid namespace inode: a machine of the same hostname sharing the cache
    # folder deleted another's live build as abandoned
    boot = store._boot_id()
    assert boot and re.fullmatch(r"[0-9a-f]{12}", boot)
    root = tmp_path / "cache"
    trainer = cached_trainer(tmp_path, tiny.classifier(layers=2, seed=0))
    name = trainer.prepare_teacher_cache().path.name
    namespace = os.stat("/proc/self/ns/pid").st_ino
    host = socket.gethostname()
    assert store._builder() == f"{host}-{boot}-{namespace}"
    other_boot = f"{int(boot, 16) ^ 1:012x}"
    dead = dead_pid()
    ours = root / f".{name}.partial-{host}-{boot}-{namespace}-{dead}-0a1b2c3d"
    other_machine = root / f".{name}.partial-{host}-{other_boot}-{namespace}-{dead}-0a1b2c3d"
    old_format = root / f".{name}.partial-{host}-{namespace}-{dead}-0a1b2c3d"  # cannot tell its machine: kept
    running = root / f".{name}.partial-{host}-{boot}-{namespace}-{os.getppid()}-0a1b2c3d"
    for folder in (ours, other_machine, old_format, running):
        folder.mkdir()
    store._remove_abandoned_builds(root / name)
    assert not ours.exists() and other_machine.exists() and old_format.exists() and running.exists()


def test_without_a_boot_id_no_build_folder_is_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_BOOT_ID_FILE", str(tmp_path / "missing"))
    assert store._boot_id() is None
    folder = tmp_path / f".abc.partial-{store._builder()}-{dead_pid()}-0a1b2c3d"
    folder.mkdir()
    store._remove_abandoned_builds(tmp_path / "abc")
    assert folder.exists()


def _padded(rows):
    width = max(len(row["input_ids"]) for row in rows)
    ids = torch.tensor([row["input_ids"] + [0] * (width - len(row["input_ids"])) for row in rows])
    return {"input_ids": ids, "labels": torch.tensor([row["labels"] for row in rows])}


def _grouped_by_length(rows):
    """Rows of equal length together, the lengths in the order they first appear (bucketing for padding)."""
    groups: dict[int, list] = {}
    for row in rows:
        groups.setdefault(len(row["input_ids"]), []).append(row)
    return _padded([row for group in groups.values() for row in group])


@pytest.mark.parametrize(
    ("lengths", "reordering"),
    [
        # the first rows short, long, long: probed as they come, every probe was already grouped by length
        ([2, 3, 3, 2, 2, 3], _grouped_by_length),
        # three lengths or more, each probed once: grouping moved none of them
        ([2, 2, 3, 4], _grouped_by_length),
        ([2, 3, 4, 5, 2, 6, 7], _grouped_by_length),
        # a dataset sorted by length: the first 1,000 rows, all one length, were the only ones read
        ([4] * 1000 + [8] * 200, lambda rows: _padded(sorted(rows, key=lambda row: -len(row["input_ids"])))),
    ],
    ids=["short-long-long", "three-lengths", "six-lengths", "sorted-dataset"],
)
def test_the_order_probe_refuses_collators_that_group_or_sort_by_length(lengths, reordering):
    dataset = datasets.Dataset.from_list(
        [{"input_ids": [index + 1] * length, "labels": index} for index, length in enumerate(lengths)]
    )
    store.check_keeps_row_order(_padded, dataset)  # keeping the order: accepted
    with pytest.raises(ValueError, match=r"data collator does not keep the order of the rows it is given"):
        store.check_keeps_row_order(reordering, dataset)


def test_another_users_running_build_is_never_swept(tmp_path, monkeypatch):
    # os.kill(pid, 0) on another user's live process raises PermissionError: that build is running, not abandoned
    other_user = dead_pid()
    real_kill = os.kill

    def kill(pid, signal):
        if pid == other_user:
            raise PermissionError(1, "Operation not permitted")
        return real_kill(pid, signal)

    monkeypatch.setattr(os, "kill", kill)
    folder = tmp_path / f".abc.partial-{store._builder()}-{other_user}-0a1b2c3d"
    folder.mkdir()
    store._remove_abandoned_builds(tmp_path / "abc")
    assert folder.exists()


def test_a_completion_file_that_is_not_a_json_object_reads_as_an_unfinished_cache(tmp_path):
    # a damaged completion file is rebuilt over (with a warning), never a crash inside the cache's loading
    folder = tmp_path / "fingerprint"
    folder.mkdir()
    (folder / store._METADATA_FILE).write_text("[1]")
    assert store.load_teacher_cache(folder, num_rows=4) is None and store._complete(folder) is False


def test_unlabelled_regression_rows_marked_nan_pass_the_row_order_probe():
    # NaN != NaN: a collator keeping the rows' order looked as if it changed them, and a regression transfer set
    # (its unlabelled rows NaN) could not be cached at all
    rows = [{"input_ids": list(range(1, 3 + i)), "labels": float(i) if i % 2 else float("nan")} for i in range(6)]
    store.check_keeps_row_order(tiny.collate, datasets.Dataset.from_list(rows))


# ---- the token-level build -----------------------------------------------------------------------------------------


def test_the_token_build_takes_log_softmax_over_the_counted_positions_only(tmp_path, monkeypatch):
    # log_softmax ran in float32 over every (B, L, V) position, padding and -100 positions included
    teacher = tiny.masked_lm(layers=2, seed=0).eval()
    data = tiny.token_rows(13, num_labels=tiny.VOCAB_SIZE, seed=2, ignored_fraction=0.4)
    dataset = datasets.Dataset.from_list(data.rows)
    temperature, k, batch_size = 2.0, 8, 5
    seen_logits: list[torch.Tensor] = []

    def run_teacher(batch):
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        seen_logits.append(logits.clone())
        return logits

    computed_rows = []
    real = torch.log_softmax

    def counting(tensor, dim):
        computed_rows.append(tensor.numel() // tensor.shape[-1])
        return real(tensor, dim=dim)

    monkeypatch.setattr(store.torch, "log_softmax", counting)
    cache = store.build_teacher_cache(
        dataset=dataset,
        collator=tiny.collate,
        run_teacher=run_teacher,
        device=torch.device("cpu"),
        batch_size=batch_size,
        top_k=k,
        temperature=temperature,
        path=tmp_path / "cache" / "f",
        show_progress=False,
    )
    monkeypatch.undo()
    counted = [sum(label != -100 for label in row["labels"]) for row in data.rows]
    assert sum(computed_rows) == sum(counted)
    # the build's batches: longest first, as build_teacher_cache orders them
    order = np.argsort(-np.array([len(row["input_ids"]) for row in data.rows]), kind="stable")
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    assert len(batches) == len(seen_logits)
    for rows, logits in zip(batches, seen_logits):
        labels = tiny.collate([data.rows[row] for row in rows])["labels"]
        # what the build computed before: float32 over every position, then the counted ones picked
        previous_values, previous_indices = torch.log_softmax(logits.float() / temperature, dim=-1).topk(k, dim=-1)
        reference = torch.log_softmax(logits.double() / temperature, dim=-1)  # (B, L, V)
        for position, row in enumerate(rows):
            mask = labels[position] != -100
            values = torch.as_tensor(cache.columns[row][TOPK_LOG_PROBS_COLUMN]).view(-1, k)
            indices = torch.as_tensor(cache.columns[row][TOPK_INDICES_COLUMN]).view(-1, k).long()
            assert values.shape[0] == counted[row]
            assert torch.equal(values, previous_values[position][mask])
            assert torch.equal(indices, previous_indices[position][mask].long())
            expected = reference[position][mask].gather(-1, indices)
            torch.testing.assert_close(values.double(), expected, rtol=0, atol=1e-6)
            torch.testing.assert_close(values.double(), reference[position][mask].topk(k).values, rtol=0, atol=1e-6)


def test_a_token_cache_capped_at_fewer_labels_than_top_k_is_read_back_at_that_k(tmp_path):
    # its completion file said the argument's k (64), not the 5 it holds: a second run reading the cache handed the
    # collator k = 64, and its first batch was refused as holding another number of positions
    teacher = tiny.token_classifier(layers=2, seed=0)
    data = tiny.token_rows(24, num_labels=5, seed=2)

    def token_trainer(name):
        return DistillationTrainer(
            model=tiny.token_classifier(layers=1, seed=1),
            teacher_model=teacher,
            args=make_args(tmp_path / name, cache_teacher_logits=True, teacher_cache_dir=str(tmp_path / "cache")),
            train_dataset=data,
            data_collator=tiny.collate,
        )

    built = token_trainer("first").prepare_teacher_cache()
    assert built.built and built.top_k == 5
    second = token_trainer("second")
    cache = second.prepare_teacher_cache()
    assert not cache.built and cache.path == built.path  # read back, not rebuilt
    assert cache.top_k == 5 == second.data_collator.top_k
    second.train()


# ---- error messages ------------------------------------------------------------------------------------------------


def test_the_cache_collator_without_top_k_says_how_to_pass_it():
    collator = TeacherCacheCollator(tiny.collate)
    row = {"input_ids": [5, 6], "labels": [1, 2], TOPK_LOG_PROBS_COLUMN: [0.0, 0.0], TOPK_INDICES_COLUMN: [0, 0]}
    with pytest.raises(ValueError, match=r"^TeacherCacheCollator needs top_k .*got None.*top_k=cache\.top_k") as info:
        collator([row])
    assert "\n" not in str(info.value)


def test_the_cache_collator_refuses_rows_whose_counted_positions_differ_even_when_the_totals_match():
    # row 0 counts 3 positions and row 1 one, the cache entries were stored for 1 and 3: the same 4 positions in all,
    # which laid out by the batch's mask would have put row 1's values at row 0's positions
    k = 2
    rows = [
        {"input_ids": [5, 6, 7, 8], "labels": [9, 9, 9, -100]},
        {"input_ids": [5, 6, 7, 8], "labels": [-100, 9, -100, -100]},
    ]
    for row, stored in zip(rows, (1, 3)):
        row[TOPK_LOG_PROBS_COLUMN] = np.full(stored * k, -0.5, dtype=np.float32)
        row[TOPK_INDICES_COLUMN] = np.arange(stored * k, dtype=np.int64)
    with pytest.raises(ValueError, match=r"holds \[1, 3\] counted positions.*has \[3, 1\]"):
        TeacherCacheCollator(tiny.collate, top_k=k)(rows)
