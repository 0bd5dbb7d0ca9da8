"""The teacher-output cache: the top-k KL, cached == online, fingerprints, reuse, DDP, refusals (CPU, tiny models)."""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
import sys

import datasets
import pytest
import tiny
import torch
from processes import DDP_SCRIPT, run_checked
from trainers import EXACT_UPDATES, make_args, state
from transformers import DataCollatorForLanguageModeling
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_distill import DistillationTrainer, DistillationTrainingArguments
from hf_distill.cache.store import LOGITS_COLUMN, TOPK_INDICES_COLUMN, TOPK_LOG_PROBS_COLUMN

# ---- cached == online ---------------------------------------------------------------------------------------------


def models_and_data(level: str):
    if level == "class":
        return tiny.classifier(layers=2, seed=0), tiny.classifier(layers=1, seed=1), tiny.class_rows(24, seed=2)
    if level == "regression":
        teacher = tiny.classifier(layers=2, num_labels=1, seed=0)
        return teacher, tiny.classifier(layers=1, num_labels=1, seed=1), tiny.class_rows(24, seed=2, regression=True)
    data = tiny.token_rows(24, num_labels=tiny.VOCAB_SIZE, seed=2, ignored_fraction=0.4)
    return tiny.masked_lm(layers=2, seed=0), tiny.masked_lm(layers=1, seed=1), data


def cached_trainer(tmp_path, student, teacher, data, *, collator=tiny.collate, **overrides) -> DistillationTrainer:
    values = dict(cache_teacher_logits=True, teacher_cache_dir=str(tmp_path / "cache"), teacher_cache_batch_size=5)
    values.update(overrides)
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, **values),
        train_dataset=data,
        data_collator=collator,
    )


def count_forwards(model: torch.nn.Module) -> list:
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("level", ["class", "regression", "token"])
def test_cached_and_online_give_the_same_loss(tmp_path, level):
    teacher, student, data = models_and_data(level)
    trainer = cached_trainer(tmp_path, student, teacher, data, teacher_cache_top_k=tiny.VOCAB_SIZE)
    cache = trainer.prepare_teacher_cache()
    assert cache.built
    rows = [trainer.train_dataset[i] for i in range(8)]
    batch = trainer.data_collator(rows)
    cached_keys = {LOGITS_COLUMN} if level != "token" else {TOPK_LOG_PROBS_COLUMN, TOPK_INDICES_COLUMN}
    assert cached_keys <= set(batch)
    online_batch = {key: value for key, value in batch.items() if key not in cached_keys}
    student.train()
    calls = count_forwards(teacher)
    cached_loss = trainer.compute_loss(student, batch)
    assert calls == []  # the cached path never runs the teacher
    online_loss = trainer.compute_loss(student, online_batch)
    assert len(calls) == 1
    assert cached_loss.item() == pytest.approx(online_loss.item(), rel=1e-6)


@pytest.mark.parametrize("top_k", [8, tiny.VOCAB_SIZE])
def test_a_cached_masked_lm_runs_the_students_head_on_the_counted_positions_only(tmp_path, top_k):
    # the cache holds the teacher's top-k at the counted positions only, but the student ran its vocabulary head on
    # every position, (B, L, V), whatever token_kd_gather_positions said: it now runs it on the N counted positions,
    # (N, V), with the same loss and gradients as its full logits (float64, the same cached teacher)
    teacher, student, data = models_and_data("token")
    student = student.double()
    results = {}
    for gather in (True, False):
        copy_ = copy.deepcopy(student).train()
        shapes = []
        head = copy_.get_output_embeddings()
        head.register_forward_hook(lambda m, a, out, seen=shapes: seen.append(tuple(out.shape)))
        trainer = cached_trainer(tmp_path / str(gather), copy_, teacher, data, teacher_cache_top_k=top_k,
                                 token_kd_gather_positions=gather, alpha_task=1.0, alpha_kd=2.0)  # fmt: skip
        trainer.prepare_teacher_cache()
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
        calls = count_forwards(teacher)
        loss = trainer.compute_loss(copy_, batch)
        loss.backward()
        assert calls == []  # the teacher never runs
        counted = int(batch["labels"].ne(-100).sum())
        batch_size, length = batch["input_ids"].shape
        assert 0 < counted < batch_size * length
        assert shapes == [(counted, tiny.VOCAB_SIZE) if gather else (batch_size, length, tiny.VOCAB_SIZE)]
        results[gather] = loss.item(), {name: p.grad.clone() for name, p in copy_.named_parameters()}
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-12)
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, rtol=1e-10, atol=1e-12, msg=f"{name}'s gradient")


def test_a_cached_masked_lm_over_several_gpus_in_one_process_keeps_its_full_logits(tmp_path, monkeypatch):
    # torch.nn.DataParallel's replicas share the head's hook, each seeing a part of the batch against the whole batch's
    # mask: the cached path trained there with full logits before its head was gathered, and still does
    monkeypatch.setattr(DistillationTrainingArguments, "n_gpu", property(lambda self: 2))
    teacher, student, data = models_and_data("token")
    shapes = []
    student.get_output_embeddings().register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    trainer = cached_trainer(tmp_path, student, teacher, data, teacher_cache_top_k=8)
    trainer.prepare_teacher_cache()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    student.train()
    assert trainer.compute_loss(student, batch).item() > 0
    assert shapes == [(*batch["input_ids"].shape, tiny.VOCAB_SIZE)]


def test_arguments_changed_before_the_trainer_is_built_are_checked_when_it_is(tmp_path):
    # they were checked only when made, and again at train() only if they changed after __init__: set in between,
    # token_kd_chunk_size beside the cache trained with the chunk size ignored
    teacher, student, data = models_and_data("token")
    args = make_args(tmp_path, cache_teacher_logits=True)
    args.token_kd_chunk_size = 4
    with pytest.raises(ValueError, match=r"^token_kd_chunk_size=4 chunks the heads of an online teacher"):
        DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data,
                            data_collator=tiny.collate)  # fmt: skip


def test_a_token_classifier_with_fewer_labels_than_top_k_reads_its_cache_at_the_capped_k(tmp_path):
    # k is capped at the number of labels (5 < the default 64): the collator must read the cache's k, not the
    # argument's, or the first batch is refused as holding another number of positions
    teacher, student = tiny.token_classifier(layers=2, seed=0), tiny.token_classifier(layers=1, seed=1)
    data = tiny.token_rows(24, num_labels=5, seed=2)
    trainer = cached_trainer(tmp_path, student, teacher, data)
    cache = trainer.prepare_teacher_cache()
    assert cache.top_k == 5 == trainer.data_collator.top_k
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    online = {key: value for key, value in batch.items() if key not in (TOPK_LOG_PROBS_COLUMN, TOPK_INDICES_COLUMN)}
    student.train()
    assert trainer.compute_loss(student, batch).item() == pytest.approx(trainer.compute_loss(student, online).item(),
                                                                        rel=1e-6)  # fmt: skip
    trainer.train()  # and a whole epoch


