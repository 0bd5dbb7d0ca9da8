"""The masked-LM token KL with vocabulary heads run on the counted positions only: the same loss and gradients as the
full-logit path, never a (B, L, V) tensor, exact under gradient accumulation."""

from __future__ import annotations

import copy

import pytest
import tiny
import torch
import transformers
from trainers import EXACT_UPDATES, make_args, state

from hf_distill import DistillationTrainer, build_student
from hf_distill.trainer.token_heads import chunked_token_sums


def mlm_rows(n: int, *, seed: int = 3) -> tiny.ListDataset:
    """Rows whose labels are the token at ~25% of positions (uneven per row), -100 elsewhere."""
    return tiny.mlm_rows(n, seed=seed)


def trainer_for(tmp_path, student, teacher, data, **overrides):
    args = make_args(tmp_path, **{"temperature": 2.0, "alpha_kd": 5.0, "alpha_task": 2.0, **overrides})
    return DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data,
                               data_collator=tiny.collate)  # fmt: skip


@pytest.mark.parametrize("chunk", [None, 3], ids=["gathered", "gathered+chunked"])
@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_gathered_heads_give_the_full_logit_loss_and_gradients_in_float64(tmp_path, architecture, chunk):
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5).double()
    student = build_student(teacher.float(), layers=[1], architecture=architecture).double()
    teacher = teacher.double()
    data = mlm_rows(6)
    batch = tiny.collate([data[i] for i in range(6)])
    results = {}
    for gather in (True, False):
        copy_ = copy.deepcopy(student).train()
        shapes = []
        copy_.get_output_embeddings().register_forward_hook(
            lambda m, a, out, seen=shapes: seen.append(tuple(out.shape))
        )
        options = dict(token_kd_gather_positions=gather, token_kd_chunk_size=chunk if gather else None)
        trainer = trainer_for(tmp_path / str(gather), copy_, teacher, data, alpha_cos=1.0, **options)
        loss = trainer.compute_loss(copy_, batch)
        assert trainer._counted_positions.kept == {}  # deferred head inputs never outlive their step
        loss.backward()
        results[gather] = (loss.item(), {n: p.grad.clone() for n, p in copy_.named_parameters() if p.grad is not None})
        counted = int(batch["labels"].ne(-100).sum())
        if not gather:
            assert shapes == [(*batch["input_ids"].shape, tiny.VOCAB_SIZE)]
        elif chunk is None:
            assert shapes == [(counted, tiny.VOCAB_SIZE)]  # gathered: the head only ever saw the N counted positions
        else:  # deferred in the forward (the model's own code on 1 position, checked against the head run by the
            # loss on it), then chunks of at most 3 positions, recomputed in the backward
            assert shapes[:2] == [(1, tiny.VOCAB_SIZE)] * 2 and max(shape[0] for shape in shapes) == 3
            assert sum(shape[0] for shape in shapes[2:]) == 2 * counted
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-10, abs=1e-10)
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, rtol=1e-9, atol=1e-10, msg=f"{name} differs")