def test_cache_size_is_c_floats_per_example_and_2k_numbers_per_counted_token(tmp_path):
    teacher, student, data = models_and_data("class")
    cache = cached_trainer(tmp_path / "c", student, teacher, data).prepare_teacher_cache()
    assert cache.nbytes() == len(data) * 3 * 4  # C = 3 float32 logits per example
    teacher, student, data = models_and_data("token")
    trainer = cached_trainer(tmp_path / "t", student, teacher, data, teacher_cache_top_k=8)
    cache = trainer.prepare_teacher_cache()
    counted = sum(sum(label != -100 for label in data[i]["labels"]) for i in range(len(data)))
    assert cache.top_k == 8 and cache.nbytes() == counted * 8 * (4 + 4)  # k int32 indices + k float32 log-probs


def test_a_dataset_with_an_indices_mapping_gets_the_cache_attached_without_a_second_copy(tmp_path):
    # concatenate_datasets flattens every input of a dataset with an indices mapping (shuffle, select, a split),
    # the memory-mapped cache included: a second full copy of it was written into the cache folder, on every run.
    teacher, student, data = models_and_data("class")
    table = datasets.Dataset.from_list([data[i] for i in range(len(data))])
    subsets = {
        "split": table.train_test_split(test_size=0.25, seed=0)["train"],
        "shuffled": table.shuffle(seed=1),
        "selected": table.select([5, 3, 3, 0, 20, 7]),
    }
    for name, subset in subsets.items():
        for run in range(2):  # the build, then a run that loads it
            trainer = cached_trainer(tmp_path / name, copy.deepcopy(student), teacher, subset)
            assert trainer.prepare_teacher_cache().built == (run == 0)
            arrow_files = [path.name for path in (tmp_path / name / "cache").rglob("*.arrow")]
            assert arrow_files == ["data-00000-of-00001.arrow"]  # no flattened copy beside it
        # each row still brings its own teacher outputs
        teacher.eval()
        for index in range(len(subset)):
            with torch.no_grad():
                online = teacher(input_ids=torch.tensor([subset[index]["input_ids"]])).logits[0]
            cached = torch.as_tensor(trainer.train_dataset[index][LOGITS_COLUMN])
            torch.testing.assert_close(cached, online, rtol=1e-4, atol=1e-5, msg=f"{name} row {index}")
        assert trainer.train_dataset[0]["input_ids"] == subset[0]["input_ids"]


def test_a_torch_dataset_of_tensor_rows_reaches_the_collator_as_tensors(tmp_path):
    # The rows were converted to a datasets.Dataset of Python lists: a collator written for tensor rows
    # (pad_sequence) worked without the cache and failed with it.
    teacher, student, data = models_and_data("class")
    rows = [{"input_ids": torch.tensor(row["input_ids"]), "labels": torch.tensor(row["labels"])} for row in data.rows]
    seen = []

    def collate(rows):
        seen.extend(type(value) for row in rows for value in row.values())
        ids = torch.nn.utils.rnn.pad_sequence([row["input_ids"] for row in rows], batch_first=True)
        labels = torch.stack([row["labels"] for row in rows])
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": labels}

    results = {}
    for cache in (False, True):
        trainer = DistillationTrainer(model=copy.deepcopy(student), teacher_model=teacher, data_collator=collate,
                                      train_dataset=tiny.ListDataset(rows),
                                      args=make_args(tmp_path / str(cache), cache_teacher_logits=cache, max_steps=3,
                                                     **EXACT_UPDATES))  # fmt: skip
        seen.clear()
        trainer.train()
        assert seen and set(seen) == {torch.Tensor}
        results[cache] = state(trainer.model)
    for name, tensor in results[False].items():
        torch.testing.assert_close(results[True][name], tensor, rtol=1e-4, atol=1e-5, msg=f"{name} differs")


# ---- fingerprints -------------------------------------------------------------------------------------------------


def cache_dirs(tmp_path) -> set[str]:
    root = tmp_path / "cache"
    return {p.name for p in root.iterdir() if not p.name.startswith(".")} if root.exists() else set()


def test_changed_teacher_dataset_max_length_or_top_k_gets_a_new_cache(tmp_path):
    teacher, student, data = models_and_data("token")
    tokenizer = tiny.tokenizer(tmp_path / "tok")

    def prepare(teacher=teacher, data=data, top_k=16, max_length=64, temperature=2.0):
        tokenizer.model_max_length = max_length
        trainer = DistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=make_args(
                tmp_path,
                cache_teacher_logits=True,
                teacher_cache_dir=str(tmp_path / "cache"),
                teacher_cache_top_k=top_k,
                temperature=temperature,
            ),
            train_dataset=data,
            data_collator=tiny.collate,
            processing_class=tokenizer,
        )
        return trainer.prepare_teacher_cache()

    first = prepare()
    assert first.built and cache_dirs(tmp_path) == {first.path.name}
    again = prepare(data=tiny.ListDataset([dict(row) for row in data.rows]))  # equal content, another object
    assert not again.built and again.path == first.path

    changed_teacher = copy.deepcopy(teacher)
    with torch.no_grad():
        changed_teacher.bert.encoder.layer[0].output.dense.weight[0, 0] += 1e-3  # one weight
    # the same weights with another activation: other outputs, which only the teacher's config tells apart
    relu_teacher = tiny.masked_lm(layers=2, hidden_act="relu")
    relu_teacher.load_state_dict(teacher.state_dict())
    rows = [dict(row) for row in data.rows]
    rows[5] = {**rows[5], "input_ids": [rows[5]["input_ids"][0] % 90 + 5] + rows[5]["input_ids"][1:]}  # one token
    variants = [
        prepare(teacher=changed_teacher),
        prepare(teacher=relu_teacher),
        prepare(data=tiny.ListDataset(rows)),
        prepare(max_length=32),
        prepare(top_k=8),
        prepare(temperature=3.0),  # top-k log-probabilities are taken at the temperature
    ]
    assert all(v.built for v in variants)
    assert len({first.path, *(v.path for v in variants)}) == 7 == len(cache_dirs(tmp_path))


def test_the_precision_the_teacher_ran_in_is_part_of_the_fingerprint():
    # under fp16 the teacher keeps its float32 weights (their hash unchanged) and runs under autocast: its outputs
    # differ from an fp32 run's, so the precision alone must tell the two caches apart (needs a GPU end to end)
    from hf_distill.cache.fingerprint import cache_fingerprint

    same = dict(teacher_hash="t", rows_hash="r", max_length=64, collator_name="c", token_level=False)
    names = {cache_fingerprint(precision=precision, **same) for precision in ("no", "fp16", "bf16")}
    assert len(names) == 3