@pytest.mark.parametrize("chunk", [None, 5], ids=["gathered", "gathered+chunked"])
def test_gathered_heads_are_exact_under_gradient_accumulation(tmp_path, chunk):
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    student = tiny.masked_lm(layers=1, seed=1, initializer_range=0.5)
    data = mlm_rows(16, seed=5)
    finals = {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        copy_ = copy.deepcopy(student)
        args = make_args(tmp_path / name, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                         token_kd_chunk_size=chunk, **EXACT_UPDATES)  # fmt: skip
        DistillationTrainer(model=copy_, teacher_model=teacher, args=args, train_dataset=data,
                            data_collator=tiny.collate).train()  # fmt: skip
        finals[name] = state(copy_)
    for key, value in finals["1x8"].items():
        torch.testing.assert_close(finals["2x4"][key], value, rtol=1e-4, atol=1e-4, msg=f"{key} differs")


@pytest.mark.parametrize("chunk", [None, 5], ids=["gathered", "gathered+chunked"])
def test_a_micro_batch_with_no_counted_position_still_trains_and_stays_exact(tmp_path, chunk):
    # a masked-LM collator can mask nothing in a small micro-batch: the chunk loop then never ran, and the loss came
    # back with no graph (backward raised; under DDP the other ranks would wait)
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    student = tiny.masked_lm(layers=1, seed=1, initializer_range=0.5)
    rows = mlm_rows(8, seed=5).rows
    for row in rows[4:]:  # the second micro-batch of each step counts no position
        row["labels"] = [-100] * len(row["labels"])
    data = tiny.ListDataset(rows)
    finals = {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        copy_ = copy.deepcopy(student)
        args = make_args(tmp_path / name, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                         token_kd_chunk_size=chunk, train_sampling_strategy="sequential", **EXACT_UPDATES)  # fmt: skip
        DistillationTrainer(model=copy_, teacher_model=teacher, args=args, train_dataset=data,
                            data_collator=tiny.collate).train()  # fmt: skip
        finals[name] = state(copy_)
    for key, value in finals["1x8"].items():
        torch.testing.assert_close(finals["2x4"][key], value, rtol=1e-4, atol=1e-4, msg=f"{key} differs")


def test_evaluation_still_sees_full_logits(tmp_path):
    teacher = tiny.masked_lm(layers=2, seed=0)
    student = tiny.masked_lm(layers=1, seed=1)
    data = mlm_rows(8)
    trainer = trainer_for(tmp_path, student, teacher, data)
    trainer.train()
    metrics = trainer.evaluate(eval_dataset=data)
    assert metrics["eval_loss"] > 0
    batch = tiny.collate([data[i] for i in range(2)])
    with torch.no_grad():
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.dim() == 3  # the hooks select nothing outside training


def test_chunked_heads_run_under_the_forwards_autocast_as_the_gathered_ones_do(tmp_path):
    # bf16 autocast (here on the CPU): the deferred heads ran outside it in the loss and failed on a bf16 hidden
    # state against float32 weights (on a GPU, a bf16 teacher head against autocast's float32 layer-norm output)
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    student = tiny.masked_lm(layers=1, seed=1, initializer_range=0.5)
    data = mlm_rows(6)
    batch = tiny.collate([data[i] for i in range(6)])
    losses = {}
    for chunk in (None, 3):
        copy_ = copy.deepcopy(student).train()
        trainer = trainer_for(tmp_path / str(chunk), copy_, teacher, data, bf16=True, token_kd_chunk_size=chunk)
        model = trainer.accelerator.prepare(copy_)  # its forward under the run's autocast, as in training
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        losses[chunk] = loss.item()
        assert all(p.grad is not None for p in copy_.parameters() if p.requires_grad)
    assert losses[3] == pytest.approx(losses[None], rel=1e-6)


def test_a_half_precision_teachers_head_takes_float32_inputs_without_autocast():
    teacher_head = torch.nn.Linear(8, tiny.VOCAB_SIZE).bfloat16()
    student_head = torch.nn.Linear(8, tiny.VOCAB_SIZE)
    hidden = torch.randn(5, 8)
    kd, ce = chunked_token_sums(
        student_head=student_head, teacher_head=teacher_head, student_hidden=hidden, teacher_hidden=hidden,
        labels=torch.tensor([1, 2, -100, 3, 4]), temperature=2.0, chunk_size=2,
    )  # fmt: skip
    assert torch.isfinite(kd) and torch.isfinite(ce) and kd > 0


def test_a_new_trials_student_lets_the_old_students_head_go(tmp_path):
    # model_init builds a new student per hyperparameter-search trial: each old head (with the word embeddings it is
    # tied to) stayed hooked, and alive, for the whole search
    import weakref

    teacher = tiny.masked_lm(layers=2, seed=0)
    data = mlm_rows(4)
    first = tiny.masked_lm(layers=1, seed=1)
    trainer = trainer_for(tmp_path, first, teacher, data)
    batch = tiny.collate([data[i] for i in range(4)])
    heads = []
    for student in (first, tiny.masked_lm(layers=1, seed=2)):
        with trainer._position_selector(student, batch, {}):
            pass
        heads.append(weakref.ref(student.get_output_embeddings()))
    del first, student
    trainer.model = trainer.model_wrapped = trainer.callback_handler.model = None  # as a new trial's student does
    import gc

    gc.collect()
    assert heads[0]() is None  # the first student's head is gone
    hooked = trainer._counted_positions._heads
    assert len(hooked) == 2 and any(head is teacher.get_output_embeddings() for head in hooked)
    assert heads[1]() is not None and any(head is heads[1]() for head in hooked)


def _float64_token_kd(student, teacher, batch, temperature, *, causal=False):
    """T^2 KL(teacher || student) averaged over the counted positions, from the two models' full logits in float64,
    written from the definition (no hf-distill code). `causal`: the positions before each labelled token (a causal
    LM's logits at i predict token i + 1), attended ones."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        s = student.double().eval()(**inputs).logits
        t = teacher.double().eval()(**inputs).logits
    counted = batch["labels"] != -100
    if causal:
        shifted = torch.zeros_like(counted)
        shifted[:, :-1] = counted[:, 1:]
        counted = shifted & batch["attention_mask"].bool()
    p = torch.softmax(t[counted] / temperature, dim=-1)
    log_q = torch.log_softmax(s[counted] / temperature, dim=-1)
    return (temperature**2 * (p * (p.log() - log_q)).sum(-1).mean()).item()


def _softcapped_lm(seed: int, *, cap: float | None = 2.0, std: float | None = 0.5):
    """A tiny Gemma 2 causal LM whose logits are soft-capped after its head (final_logit_softcapping; None: not
    capped). `std`: its weights drawn from N(0, std) (logits well past a cap of 2), None: Gemma 2's own init."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    config = Gemma2Config(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                          final_logit_softcapping=cap, attn_implementation="eager")  # fmt: skip
    model = Gemma2ForCausalLM(config)
    if std is not None:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(0, std)
    return model.double()


def test_a_model_that_transforms_its_logits_after_the_head_is_exact_gathered_and_refused_chunked(tmp_path):
    # the chunked loss ran the head itself and skipped Gemma 2's soft-cap: a loss of 2.61 for a true 1.89, silently
    teacher, student = _softcapped_lm(0), _softcapped_lm(1)
    data = mlm_rows(3, seed=5)
    batch = tiny.collate([data[i] for i in range(3)])
    reference = _float64_token_kd(copy.deepcopy(student), copy.deepcopy(teacher), batch, 2.0, causal=True)
    for gather in (False, True):
        copy_ = copy.deepcopy(student).train()
        trainer = trainer_for(tmp_path / str(gather), copy_, teacher, data, alpha_kd=1.0, alpha_task=0.0,
                              token_kd_gather_positions=gather)  # fmt: skip
        assert trainer.compute_loss(copy_, dict(batch)).item() == pytest.approx(reference, rel=1e-10)
    refused = (
        r"^token_kd_chunk_size=4 runs the student's output head itself, but the student \(Gemma2ForCausalLM\) "
        r"transforms its logits after that head \(final_logit_softcapping=2.0\), .* Unset token_kd_chunk_size"
    )
    with pytest.raises(ValueError, match=refused):  # when the trainer is built, before any step
        trainer_for(tmp_path / "chunked", copy.deepcopy(student), teacher, data, alpha_kd=1.0, alpha_task=0.0,
                    token_kd_chunk_size=4)  # fmt: skip


def test_a_soft_capped_model_is_refused_chunked_while_its_logits_are_still_small(tmp_path):
    # the refusal was the first step's numeric check only: with Gemma 2's cap of 30 and its own small initial
    # weights the cap changes the logits by under 1e-4, the check passed, and once the logits grew the chunked loss
    # skipped the cap without a word (151.4 for a true 62.4)
    capped, plain = _softcapped_lm(0, cap=30.0, std=None), _softcapped_lm(1, cap=None, std=None)
    data = mlm_rows(3, seed=5)
    batch = tiny.collate([data[i] for i in range(3)])
    with torch.no_grad():
        logits = capped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.abs().max() < 0.6  # small enough that the cap is invisible in them (30 tanh(x / 30) ~ x)
    for student, teacher, role in ((capped, plain, "student"), (plain, capped, "teacher")):
        refused = rf"runs the {role}'s output head itself, but the {role} \(Gemma2ForCausalLM\) .* \(final_logit_s"
        refused += r"oftcapping=30.0\)"
        with pytest.raises(ValueError, match=refused):
            trainer_for(tmp_path / role, copy.deepcopy(student), teacher, data, alpha_kd=1.0, alpha_task=0.0,
                        token_kd_chunk_size=4)  # fmt: skip
    # unchunked, the model's own code applies the cap: accepted
    trainer = trainer_for(tmp_path / "gathered", copy.deepcopy(plain), capped, data, alpha_kd=1.0, alpha_task=0.0)
    reference = _float64_token_kd(copy.deepcopy(plain), copy.deepcopy(capped), batch, 2.0, causal=True)
    assert trainer.compute_loss(trainer.model, dict(batch)).item() == pytest.approx(reference, rel=1e-10)


def _granite_lm(seed: int, logits_scaling: float):
    from transformers import GraniteConfig, GraniteForCausalLM

    torch.manual_seed(seed)
    config = GraniteConfig(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                           logits_scaling=logits_scaling)  # fmt: skip
    return GraniteForCausalLM(config).double()


def test_a_logit_scale_of_one_is_chunked_exactly_and_any_other_is_refused(tmp_path):
    data = mlm_rows(3, seed=5)
    batch = tiny.collate([data[i] for i in range(3)])
    teacher, student = _granite_lm(0, 1.0), _granite_lm(1, 1.0)
    reference = _float64_token_kd(copy.deepcopy(student), copy.deepcopy(teacher), batch, 2.0, causal=True)
    trainer = trainer_for(tmp_path / "one", copy.deepcopy(student), teacher, data, alpha_kd=1.0, alpha_task=0.0,
                          token_kd_chunk_size=4)  # fmt: skip
    assert trainer.compute_loss(trainer.model, dict(batch)).item() == pytest.approx(reference, rel=1e-10)
    with pytest.raises(ValueError, match=r"the teacher \(GraniteForCausalLM\) .* \(logits_scaling=4.0\)"):
        trainer_for(tmp_path / "four", copy.deepcopy(student), _granite_lm(0, 4.0), data, alpha_kd=1.0,
                    alpha_task=0.0, token_kd_chunk_size=4)  # fmt: skip


def test_a_model_whose_text_config_soft_caps_its_logits_is_refused_chunked(tmp_path):
    # Gemma 3's multimodal model keeps final_logit_softcapping in its text_config only, and applies it after its head:
    # a check of the top-level config let the chunked loss skip the cap
    torch.manual_seed(0)
    config = transformers.Gemma3Config(
        text_config=dict(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                         final_logit_softcapping=30.0),
        vision_config=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
    )  # fmt: skip
    multimodal = transformers.Gemma3ForConditionalGeneration(config)
    assert getattr(config, "final_logit_softcapping", None) is None
    data = mlm_rows(3, seed=5)
    plain = _granite_lm(1, 1.0)
    for student, teacher, role in ((multimodal, plain, "student"), (plain, multimodal, "teacher")):
        refused = rf"the {role} \(Gemma3ForConditionalGeneration\) .* \(final_logit_softcapping=30.0\)"
        with pytest.raises(ValueError, match=refused):
            trainer_for(tmp_path / role, student, teacher, data, alpha_kd=1.0, alpha_task=0.0, token_kd_chunk_size=4)


def _lm_of(kind: str, seed: int = 0):
    """Tiny causal LMs whose configs carry a logit-transform name: applied after the head (RecurrentGemma's
    logits_soft_cap, xLSTM's output_logit_soft_cap) or not (MiniCPM3's logits_scaling is a property it divides the
    hidden states by before the head; transformers' MPT never reads its logit_scale)."""
    torch.manual_seed(seed)
    if kind == "recurrent_gemma":
        config = transformers.RecurrentGemmaConfig(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, intermediate_size=48,
                                                   num_hidden_layers=2, num_attention_heads=4, lru_width=32,
                                                   attention_window_size=16,
                                                   block_types=["recurrent", "attention"])  # fmt: skip
        return transformers.RecurrentGemmaForCausalLM(config)
    if kind == "xlstm":
        config = transformers.xLSTMConfig(vocab_size=tiny.VOCAB_SIZE, hidden_size=64, num_blocks=1, num_heads=4,
                                          qk_dim_factor=1.0, autocast_kernel_dtype="float32")  # fmt: skip
        return transformers.xLSTMForCausalLM(config)
    if kind == "minicpm3":
        config = transformers.MiniCPM3Config(vocab_size=tiny.VOCAB_SIZE, hidden_size=64, intermediate_size=48,
                                             num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
                                             q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8,
                                             v_head_dim=8, dim_model_base=16)  # fmt: skip
        return transformers.MiniCPM3ForCausalLM(config)
    config = transformers.MptConfig(vocab_size=tiny.VOCAB_SIZE, d_model=32, n_heads=4, n_layers=1, max_seq_len=64,
                                    logit_scale=0.5)  # fmt: skip
    return transformers.MptForCausalLM(config)


@pytest.mark.parametrize(
    "kind, refused",
    [("recurrent_gemma", "logits_soft_cap=30.0"), ("xlstm", "output_logit_soft_cap=30.0"), ("minicpm3", None),
     ("mpt", None)],
)  # fmt: skip
def test_a_config_name_is_refused_chunked_only_where_the_model_applies_it_after_its_head(tmp_path, kind, refused):
    # RecurrentGemma and xLSTM soft-cap under other names than Gemma 2's and were let through while their logits were
    # small; MiniCPM3 (logits_scaling 4.0 here) and MPT (logit_scale 0.5) give their head's output as their logits, and
    # were refused
    model = _lm_of(kind).double().eval()
    head = model.get_output_embeddings()
    captured = {}
    handle = head.register_forward_hook(lambda module, args, out: captured.setdefault("head", out))
    with torch.no_grad():
        logits = model(input_ids=torch.randint(0, tiny.VOCAB_SIZE, (1, 8))).logits
    handle.remove()
    applied = not torch.equal(logits, captured["head"])
    assert applied == (refused is not None)  # the config tells the truth about the forward
    data = mlm_rows(3, seed=5)
    teacher = _lm_of(kind, seed=1).double()
    if refused is not None:
        for student, teacher_ in ((model, teacher), (_granite_lm(2, 1.0), teacher)):  # as student, as teacher
            with pytest.raises(ValueError, match=rf"transforms its logits after that head \({refused}\)"):
                trainer_for(tmp_path, student, teacher_, data, alpha_kd=1.0, alpha_task=0.0, token_kd_chunk_size=4)
        return
    batch = tiny.collate([data[i] for i in range(3)])
    losses = []
    for chunk in (None, 4):  # accepted, and the chunked loss is the model's own
        student = copy.deepcopy(model).train()
        trainer = trainer_for(tmp_path / str(chunk), student, teacher, data, alpha_kd=1.0, alpha_task=0.0,
                              token_kd_chunk_size=chunk)  # fmt: skip
        losses.append(trainer.compute_loss(student, dict(batch)).item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-10) and losses[0] > 0


def test_a_soft_capped_teacher_is_not_refused_chunked_when_its_outputs_are_cached(tmp_path):
    # with the cache nothing runs a head in chunks (the cache holds the teacher's own capped logits, the student runs
    # its whole head): the soft-cap refusal said the chunked loss would skip a cap it never skips. The chunk size is
    # refused with the cache by the arguments, for what it is (it would bound nothing), before any model is read.
    data = mlm_rows(4, seed=5)
    capped = _softcapped_lm(0, cap=30.0, std=None)
    trainer = trainer_for(tmp_path / "cached", _granite_lm(1, 1.0), capped, data, alpha_kd=1.0, alpha_task=0.0,
                          cache_teacher_logits=True, per_device_train_batch_size=4)  # fmt: skip
    trainer.train()
    assert trainer.state.log_history[0]["loss"] > 0
    refusal = r"^token_kd_chunk_size=4 chunks the heads of an online teacher and its student, but cache_teacher_logits"
    with pytest.raises(ValueError, match=refusal):
        trainer_for(tmp_path / "chunked", _granite_lm(1, 1.0), capped, data, alpha_kd=1.0, alpha_task=0.0,
                    cache_teacher_logits=True, token_kd_chunk_size=4)  # fmt: skip


class _ScaledLogitsLM(transformers.BertForMaskedLM):
    """A masked LM that scales its logits by `factor` in its own code, with nothing in its config to say so."""

    factor = 2.0

    def forward(self, *args, **kwargs):
        outputs = super().forward(*args, **kwargs)
        outputs.logits = outputs.logits * self.factor
        return outputs


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_a_transform_the_config_does_not_name_is_refused_at_the_first_step(tmp_path, role):
    plain = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    scaled = _ScaledLogitsLM(tiny.masked_lm(layers=1, seed=1).config)
    student, teacher = (scaled, plain) if role == "student" else (plain, scaled)
    data = mlm_rows(3, seed=5)
    trainer = trainer_for(tmp_path, student, teacher, data, token_kd_chunk_size=4)  # no config says so: built
    refused = rf"runs the {role}.s output head .* not that head.s output: they differ by up to [0-9.]+ .* Unset"
    with pytest.raises(ValueError, match=refused):
        trainer.compute_loss(student, dict(tiny.collate([data[i] for i in range(3)])))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_logits_one_percent_off_the_heads_output_are_refused_in_float32_and_float64(tmp_path, dtype):
    # the same rows through the same head agree to rounding (1e-4 of the logits' scale in float32 and float64); a 1%
    # change is far above that, though inside the 3e-2 of the logits' scale allowed for half precision's rounding
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5).to(dtype)
    student = _ScaledLogitsLM(tiny.masked_lm(layers=1, seed=1, initializer_range=0.5).config).to(dtype)
    student.factor = 1.01
    data = mlm_rows(3, seed=5)
    trainer = trainer_for(tmp_path, student, teacher, data, token_kd_chunk_size=4)
    with pytest.raises(ValueError, match=r"runs the student.s output head .* they differ by up to [0-9.]+ "):
        trainer.compute_loss(student, dict(tiny.collate([data[i] for i in range(3)])))


def _deberta_v2_lm(layers: int, seed: int):
    """A tiny DeBERTa-v2 masked LM with legacy=False: its get_output_embeddings() is a hidden-to-hidden dense layer,
    the vocabulary projection happening after it in the model's own code."""
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM

    torch.manual_seed(seed)
    config = DebertaV2Config(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, num_hidden_layers=layers,
                             num_attention_heads=4, intermediate_size=48, max_position_embeddings=64,
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, legacy=False,
                             initializer_range=0.5)  # fmt: skip
    return DebertaV2ForMaskedLM(config).double()


def test_a_head_whose_output_is_not_the_logits_shape_is_exact_gathered_and_refused_chunked(tmp_path):
    teacher, student = _deberta_v2_lm(2, 0), _deberta_v2_lm(1, 1)
    assert student.get_output_embeddings().out_features == 32 != tiny.VOCAB_SIZE
    data = mlm_rows(4, seed=5)
    batch = tiny.collate([data[i] for i in range(4)])
    reference = _float64_token_kd(copy.deepcopy(student), copy.deepcopy(teacher), batch, 2.0)
    copy_ = copy.deepcopy(student).train()
    trainer = trainer_for(tmp_path / "gathered", copy_, teacher, data, alpha_kd=1.0, alpha_task=0.0)
    assert trainer.compute_loss(copy_, dict(batch)).item() == pytest.approx(reference, rel=1e-10)
    trainer = trainer_for(tmp_path / "chunked", copy_, teacher, data, token_kd_chunk_size=4)
    refused = rf"student.s output head \(Linear\) .* have shape \(1, {tiny.VOCAB_SIZE}\), the head.s output \(1, 32\)"
    with pytest.raises(ValueError, match=refused):
        trainer.compute_loss(copy_, dict(batch))


def _mobilebert_lm(seed: int):
    """A tiny MobileBERT masked LM: it computes its logits from its decoder's weight without calling the decoder
    module that get_output_embeddings() returns."""
    from transformers import MobileBertConfig, MobileBertForMaskedLM

    torch.manual_seed(seed)
    config = MobileBertConfig(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, embedding_size=32, intra_bottleneck_size=32,
                              true_hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=48,
                              num_feedforward_networks=1, max_position_embeddings=64, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)  # fmt: skip
    return MobileBertForMaskedLM(config).double()


def test_a_model_that_never_calls_its_head_module_is_gathered_from_its_full_logits(tmp_path):
    # MobileBERT's hook never fired, so the student's (B, L, V) logits met the teacher's (N, V) ones: the default
    # token_kd_gather_positions=True failed at the first step with "must have the same head and output size"
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5).double()
    for student, role in ((_mobilebert_lm(1), "student"), (tiny.masked_lm(layers=1, seed=1).double(), None)):
        pair = {"student": student, "teacher": teacher}
        if role is None:  # a MobileBERT teacher, a BERT student
            pair = {"student": student, "teacher": _mobilebert_lm(2)}
        data = mlm_rows(4, seed=5)
        batch = tiny.collate([data[i] for i in range(4)])
        reference = _float64_token_kd(copy.deepcopy(pair["student"]), copy.deepcopy(pair["teacher"]), batch, 2.0)
        copy_ = copy.deepcopy(pair["student"]).train()
        trainer = trainer_for(tmp_path / str(role), copy_, pair["teacher"], data, alpha_kd=1.0, alpha_task=0.0)
        assert trainer.compute_loss(copy_, dict(batch)).item() == pytest.approx(reference, rel=1e-10)
        trainer = trainer_for(tmp_path / f"{role}-chunked", copy_, pair["teacher"], data, token_kd_chunk_size=4)
        with pytest.raises(ValueError, match=r"token_kd_chunk_size runs the (student|teacher)'s output head .* never "
                                             r"calls that module .* unset token_kd_chunk_size"):  # fmt: skip
            trainer.compute_loss(copy_, dict(batch))


def test_the_chunked_heads_are_checked_once_not_every_step(tmp_path):
    # whether a model transforms its logits after its head is a property of the model: the check (a head call and a
    # host sync) ran every step, on the hot path
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    student = tiny.masked_lm(layers=1, seed=1, initializer_range=0.5).train()
    data = mlm_rows(6)
    batch = tiny.collate([data[i] for i in range(6)])
    shapes = []
    student.get_output_embeddings().register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    trainer = trainer_for(tmp_path, student, teacher, data, token_kd_chunk_size=4)
    counted = int(batch["labels"].ne(-100).sum())
    for step in range(2):
        shapes.clear()
        trainer.compute_loss(student, dict(batch))
        probes = [(1, tiny.VOCAB_SIZE)] * 2 if step == 0 else [(0, tiny.VOCAB_SIZE)]  # forward (+ the check)
        assert shapes[: len(probes)] == probes
        assert sum(shape[0] for shape in shapes[len(probes) :]) == counted  # then the chunks
    assert trainer._counted_positions.checked == {
        id(student.get_output_embeddings()),
        id(teacher.get_output_embeddings()),
    }