def test_another_collate_function_or_collator_setting_gets_a_new_cache(tmp_path):
    # The fingerprint named the collator by its class alone: every plain function was "function", so a changed
    # collate function (truncating here) reused the teacher outputs of the old one.
    import functools

    from transformers import DataCollatorWithPadding

    from hf_distill.cache.fingerprint import collator_identity

    teacher, student, data = models_and_data("class")

    def truncating(rows):
        return tiny.collate([{**row, "input_ids": row["input_ids"][:4]} for row in rows])

    def prepare(collate):
        return DistillationTrainer(
            model=student, teacher_model=teacher, data_collator=collate, train_dataset=data,
            args=make_args(tmp_path, cache_teacher_logits=True, teacher_cache_dir=str(tmp_path / "cache")),
        ).prepare_teacher_cache()  # fmt: skip

    first, changed = prepare(tiny.collate), prepare(truncating)
    assert first.built and changed.built and changed.path != first.path
    assert not prepare(tiny.collate).built  # the same function again: reused
    tokenizer = tiny.tokenizer(tmp_path / "tok")
    padded = {collator_identity(DataCollatorWithPadding(tokenizer, pad_to_multiple_of=n)) for n in (None, 8, 8)}
    assert len(padded) == 2  # a setting changes it; another tokenizer object with equal settings does not
    assert collator_identity(functools.partial(truncating)) != collator_identity(functools.partial(tiny.collate))

    def pad_collator(multiple):  # a factory: the setting lives in the closure
        def collate(rows):
            return tiny.collate(rows) if multiple is None else tiny.collate(rows)

        return collate

    assert collator_identity(pad_collator(None)) != collator_identity(pad_collator(8))
    assert collator_identity(pad_collator(8)) == collator_identity(pad_collator(8))
    with_state = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    before = collator_identity(with_state)
    with_state._process_id = 1234  # run-time state (transformers' seeded collators keep the pid): not a setting
    assert collator_identity(with_state) == before
    # The same run in other processes (other string hashing, other memory addresses): the same name, no address.
    script = (
        "import functools\nfrom hf_distill.cache.fingerprint import collator_identity\n"
        "class Helper:\n    def __init__(self):\n        self.size = 4\n        self._id = id(self)\n"
        "def collate(rows, helper=None):\n    return [r for r in rows if r in {'a', 'b', 'c', 'd', 'e'}]\n"
        "print(collator_identity(functools.partial(collate, helper=Helper())))\n"
    )
    names = {
        subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                       capture_output=True, text=True, check=True).stdout
        for seed in (1, 2, 3)
    }  # fmt: skip
    assert len(names) == 1
    name = names.pop()
    assert "0x" not in name and '"size": 4' in name and "Helper" in name


def test_class_cache_does_not_depend_on_temperature_or_k(tmp_path):
    teacher, student, data = models_and_data("class")
    first = cached_trainer(tmp_path, student, teacher, data, temperature=2.0).prepare_teacher_cache()
    second = cached_trainer(
        tmp_path, student, teacher, data, temperature=5.0, teacher_cache_top_k=3
    ).prepare_teacher_cache()
    assert first.built and not second.built and second.path == first.path


def test_each_search_trial_reads_a_token_cache_taken_at_its_own_temperature(tmp_path):
    # A token cache stores log-probabilities at T; hyperparameter_search sets a trial's T only inside train(), after
    # the cache was attached, so the cache must follow the trial, not the arguments it was built with.
    pytest.importorskip("optuna")

    teacher, student, data = models_and_data("token")
    checked = []

    class Checking(DistillationTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                mask = inputs["labels"].ne(-100)  # the counted positions, from the labels themselves
                assert mask.any()
                with torch.no_grad():
                    teacher_inputs = {name: inputs[name] for name in ("input_ids", "attention_mask")}
                    logits = self._teacher_module(**teacher_inputs).logits
                expected = torch.log_softmax(logits.double() / self.args.temperature, dim=-1)
                expected = expected.gather(-1, inputs[TOPK_INDICES_COLUMN])[mask]
                torch.testing.assert_close(inputs[TOPK_LOG_PROBS_COLUMN][mask].double(), expected, rtol=0, atol=1e-5)
                checked.append(self.args.temperature)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = Checking(
        model_init=lambda: copy.deepcopy(student),
        teacher_model=teacher,
        args=make_args(
            tmp_path,
            cache_teacher_logits=True,
            teacher_cache_dir=str(tmp_path / "cache"),
            teacher_cache_top_k=tiny.VOCAB_SIZE,
            temperature=2.0,
            max_steps=2,
            eval_strategy="no",
        ),
        train_dataset=data,
        eval_dataset=tiny.token_rows(8, num_labels=tiny.VOCAB_SIZE, seed=9),
        data_collator=tiny.collate,
    )
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"temperature": (1.0, 4.0, 1.0)[trial.number]},
        backend="optuna",
        n_trials=3,
        direction="minimize",
        compute_objective=lambda metrics: metrics["eval_loss"],
    )
    assert checked == [1.0, 1.0, 4.0, 4.0, 1.0, 1.0]
    # one cache per temperature the trials used (T=1 built once, then read again); none at the arguments' T=2,
    # which no trial trained with
    assert len(cache_dirs(tmp_path)) == 2


def test_a_matching_cache_is_reused_without_running_the_teacher_and_trains_identically(tmp_path):
    teacher, student, data = models_and_data("class")
    first = cached_trainer(tmp_path, copy.deepcopy(student), teacher, data, max_steps=3)
    calls = count_forwards(teacher)
    first.train()
    assert first.teacher_cache.built and len(calls) == math.ceil(len(data) / 5)  # one pass, batches of 5
    second = cached_trainer(tmp_path, copy.deepcopy(student), teacher, data, max_steps=3)
    second.train()
    assert not second.teacher_cache.built and len(calls) == math.ceil(len(data) / 5)  # not one more call
    for name, tensor in state(first.model).items():
        torch.testing.assert_close(state(second.model)[name], tensor, rtol=0, atol=0)


def test_resume_reuses_the_cache_and_ends_with_the_same_student(tmp_path):
    teacher, student, _ = models_and_data("class")
    data = tiny.class_rows(12, seed=2)
    common = dict(num_train_epochs=2, save_strategy="steps", save_steps=3, output_dir=str(tmp_path / "run"))
    full = cached_trainer(tmp_path, copy.deepcopy(student), teacher, data, **common)
    full.train()
    assert full.teacher_cache.path.parent == tmp_path / "cache"
    calls = count_forwards(teacher)
    resumed = cached_trainer(tmp_path, tiny.classifier(layers=1, seed=99), teacher, data, **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-3"))
    assert calls == [] and not resumed.teacher_cache.built
    assert resumed.state.global_step == full.state.global_step == 6
    for name, tensor in state(resumed.model).items():
        torch.testing.assert_close(tensor, state(full.model)[name], rtol=1e-5, atol=1e-6)


def test_default_cache_dir_is_under_output_dir_and_a_partial_cache_is_never_read(tmp_path):
    teacher, student, data = models_and_data("class")
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, cache_teacher_logits=True),
        train_dataset=data,
        data_collator=tiny.collate,
    )
    cache = trainer.prepare_teacher_cache()
    assert cache.path.parent == tmp_path / "out" / "teacher_cache"
    # A folder without its completion file (a crashed build) is rebuilt, not read.
    (cache.path / "hf_distill_teacher_cache.json").unlink()
    rebuilt = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, cache_teacher_logits=True),
        train_dataset=data,
        data_collator=tiny.collate,
    )
    again = rebuilt.prepare_teacher_cache()  # the incomplete folder is in the way of the finished one: replaced
    assert again.built and again.path == cache.path and (cache.path / "hf_distill_teacher_cache.json").is_file()
    assert not [p for p in cache.path.parent.iterdir() if ".partial" in p.name]  # no build folder left behind


# ---- training with the cache --------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["class", "token"])
def test_gradient_accumulation_with_the_cache_matches_one_large_batch(tmp_path, level):
    teacher, student, data = models_and_data(level)
    data = tiny.ListDataset(data.rows[:16])
    results = {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        trainer = cached_trainer(
            tmp_path / name,
            copy.deepcopy(student),
            teacher,
            data,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            **EXACT_UPDATES,
            teacher_cache_top_k=8,  # k < V: the top-k KL itself is accumulated exactly
        )
        trainer.train()
        results[name] = state(trainer.model), [e["loss"] for e in trainer.state.log_history if "loss" in e]
    for name, tensor in results["1x8"][0].items():
        torch.testing.assert_close(results["2x4"][0][name], tensor, rtol=1e-4, atol=1e-4, msg=f"{name} differs")
    assert results["2x4"][1] == pytest.approx(results["1x8"][1], rel=1e-5)


def test_length_grouping_and_evaluation_with_the_cache(tmp_path):
    teacher, student, data = models_and_data("class")
    seen = []

    def collate(rows):  # tiny.collate drops keys it does not know: what the user's collator is given is recorded
        seen.extend(set(row) for row in rows)
        return tiny.collate(rows)

    trainer = cached_trainer(
        tmp_path, student, teacher, data, collator=collate, train_sampling_strategy="group_by_length", max_steps=4,
        eval_strategy="no",
    )  # fmt: skip
    trainer.train()
    # The lengths come from a column added beside the cache, not from reading every row; the collator drops it.
    assert trainer.train_dataset["length"] == [len(data[i]["input_ids"]) for i in range(len(data))]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert "length" not in batch and LOGITS_COLUMN in batch
    # nor does the user's own collator ever see it (nor the cache's columns)
    assert seen and set().union(*seen) == {"input_ids", "labels"}
    calls = count_forwards(teacher)
    metrics = trainer.evaluate(eval_dataset=tiny.class_rows(8, seed=7))
    assert calls == [] and math.isfinite(metrics["eval_loss"])


@pytest.mark.parametrize(
    ("level", "sampling"), [("class", "random"), ("class", "group_by_length"), ("token", "group_by_length")]
)
def test_dataloader_workers_read_the_cache_and_train_the_same_student(tmp_path, level, sampling):
    # On a GPU the collation moves to worker processes (dataloader_num_workers): the cache columns, the collator that
    # splits them off and the length-grouped sampler must work there, and give the batches the main process gives.
    teacher, student, data = models_and_data(level)
    results = {}
    for workers in (0, 2):
        trainer = cached_trainer(
            tmp_path / f"workers{workers}",
            copy.deepcopy(student),
            teacher,
            data,
            max_steps=5,
            dataloader_num_workers=workers,
            train_sampling_strategy=sampling,
        )
        trainer.prepare_teacher_cache()
        calls = count_forwards(teacher)  # after the build: training itself never runs the teacher
        trainer.train()
        assert calls == []
        results[workers] = state(trainer.model), [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert any(not torch.equal(results[0][0][name], tensor) for name, tensor in state(student).items())
    for name, tensor in results[0][0].items():
        assert torch.equal(results[2][0][name], tensor), f"{name} differs with dataloader workers"
    assert len(results[2][1]) == 5 and results[2][1] == results[0][1]


def test_length_grouped_sampler_reads_the_lengths_once_and_orders_rows_as_before(tmp_path):
    teacher, student, data = models_and_data("class")
    trainer = cached_trainer(tmp_path, student, teacher, data, train_sampling_strategy="group_by_length")
    trainer.prepare_teacher_cache()
    sampler = trainer._get_train_sampler()
    # A list, not datasets' lazy Column: sorting by a Column reads the table once per row at every epoch's start.
    assert isinstance(sampler, LengthGroupedSampler) and type(sampler.lengths) is list
    assert sampler.lengths == [len(data[i]["input_ids"]) for i in range(len(data))]
    lazy = LengthGroupedSampler(sampler.batch_size, lengths=trainer.train_dataset["length"])
    assert not isinstance(lazy.lengths, list)  # what Trainer alone would sort by
    with torch.random.fork_rng():  # the samplers draw from the global generator; later tests keep theirs
        torch.manual_seed(3)
        order = list(sampler)
        torch.manual_seed(3)
        assert order == list(lazy) and sorted(order) == list(range(len(data)))
    # evaluation keeps the dataset's order (predictions[i] is row i), unlike transformers 5's length-grouped one
    assert type(trainer._get_eval_sampler(trainer.train_dataset)) is torch.utils.data.SequentialSampler


def test_datasets_dataset_with_text_columns_keeps_them_out_of_the_hash_and_batch(tmp_path):
    teacher, student, rows = models_and_data("class")
    table = datasets.Dataset.from_list([{**rows[i], "sentence": f"text {i}"} for i in range(len(rows))])
    trainer = cached_trainer(tmp_path, student, teacher, table, max_steps=2)
    trainer.train()
    assert trainer.teacher_cache.built
    renamed = table.map(lambda row: {"sentence": row["sentence"] + "!"})  # the student never reads it
    again = cached_trainer(tmp_path, copy.deepcopy(student), teacher, renamed, max_steps=2)
    assert not again.prepare_teacher_cache().built


def test_a_build_folder_names_its_host_and_build_not_only_its_process(tmp_path, monkeypatch):
    # nodes of a shared filesystem (save_on_each_node) often run their builders under the same pid
    from hf_distill.cache import store

    seen = []
    real = store.datasets.Dataset.save_to_disk
    monkeypatch.setattr(
        store.datasets.Dataset, "save_to_disk", lambda self, path: (seen.append(path), real(self, path))
    )
    teacher, student, data = models_and_data("class")
    cached_trainer(tmp_path, student, teacher, data).prepare_teacher_cache()
    cached_trainer(tmp_path / "again", student, teacher, data).prepare_teacher_cache()
    names = [os.path.basename(path) for path in seen]
    assert len(names) == 2 and len(set(names)) == 2 and all(f"-{os.getpid()}-" in name for name in names)
    import socket

    assert all(socket.gethostname() in name for name in names)


def test_build_folders_of_crashed_builders_on_this_machine_are_removed(tmp_path):
    import socket

    from hf_distill.cache.store import _boot_id

    teacher, student, data = models_and_data("class")
    root = tmp_path / "cache"
    cache = cached_trainer(tmp_path, student, teacher, data).prepare_teacher_cache()
    shutil.rmtree(cache.path)
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{pid}"))
    namespace = os.stat("/proc/self/ns/pid").st_ino
    boot = _boot_id()
    host = socket.gethostname()
    here = f"{host}-{boot}-{namespace}"
    abandoned = root / f".{cache.path.name}.partial-{here}-{dead}-0a1b2c3d"
    elsewhere = root / f".{cache.path.name}.partial-another-host-{boot}-{namespace}-{dead}-0a1b2c3d"  # may still run
    # a container sharing this hostname (pods on the host network) numbers its own processes: its pid means nothing
    # here, and its live build was deleted as abandoned
    other_container = root / f".{cache.path.name}.partial-{host}-{boot}-{namespace + 1}-{dead}-0a1b2c3d"
    running = root / f".{cache.path.name}.partial-{here}-{os.getppid()}-0a1b2c3d"
    for folder in (abandoned, elsewhere, other_container, running):
        folder.mkdir(parents=True)
    assert (
        cached_trainer(tmp_path / "again", student, teacher, data, teacher_cache_dir=str(root))
        .prepare_teacher_cache()
        .built
    )
    assert not abandoned.exists() and elsewhere.exists() and other_container.exists() and running.exists()


def test_a_collator_that_edits_its_rows_passes_the_order_probe(tmp_path):
    teacher, student, data = models_and_data("class")

    def popping(rows):  # the tutorial pattern: labels popped out of the rows
        labels = torch.tensor([row.pop("labels") for row in rows])
        return {**tiny.collate([{**row, "labels": 0} for row in rows]), "labels": labels}

    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=popping, train_dataset=data,
                                  args=make_args(tmp_path, cache_teacher_logits=True))  # fmt: skip
    assert trainer.prepare_teacher_cache().built


def test_a_collators_other_methods_and_slots_are_part_of_its_identity():
    # DataCollatorMixin's __call__ dispatches to torch_call: an edited torch_call kept the old cache
    from transformers.data.data_collator import DataCollatorMixin

    from hf_distill.cache.fingerprint import collator_identity

    class Truncating(DataCollatorMixin):
        def torch_call(self, rows):
            return tiny.collate([{**row, "input_ids": row["input_ids"][:4]} for row in rows])

    class Edited(DataCollatorMixin):
        def torch_call(self, rows):
            return tiny.collate([{**row, "input_ids": row["input_ids"][:8]} for row in rows])

    Edited.__qualname__ = Truncating.__qualname__  # the same class, its method edited between two runs
    assert collator_identity(Truncating()) != collator_identity(Edited())

    class Slotted:
        __slots__ = ("size",)

        def __init__(self, size):
            self.size = size

        def __call__(self, rows):
            return tiny.collate(rows)

    assert collator_identity(Slotted(4)) != collator_identity(Slotted(8))


def test_a_wrapped_collators_tokenizer_settings_are_part_of_its_identity(tmp_path):
    from transformers import DataCollatorWithPadding

    from hf_distill.cache.fingerprint import collator_identity

    class Wrapper:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, rows):
            return self.inner(rows)

    left, right = tiny.tokenizer(tmp_path / "l"), tiny.tokenizer(tmp_path / "r")
    left.padding_side = "left"
    names = {collator_identity(Wrapper(Wrapper(DataCollatorWithPadding(t)))) for t in (left, right)}
    assert len(names) == 2


def test_a_collators_tokenizer_is_described_by_its_whole_state(tmp_path):
    # A tokenizer was named by its class, padding side and pad id: a cased tokenizer (or another vocabulary, another
    # truncation side) of the same class reused the cache of the uncased one, for collators that tokenize text.
    from transformers import BertTokenizerFast, DataCollatorWithPadding

    from hf_distill.cache.fingerprint import collator_identity

    uncased = tiny.tokenizer(tmp_path / "u")
    cased = BertTokenizerFast(vocab=dict(uncased.get_vocab()), do_lower_case=False)  # the same vocabulary
    assert uncased("The Quick")["input_ids"] != cased("The Quick")["input_ids"]

    def name(tokenizer) -> str:
        return collator_identity(DataCollatorWithPadding(tokenizer))

    other_vocabulary = tiny.tokenizer(tmp_path / "v", extra_words=("fox",))
    left_truncating = tiny.tokenizer(tmp_path / "t")
    left_truncating.truncation_side = "left"
    shorter = tiny.tokenizer(tmp_path / "m")
    shorter.model_max_length = 8
    names = {name(tokenizer) for tokenizer in (uncased, cased, other_vocabulary, left_truncating, shorter)}
    assert len(names) == 5
    # What the last call left in the backend (its truncation and padding) is not the tokenizer's state.
    before = name(uncased)
    uncased(["the quick brown fox"] * 2, truncation=True, max_length=3, padding="max_length")
    assert name(uncased) == before == name(tiny.tokenizer(tmp_path / "again"))
    # Nor where it was loaded from and the options of its last call, saved with it (as a fine-tuned teacher's is):
    # the same tokenizer saved and reloaded rebuilt the cache.
    from transformers import AutoTokenizer

    uncased.save_pretrained(tmp_path / "saved")
    assert name(AutoTokenizer.from_pretrained(tmp_path / "saved")) == before
    # The same in other processes (other string hashing).
    script = (
        f"import sys; sys.path.insert(0, {os.path.dirname(tiny.__file__)!r})\nimport pathlib, tiny\n"
        "from transformers import DataCollatorWithPadding\n"
        "from hf_distill.cache.fingerprint import collator_identity\n"
        f"print(collator_identity(DataCollatorWithPadding(tiny.tokenizer(pathlib.Path({str(tmp_path / 'p')!r})))))\n"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                       capture_output=True, text=True, check=True).stdout.strip()
        for seed in (1, 2)
    }  # fmt: skip
    assert outputs == {before}


def test_numpy_tensor_and_path_settings_keep_their_values_in_the_collators_identity():
    # np.int64 (np.max of the lengths), a tensor or a Path was reduced to its class name: n=4 reused n=12's cache.
    import functools
    from pathlib import Path

    import numpy as np

    from hf_distill.cache.fingerprint import collator_identity

    def truncating(rows, n=None):
        return tiny.collate([{**row, "input_ids": row["input_ids"][:n]} for row in rows])

    def name(value) -> str:
        return collator_identity(functools.partial(truncating, n=value))

    pairs = [
        (np.int64(4), np.int64(12)),
        (np.float32(0.5), np.float32(0.25)),
        (torch.tensor(4), torch.tensor(12)),
        (torch.tensor([1, 2]), torch.tensor([1, 3])),
        (torch.tensor([1, 2]), torch.tensor([1, 2], dtype=torch.int32)),
        (np.array([1.0, 2.0]), np.array([1.0, 2.5])),
        (Path("/data/a"), Path("/data/b")),
    ]
    for first, second in pairs:
        assert name(first) != name(second), (first, second)
    assert name(np.int64(4)) == name(4)  # the value, as a Python int
    assert name(torch.tensor([1, 2])) == name(torch.tensor([1, 2]))  # equal values, other objects
    assert name(np.array([1.0, 2.0])) == name(np.array([1.0, 2.0]))
    assert name(Path("/data/a")) == name("/data/a")
    assert "0x" not in name(torch.tensor(4)) + name(np.array([1]))


def test_boolean_columns_are_hashed_by_value(tmp_path):
    # pyarrow refused fill_null(0) on a boolean array: a bool column (or a list of bools) crashed the fingerprint.
    from hf_distill.cache.fingerprint import fingerprint_rows

    def rows_hash(flags, masks):
        return fingerprint_rows(datasets.Dataset.from_dict({"input_ids": [[1, 2], [3]], "flag": flags, "keep": masks}))

    first = rows_hash([True, False], [[True, False], [True]])
    assert first == rows_hash([True, False], [[True, False], [True]])
    # the same values cut into other rows are other rows (a re-tokenisation that moves a boundary)
    cut = [datasets.Dataset.from_dict({"input_ids": ids}) for ids in ([[11, 12], [13]], [[11], [12, 13]])]
    assert fingerprint_rows(cut[0]) != fingerprint_rows(cut[1])
    assert first != rows_hash([False, False], [[True, False], [True]])
    assert first != rows_hash([True, False], [[True, True], [True]])
    assert first != rows_hash([True, None], [[True, False], [True]])  # a null is not False
    teacher, student, data = models_and_data("class")
    table = datasets.Dataset.from_list([{**data[i], "is_augmented": i % 2 == 0} for i in range(len(data))])

    def collate(rows):  # reads only what it needs
        return tiny.collate([{"input_ids": row["input_ids"], "labels": row["labels"]} for row in rows])

    args = make_args(tmp_path, cache_teacher_logits=True, remove_unused_columns=False)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=collate, train_dataset=table,
                                  args=args)  # fmt: skip
    assert trainer.prepare_teacher_cache().built


# ---- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["reversed", "sorted"])
def test_refuses_a_collator_that_reorders_rows(tmp_path, how):
    # the cached outputs are stacked in the rows' order: a collator sorting by length (for packed sequences) gave the
    # student other rows' teacher targets
    teacher, student, data = models_and_data("class")

    def reordering(rows):
        if how == "reversed":
            return tiny.collate(rows[::-1])
        return tiny.collate(sorted(rows, key=lambda row: (-len(row["input_ids"]), list(row["input_ids"]))))

    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=reordering, train_dataset=data,
                                  args=make_args(tmp_path, cache_teacher_logits=True))  # fmt: skip
    with pytest.raises(ValueError, match=r"data collator does not keep the order of the rows .*cache_teacher_logits"):
        trainer.prepare_teacher_cache()
    assert not (tmp_path / "out" / "teacher_cache").exists()


@pytest.mark.parametrize("lengths", ["many", "two"])
def test_refuses_a_length_sorting_collator_when_the_first_rows_are_equally_long(tmp_path, lengths):
    # the probe collated the first 5 rows only: equally long, a stable sort by length kept them in place, the probe
    # passed and the cached logits went to other rows (0.017 off, with no error); with only two lengths among the
    # rows it still fell back to the first 5
    teacher, student, data = models_and_data("class")
    rows = [data[index] for index in range(len(data))]
    for index, row in enumerate(rows):
        if index < 5 or lengths == "many":
            row["input_ids"] = (list(row["input_ids"]) * 3)[: 8 if index < 5 else len(row["input_ids"])]
        else:
            row["input_ids"] = (list(row["input_ids"]) * 3)[:6]
    if lengths == "two":
        assert {len(row["input_ids"]) for row in rows} == {8, 6}

    def sorting(batch):
        return tiny.collate(sorted(batch, key=lambda row: -len(row["input_ids"])))  # longest first, stable

    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=sorting,
                                  train_dataset=datasets.Dataset.from_list(rows),
                                  args=make_args(tmp_path, cache_teacher_logits=True))  # fmt: skip
    with pytest.raises(ValueError, match=r"data collator does not keep the order of the rows"):
        trainer.prepare_teacher_cache()
    assert not (tmp_path / "out" / "teacher_cache").exists()


def test_refuses_a_collator_that_packs_rows_before_the_teacher_pass(tmp_path):
    # DataCollatorWithFlattening makes one (1, total) row of a batch: the whole teacher pass ran, then a TypeError
    from transformers import DataCollatorWithFlattening

    teacher, student = tiny.masked_lm(layers=2, seed=0), tiny.masked_lm(layers=1, seed=1)
    forwards = []
    teacher.register_forward_hook(lambda *_: forwards.append(1))
    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=DataCollatorWithFlattening(),
                                  train_dataset=tiny.mlm_rows(12),
                                  args=make_args(tmp_path, cache_teacher_logits=True))  # fmt: skip
    with pytest.raises(ValueError, match=r"DataCollatorWithFlattening\) turned 5 rows into a batch of 1 .*packs"):
        trainer.prepare_teacher_cache()
    assert not forwards


def test_a_teacher_giving_another_number_of_rows_stops_the_build_at_its_first_batch(tmp_path):
    from hf_distill.cache.store import build_teacher_cache

    rows = datasets.Dataset.from_list([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}, {"input_ids": [6]}])
    batches = []

    def run_teacher(batch):
        batches.append(1)
        return torch.zeros(1, 3)  # one row of outputs for the whole batch

    with pytest.raises(ValueError, match=r"logits of shape \(1, 3\) for a batch of 2 rows"):
        build_teacher_cache(dataset=rows, collator=tiny.collate, run_teacher=run_teacher, device=torch.device("cpu"),
                            batch_size=2, top_k=1, temperature=1.0, path=tmp_path / "c",
                            show_progress=False)  # fmt: skip
    assert batches == [1]


def test_refuses_token_labels_padded_with_a_counted_value_before_the_teacher_pass(tmp_path):
    # labels padded with 0 count the padding, so a row's counted positions depend on its batch: refused only at the
    # first training batch, after the whole teacher pass, and blamed on "the data changed under the cache"
    def zero_padded(rows):
        batch = tiny.collate(rows)
        batch["labels"][batch["labels"] == -100] = 0
        return batch

    teacher, student = tiny.token_classifier(layers=2, seed=0), tiny.token_classifier(layers=1, seed=1)
    data = tiny.token_rows(16, num_labels=5, seed=2, ignored_fraction=0.0)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=zero_padded, train_dataset=data,
                                  args=make_args(tmp_path, cache_teacher_logits=True))  # fmt: skip
    with pytest.raises(ValueError, match=r"which positions of a row count changes with its padding: .*collated alone "
                                         r"count \[\d+(, \d+)*\] .*pad labels with -100"):  # fmt: skip
        trainer.prepare_teacher_cache()
    assert not (tmp_path / "out" / "teacher_cache").exists()


def test_refuses_a_dataset_transform_and_keeps_the_users_format(tmp_path):
    teacher, student, rows = models_and_data("class")
    table = datasets.Dataset.from_list([rows[i] for i in range(len(rows))])
    transformed = table.with_transform(lambda batch: {**batch, "input_ids": [ids[:4] for ids in batch["input_ids"]]})
    trainer = cached_trainer(tmp_path, student, teacher, transformed)
    with pytest.raises(ValueError, match=r"transform .*set_transform.*\.map\(\)"):
        trainer.prepare_teacher_cache()
    seen = []

    def collate(rows):
        seen.append(type(rows[0]["input_ids"]))
        return tiny.collate([{key: torch.as_tensor(value) for key, value in row.items()} for row in rows])

    torch_format = table.with_format("torch")
    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=collate,
                                  train_dataset=torch_format, args=make_args(tmp_path / "t", cache_teacher_logits=True,
                                                                             max_steps=1))  # fmt: skip
    seen.clear()
    trainer.train()
    assert seen and all(kind is torch.Tensor for kind in seen)  # the rows come as the user formatted them
    # the format's options are the user's columns', never the cache's: an integer dtype would truncate the logits
    long_format = table.with_format("torch", dtype=torch.long)
    trainer = cached_trainer(tmp_path / "long", student, teacher, long_format)
    trainer.prepare_teacher_cache()
    assert trainer.train_dataset[0][LOGITS_COLUMN].is_floating_point()


def test_refuses_collators_that_mask_at_random(tmp_path):
    teacher, student, data = models_and_data("token")
    masking = DataCollatorForLanguageModeling(tiny.tokenizer(tmp_path / "tok"), mlm=True, mlm_probability=0.15)
    with pytest.raises(ValueError, match="DataCollatorForLanguageModeling: it masks different tokens at random"):
        DistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=make_args(tmp_path, cache_teacher_logits=True),
            train_dataset=data,
            data_collator=masking,
        )
    # causal LM collation (mlm=False) is deterministic and accepted
    DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, cache_teacher_logits=True),
        train_dataset=data,
        data_collator=DataCollatorForLanguageModeling(tiny.tokenizer(tmp_path / "tok"), mlm=False),
    )


@pytest.mark.parametrize("cache", [True, False])
def test_refuses_a_train_dataset_that_already_holds_the_cache_columns(tmp_path, cache):
    # An earlier cached trainer's train_dataset carries its teacher's outputs: with the cache off they were read as
    # this teacher's (which never ran); with it on, the teacher ran again, then datasets refused duplicated columns.
    from transformers import default_data_collator

    teacher, student, _ = models_and_data("class")
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(5, 90, (8,), generator=generator).tolist(), "attention_mask": [1] * 8,
             "labels": index % 3} for index in range(12)]  # fmt: skip
    first = DistillationTrainer(model=copy.deepcopy(student), teacher_model=teacher,
                                train_dataset=datasets.Dataset.from_list(rows), data_collator=default_data_collator,
                                args=make_args(tmp_path / "first", cache_teacher_logits=True))  # fmt: skip
    first.prepare_teacher_cache()
    stale = first.train_dataset
    other_teacher = tiny.classifier(layers=2, seed=5)
    calls = count_forwards(other_teacher)

    def second(train_dataset):
        args = make_args(tmp_path / "second", cache_teacher_logits=cache, max_steps=1,
                         teacher_cache_dir=str(tmp_path / "cache"))  # fmt: skip
        return DistillationTrainer(model=copy.deepcopy(student), teacher_model=other_teacher, args=args,
                                   train_dataset=train_dataset, data_collator=default_data_collator)  # fmt: skip

    message = (
        r"train_dataset already holds the teacher cache's columns \['teacher_logits'\].*"
        r"\.remove_columns\(\['teacher_logits'\]\)"
    )
    with pytest.raises(ValueError, match=message):
        second(stale)
    trainer = second(datasets.Dataset.from_list(rows))
    trainer.train_dataset = stale  # set after construction
    with pytest.raises(ValueError, match=message):
        trainer.train()
    if cache:
        with pytest.raises(ValueError, match=message):
            trainer.prepare_teacher_cache()
    assert calls == [] and not (tmp_path / "cache").exists()
    trainer.train_dataset = stale.remove_columns(["teacher_logits"])  # the fix the message gives
    trainer.train()
    assert calls  # this run's teacher, not the stale outputs


def test_with_the_cache_off_a_batch_holding_cached_outputs_is_refused(tmp_path):
    # any source of such a batch (a torch Dataset's rows, a collator): never read as the teacher's outputs
    teacher, student, data = models_and_data("class")
    trainer = DistillationTrainer(model=student, teacher_model=teacher, train_dataset=data, data_collator=tiny.collate,
                                  args=make_args(tmp_path))  # fmt: skip
    batch = {**tiny.collate([data[i] for i in range(4)]), LOGITS_COLUMN: torch.zeros(4, 3)}
    student.train()
    with pytest.raises(ValueError, match=r"'teacher_logits'.*cache_teacher_logits=False"):
        trainer.compute_loss(student, batch)


def test_refuses_a_torch_dataset_whose_rows_change_at_each_read(tmp_path):
    # random augmentation in __getitem__: the cache would freeze one draw of each row for every epoch
    import random

    teacher, student, data = models_and_data("class")

    class Augmented(tiny.ListDataset):
        draws = random.Random(0)

        def __getitem__(self, index):  # random token dropout
            ids = self.rows[index]["input_ids"]
            return {**self.rows[index], "input_ids": [t for t in ids if self.draws.random() > 0.3] or ids[:1]}

    trainer = cached_trainer(tmp_path, student, teacher, Augmented(data.rows))
    calls = count_forwards(teacher)
    with pytest.raises(ValueError, match=r"cannot cache Augmented: its __getitem__ .*cache_teacher_logits=False"):
        trainer.prepare_teacher_cache()
    assert calls == [] and not (tmp_path / "cache").exists()


def test_refuses_a_teacher_cache_dir_that_is_a_file(tmp_path):
    # it failed only after the whole teacher pass, with a bare FileExistsError
    teacher, student, data = models_and_data("class")
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder")
    calls = count_forwards(teacher)
    for value in (notes, notes / "caches"):
        with pytest.raises(ValueError, match=r"teacher_cache_dir .*notes\.txt.* is a file.*pass a folder"):
            cached_trainer(tmp_path, student, teacher, data, teacher_cache_dir=str(value)).prepare_teacher_cache()
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "out" / "teacher_cache").write_text("")  # the default, under output_dir
    with pytest.raises(ValueError, match=r"teacher_cache_dir .*out/teacher_cache.* is a file"):
        cached_trainer(tmp_path, student, teacher, data, teacher_cache_dir=None).prepare_teacher_cache()
    assert calls == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(teacher_cache_top_k=0), r"teacher_cache_top_k must be an integer >= 1, got 0"),
        (dict(teacher_cache_top_k=2.5), r"teacher_cache_top_k must be an integer >= 1, got 2.5"),
        (dict(teacher_cache_batch_size=-4), r"teacher_cache_batch_size must be an integer >= 1, got -4"),
        (dict(teacher_cache_dir=" "), r"teacher_cache_dir must be a folder"),
        (dict(cache_teacher_logits="yes"), r"cache_teacher_logits must be true or false, got 'yes'"),
    ],
)
def test_cache_arguments_refuse_bad_values(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, **overrides)


def test_cache_arguments_defaults_and_padding_multiple(tmp_path):
    args = make_args(tmp_path)
    assert args.cache_teacher_logits is False and args.teacher_cache_top_k == 64
    assert args.resolved_teacher_cache_batch_size == 4 * args.per_device_eval_batch_size
    assert args.pad_to_multiple_of is None and make_args(tmp_path, bf16=True).pad_to_multiple_of == 8
    assert make_args(tmp_path, teacher_cache_batch_size=7).resolved_teacher_cache_batch_size == 7


# ---- DDP and torch.compile ----------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_ddp_builds_the_cache_once_and_matches_online_training(tmp_path):
    run_checked(
        ["torchrun", "--nproc_per_node", "2", str(DDP_SCRIPT), str(tmp_path / "ddp"), "4", "1", "cache"], tmp_path
    )
    run_checked([sys.executable, str(DDP_SCRIPT), str(tmp_path / "online"), "8", "1"], tmp_path)
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    online = torch.load(tmp_path / "online" / "rank0.pt", weights_only=True)
    assert rank0["world_size"] == 2
    # Only the main process ran the teacher over the data; the other loaded what it wrote.
    assert rank0["teacher_calls"] > 0 and rank1["teacher_calls"] == 0
    assert rank0["cache_built"] and not rank1["cache_built"]
    for name, tensor in online["state"].items():
        assert torch.equal(rank0["state"][name], rank1["state"][name])
        torch.testing.assert_close(rank0["state"][name], tensor, rtol=1e-4, atol=1e-4, msg=f"{name} differs")


FAILING_BUILD = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, {helpers!r})
import tiny
from trainers import make_args

from hf_distill import DistillationTrainer
from hf_distill.cli.distributed import end_distributed

out = Path(sys.argv[1])
trainer = DistillationTrainer(model=tiny.classifier(layers=1, seed=1), teacher_model=tiny.classifier(layers=2, seed=0),
                              train_dataset=tiny.class_rows(16, seed=2), data_collator=tiny.collate,
                              args=make_args(out, cache_teacher_logits=True, teacher_cache_batch_size=4, max_steps=1))
if trainer.args.process_index == 0:
    def failing(batch):
        raise torch.cuda.OutOfMemoryError("simulated on rank 0 during the cache build")
    trainer._run_teacher_for_cache = failing
try:
    trainer.prepare_teacher_cache()
    message = "built"
except Exception as error:
    message = f"{{type(error).__name__}}: {{error}}"
(out / f"rank{{trainer.args.process_index}}.txt").write_text(message)
end_distributed()
"""


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_ddp_ranks_say_the_main_process_failed_to_build_the_cache(tmp_path):
    # the barrier let rank 1 in after rank 0's failure, and rank 1 blamed the filesystem ("With several nodes...")
    from processes import HELPERS

    script = tmp_path / "failing_build.py"
    script.write_text(FAILING_BUILD.format(helpers=str(HELPERS)))
    (tmp_path / "run").mkdir()
    run_checked(["torchrun", "--nproc_per_node", "2", str(script), str(tmp_path / "run")], tmp_path, timeout=300)
    rank0, rank1 = ((tmp_path / "run" / f"rank{rank}.txt").read_text() for rank in (0, 1))
    assert rank0 == "OutOfMemoryError: simulated on rank 0 during the cache build"
    assert rank1.startswith("RuntimeError: The main process failed to build the teacher cache") and "\n" not in rank1
    assert "several nodes" not in rank1


def test_torch_compile_trains_student_and_teacher(tmp_path):
    teacher = tiny.classifier(layers=1, seed=0)
    student = tiny.classifier(layers=1, seed=1)
    generator = torch.Generator().manual_seed(0)
    # One sequence length and batch size: one compiled graph each, to keep the test short.
    rows = [{"input_ids": torch.randint(5, 90, (8,), generator=generator).tolist(), "labels": i % 3} for i in range(8)]
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, torch_compile=True, max_steps=2),
        train_dataset=tiny.ListDataset(rows),
        data_collator=tiny.collate,
    )
    assert isinstance(trainer.teacher_model, torch._dynamo.eval_frame.OptimizedModule)
    before = state(student)
    trainer.train()
    losses_seen = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses_seen) == 2 and all(math.isfinite(v) for v in losses_seen)
    assert any(not torch.equal(t, before[n]) for n, t in state(student).items())


def test_arguments_parse_from_the_command_line():
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(DistillationTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", "x", "--cache_teacher_logits", "--teacher_cache_top_k", "16", "--report_to", "none"]
    )
    assert args.cache_teacher_logits is True and args.teacher_cache_top_k == 16 and args.teacher_cache_dir is None


@pytest.mark.parametrize("cut", ["metadata", "data", "rows"])
def test_a_cache_whose_files_were_cut_short_is_rebuilt_not_a_crash_on_every_run(tmp_path, cut, caplog):
    # After a power loss a folder can hold an empty completion file or data file: every later run crashed (a
    # JSONDecodeError or ArrowInvalid) until the folder was deleted by hand. A data file cut at the end of one of its
    # record batches (a copy cut short) still reads, short of rows: every run crashed joining it to the rows.
    import pyarrow as pa

    teacher, student, data = models_and_data("class")

    def trainer():
        return DistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=make_args(tmp_path, cache_teacher_logits=True),
            train_dataset=data,
            data_collator=tiny.collate,
        )

    first = trainer().prepare_teacher_cache()
    expected = first.columns[:]
    files = [first.path / "hf_distill_teacher_cache.json"] if cut == "metadata" else sorted(first.path.glob("*.arrow"))
    for file in files:
        if cut == "rows":  # a whole, readable stream of one row fewer
            with pa.memory_map(str(file)) as source:
                table = pa.ipc.open_stream(source).read_all()
            with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table.slice(0, len(table) - 1))
        else:
            file.write_bytes(b"")
    with caplog.at_level("WARNING"):
        again = trainer().prepare_teacher_cache()
    assert again.built and again.path == first.path
    assert "unreadable" in caplog.text
    assert again.columns[:] == expected
    assert not [p for p in first.path.parent.iterdir() if p != first.path]  # nothing left beside it


def test_a_token_cache_column_is_built_without_a_second_copy_of_its_values():
    # _large_list concatenated the rows, then copied the result again (astype): a token cache of many positions held
    # its values three times at once (rows, concatenation, copy)
    import tracemalloc

    import numpy as np

    from hf_distill.cache.store import _large_list

    rows = [np.arange(n * 64, dtype=np.float32) for n in range(1, 200)]
    values_bytes = sum(row.nbytes for row in rows)
    tracemalloc.start()
    try:
        array = _large_list(rows, np.float32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(array.flatten().to_numpy(), np.concatenate(rows))
    assert peak < 1.5 * values_bytes, f"{peak} bytes at peak for {values_bytes} bytes of values"


def test_the_cache_turned_on_after_the_trainer_was_built_is_built_and_read(tmp_path):
    # train() found the user's collator where the cache's wrapper should be: AttributeError 'collator'
    teacher, student, data = models_and_data("class")
    trainer = cached_trainer(tmp_path, student, teacher, data, cache_teacher_logits=False, max_steps=2)
    trainer.args.cache_teacher_logits = True
    forwards = count_forwards(teacher)
    trainer.train()
    assert trainer.teacher_cache is not None and trainer.teacher_cache.built
    assert len(forwards) == math.ceil(len(data) / 5)  # the build's batches alone: training read the cache


def test_a_tokenizer_given_only_through_the_collator_is_saved_with_the_cache_on(tmp_path):
    # Trainer saves the data collator's tokenizer when no processing_class is given; the cache's wrapper collator had
    # none, so with cache_teacher_logits=True the saved student came without its tokenizer
    from transformers import DataCollatorWithPadding

    tokenizer = tiny.tokenizer(tmp_path / "tok")
    texts = ["the quick fox", "a b c d", "hello world", "quick"] * 2
    rows = datasets.Dataset.from_dict({"text": texts, "labels": [i % 3 for i in range(len(texts))]})
    rows = rows.map(lambda batch: tokenizer(batch["text"]), batched=True).remove_columns("text")
    for cache in (False, True):
        args = make_args(tmp_path / str(cache), cache_teacher_logits=cache, max_steps=1)
        student, teacher = tiny.classifier(layers=1, seed=1), tiny.classifier(layers=2)
        collator = DataCollatorWithPadding(tokenizer)
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=rows,
                                      data_collator=collator)  # fmt: skip
        trainer.train()
        trainer.save_model(str(tmp_path / f"saved-{cache}"))
        assert (tmp_path / f"saved-{cache}" / "tokenizer_config.json").is_file(), f"cache={cache}"
