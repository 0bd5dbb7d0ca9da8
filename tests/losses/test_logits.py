"""Every loss against an independent float64 reference written from the formula (plain Python math, no torch)."""

from __future__ import annotations

import re

import pytest
import torch
from references import reference_class_loss, reference_token_loss

from hf_distill import losses


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 10.0])
def test_class_kl_matches_float64_reference(temperature):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 3
    teacher = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 3
    value = losses.class_kl_divergence(student_logits=student, teacher_logits=teacher, temperature=temperature)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(reference_class_loss(student, teacher, temperature), rel=1e-10, abs=1e-12)
    total = losses.class_kl_divergence(
        student_logits=student, teacher_logits=teacher, temperature=temperature, reduction="sum"
    )
    assert total.item() == pytest.approx(6 * value.item(), rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_class_kl_float32_matches_reference(temperature):
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(16, 10, generator=generator)
    teacher = torch.randn(16, 10, generator=generator)
    value = losses.class_kl_divergence(student_logits=student, teacher_logits=teacher, temperature=temperature)
    assert value.dtype == torch.float32
    expected = reference_class_loss(student.double(), teacher.double(), temperature)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_class_kl_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(4, 3)
    same = losses.class_kl_divergence(student_logits=logits, teacher_logits=logits.clone(), temperature=2.0)
    assert same.item() == pytest.approx(0.0, abs=1e-7)
    other = losses.class_kl_divergence(student_logits=logits, teacher_logits=logits.flip(-1), temperature=2.0)
    assert other.item() > 1e-3


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_class_kl_gradient_is_temperature_times_q_minus_p(temperature):
    # d/ds_i [T**2 * KL(p || q)] = T**2 * (q_i - p_i) / T = T * (q_i - p_i); the batch mean divides by B.
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    losses.class_kl_divergence(student_logits=student, teacher_logits=teacher, temperature=temperature).backward()
    p = torch.softmax(teacher / temperature, dim=-1)
    q = torch.softmax(student.detach() / temperature, dim=-1)
    expected = temperature * (q - p) / student.shape[0]
    torch.testing.assert_close(student.grad, expected, rtol=1e-10, atol=1e-12)


def test_temperature_squared_keeps_gradient_magnitude_stable():
    # Without T**2 the gradient norm falls like 1/T**2; with it, it settles (Hinton et al., 2015, sec. 2).
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(64, 10, generator=generator, dtype=torch.float64)
    teacher = torch.randn(64, 10, generator=generator, dtype=torch.float64)
    norms = {}
    for temperature in (4.0, 8.0, 16.0):
        logits = student.clone().requires_grad_(True)
        losses.class_kl_divergence(student_logits=logits, teacher_logits=teacher, temperature=temperature).backward()
        norms[temperature] = logits.grad.norm().item()
    assert norms[16.0] / norms[4.0] == pytest.approx(1.0, abs=0.1)
    # The unscaled KL's gradient would shrink 16x between T=4 and T=16.
    assert norms[16.0] / 16.0**2 < 0.1 * norms[4.0] / 4.0**2


def test_gradcheck_class_token_and_regression():
    generator = torch.Generator().manual_seed(4)
    student = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda s: losses.class_kl_divergence(student_logits=s, teacher_logits=teacher, temperature=2.0), (student,)
    )
    tokens = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    token_teacher = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(
        lambda s: losses.token_kl_divergence(
            student_logits=s, teacher_logits=token_teacher, mask=mask, temperature=3.0
        ),
        (tokens,),
    )
    predictions = torch.randn(5, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(5, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda s: losses.regression_mse(student_predictions=s, teacher_predictions=targets), (predictions,)
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_token_kl_matches_reference_over_counted_positions(temperature):
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(3, 6, 11, generator=generator, dtype=torch.float64)
    teacher = torch.randn(3, 6, 11, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1]])
    value = losses.token_kl_divergence(
        student_logits=student, teacher_logits=teacher, mask=mask, temperature=temperature
    )
    assert value.item() == pytest.approx(reference_token_loss(student, teacher, mask, temperature), rel=1e-10)
    unmasked = losses.token_kl_divergence(
        student_logits=student, teacher_logits=teacher, mask=None, temperature=temperature
    )
    assert unmasked.item() == pytest.approx(
        reference_token_loss(student, teacher, torch.ones_like(mask), temperature), rel=1e-10
    )


def test_token_kl_softmaxes_the_last_dimension_not_the_sequence():
    # Mistake 2: softmax over dim=1 of (B, L, V) normalises over positions. A student equal to the teacher up to a
    # per-position shift has identical per-position distributions, so the right loss is 0 and the wrong one is not.
    teacher = torch.randn(2, 5, 7, dtype=torch.float64)
    student = teacher + torch.randn(2, 5, 1, dtype=torch.float64) * 3
    value = losses.token_kl_divergence(student_logits=student, teacher_logits=teacher, mask=None, temperature=2.0)
    assert value.item() == pytest.approx(0.0, abs=1e-12)


def test_token_kl_ignores_padding_and_does_not_scale_with_length():
    # Mistake 1: batchmean on (B, L, V) sums every position (padding included) and divides by B only.
    generator = torch.Generator().manual_seed(6)
    student = torch.randn(2, 4, 9, generator=generator)
    teacher = torch.randn(2, 4, 9, generator=generator)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    value = losses.token_kl_divergence(student_logits=student, teacher_logits=teacher, mask=mask, temperature=2.0)
    garbage = student.clone()
    garbage[mask == 0] = 1e4  # whatever sits at padded positions must not matter
    padded = torch.cat([garbage, torch.randn(2, 20, 9)], dim=1)
    padded_teacher = torch.cat([teacher, torch.randn(2, 20, 9)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 20, dtype=torch.long)], dim=1)
    longer = losses.token_kl_divergence(
        student_logits=padded, teacher_logits=padded_teacher, mask=padded_mask, temperature=2.0
    )
    assert longer.item() == pytest.approx(value.item(), rel=1e-6)


def test_non_finite_values_at_uncounted_positions_leave_the_loss_and_its_gradient_untouched():
    # where() hid them from the value only: the backward multiplied the zero gradient there by NaN
    generator = torch.Generator().manual_seed(61)
    student = torch.randn(2, 3, 5, generator=generator)
    teacher = torch.randn(2, 3, 5, generator=generator)
    mask = torch.tensor([[1, 0, 1], [1, 1, 0]])
    clean = student.clone().requires_grad_(True)
    expected = losses.token_kl_divergence(student_logits=clean, teacher_logits=teacher, mask=mask, temperature=2.0)
    expected.backward()
    for bad in (float("nan"), float("inf"), float("-inf")):
        dirty_student, dirty_teacher = student.clone(), teacher.clone()
        dirty_student[0, 1], dirty_teacher[0, 1], dirty_teacher[1, 2] = bad, bad, bad
        dirty_student.requires_grad_(True)
        got = losses.token_kl_divergence(
            student_logits=dirty_student, teacher_logits=dirty_teacher, mask=mask, temperature=2.0
        )
        got.backward()
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)
        torch.testing.assert_close(dirty_student.grad, clean.grad)  # 0 at the uncounted positions, never NaN


def test_nothing_counted_gives_zero_not_nan_with_finite_gradient():
    student = torch.randn(2, 3, 5, requires_grad=True)
    teacher = torch.randn(2, 3, 5)
    value = losses.token_kl_divergence(
        student_logits=student, teacher_logits=teacher, mask=torch.zeros(2, 3), temperature=2.0
    )
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() == 0
    # a row with nothing counted contributes nothing: same loss as the other row alone
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]])
    both = losses.token_kl_divergence(student_logits=student, teacher_logits=teacher, mask=mask, temperature=2.0)
    alone = losses.token_kl_divergence(
        student_logits=student[1:], teacher_logits=teacher[1:], mask=mask[1:], temperature=2.0
    )
    assert both.item() == pytest.approx(alone.item(), rel=1e-6)
    empty = losses.class_kl_divergence(
        student_logits=torch.empty(0, 3), teacher_logits=torch.empty(0, 3), temperature=2.0
    )
    assert empty.item() == 0.0


def test_half_precision_and_huge_logits_stay_finite_and_accurate():
    generator = torch.Generator().manual_seed(7)
    student = (torch.randn(8, 6, generator=generator) * 3).half()
    teacher = (torch.randn(8, 6, generator=generator) * 3).half()
    value = losses.class_kl_divergence(student_logits=student, teacher_logits=teacher, temperature=2.0)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference_class_loss(student.double(), teacher.double(), 2.0), rel=1e-5)
    huge_student = torch.tensor([[6.0e4, -6.0e4, 0.0]], dtype=torch.float16)
    huge_teacher = torch.tensor([[-6.0e4, 6.0e4, 0.0]], dtype=torch.float16)
    value = losses.class_kl_divergence(student_logits=huge_student, teacher_logits=huge_teacher, temperature=1.0)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(1.2e5, rel=1e-3)  # KL = t_max - s_at_argmax(t) when both are one-hot
    huge = losses.token_kl_divergence(
        student_logits=(torch.randn(2, 3, 50, generator=generator) * 1e3).bfloat16(),
        teacher_logits=(torch.randn(2, 3, 50, generator=generator) * 1e3).bfloat16(),
        mask=torch.ones(2, 3),
        temperature=2.0,
    )
    assert torch.isfinite(huge)
    student_bf16 = (torch.randn(2, 3, 50, generator=generator) * 10).bfloat16()
    teacher_bf16 = (torch.randn(2, 3, 50, generator=generator) * 10).bfloat16()
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    bf16 = losses.token_kl_divergence(
        student_logits=student_bf16, teacher_logits=teacher_bf16, mask=mask, temperature=2.0
    )
    assert bf16.dtype == torch.float32  # computed in float32 from the bf16 inputs: the float64 value of those inputs
    expected = reference_token_loss(student_bf16.double(), teacher_bf16.double(), mask.double(), 2.0)
    assert bf16.item() == pytest.approx(float(expected), rel=1e-5)


def test_teacher_minus_infinity_logits_do_not_produce_nan():
    teacher = torch.tensor([[0.0, 1.0, -float("inf")]])
    student = torch.tensor([[0.5, 0.2, 0.1]], requires_grad=True)
    value = losses.class_kl_divergence(student_logits=student, teacher_logits=teacher, temperature=1.0)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()
    assert value.item() == pytest.approx(
        reference_class_loss(student.detach(), torch.tensor([[0.0, 1.0, -1e30]]), 1.0)
    )


def test_a_nan_teacher_row_gives_a_nan_loss_not_a_hidden_zero():
    # A NaN teacher logit (an fp16 teacher that overflowed) made its row's KL 0 (the 0 log 0 rule's `p > 0` is False
    # for NaN) while the student's gradient was NaN: the logged loss looked fine as the weights went NaN.
    teacher = torch.tensor([[0.0, 1.0, 2.0], [float("nan"), 1.0, 2.0]])
    for kl, student, teacher_logits in [
        (losses.class_kl_divergence, torch.randn(2, 3), teacher),
        (losses.token_kl_divergence, torch.randn(1, 2, 3), teacher[None]),
    ]:
        student.requires_grad_(True)
        extra = {"mask": None} if kl is losses.token_kl_divergence else {}
        value = kl(student_logits=student, teacher_logits=teacher_logits, temperature=2.0, **extra)
        assert torch.isnan(value), kl.__name__
    log_probs = torch.log_softmax(teacher[None] / 2.0, dim=-1)  # the cache's top-k, a NaN position among them
    topk = losses.token_topk_kl_divergence(
        student_logits=torch.randn(1, 2, 3), teacher_topk_log_probs=log_probs[..., :2],
        teacher_topk_indices=torch.tensor([[[0, 1], [0, 1]]]), mask=None, temperature=2.0,
    )  # fmt: skip
    assert torch.isnan(topk)
    full = losses.token_topk_kl_divergence(
        student_logits=torch.randn(1, 2, 3), teacher_topk_log_probs=log_probs,
        teacher_topk_indices=torch.tensor([[[0, 1, 2], [0, 1, 2]]]), mask=None, temperature=2.0,
    )  # fmt: skip
    assert torch.isnan(full)


def test_regression_mse_matches_reference_and_has_no_temperature():
    student = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    teacher = torch.tensor([1.0, 2.5, 1.0], dtype=torch.float64)
    expected = ((0.5 - 1.0) ** 2 + (2.0 - 2.5) ** 2 + (-1.0 - 1.0) ** 2) / 3
    value = losses.regression_mse(student_predictions=student, teacher_predictions=teacher)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    as_column = losses.regression_mse(student_predictions=student[:, None], teacher_predictions=teacher[:, None])
    assert as_column.item() == pytest.approx(expected, rel=1e-12)
    total = losses.regression_mse(student_predictions=student, teacher_predictions=teacher, reduction="sum")
    assert total.item() == pytest.approx(3 * expected, rel=1e-12)


def test_regression_mse_with_several_outputs_is_f_mse_loss_and_sums_per_example_means():
    # K = 3 outputs per example: each example's squared error is its mean over K (not its sum), so the mean over B
    # examples is F.mse_loss and the sum over them B times that
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    teacher = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    expected = torch.nn.functional.mse_loss(student, teacher).item()
    value = losses.regression_mse(student_predictions=student, teacher_predictions=teacher)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    total = losses.regression_mse(student_predictions=student, teacher_predictions=teacher, reduction="sum")
    assert total.item() == pytest.approx(4 * expected, rel=1e-12)


def test_single_logit_softmax_is_refused():
    # Mistake 3: a softmax over one logit is constant, so a KL-distilled STS-B learns nothing from the teacher.
    with pytest.raises(ValueError, match="C > 1"):
        losses.class_kl_divergence(student_logits=torch.randn(4, 1), teacher_logits=torch.randn(4, 1), temperature=2)
    # the token KL took it and returned 0 (a token classifier with num_labels=1)
    with pytest.raises(ValueError, match="V > 1"):
        losses.token_kl_divergence(student_logits=torch.randn(2, 3, 1), teacher_logits=torch.randn(2, 3, 1), mask=None,
                                   temperature=2)  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: losses.class_kl_divergence(
                student_logits=torch.randn(2, 3), teacher_logits=torch.randn(2, 4), temperature=1.0
            ),
            "same shape",
        ),
        (
            lambda: losses.class_kl_divergence(
                student_logits=torch.randn(2, 3), teacher_logits=torch.randn(2, 3), temperature=0.0
            ),
            r"temperature must be > 0 and finite \(at most 1.84e\+19, whose square float32 holds\), got 0.0",
        ),
        *(
            (
                lambda bad=bad: losses.class_kl_divergence(
                    student_logits=torch.randn(2, 3), teacher_logits=torch.randn(2, 3), temperature=bad
                ),
                rf"temperature must be > 0 and finite \(at most .*\), got {re.escape(repr(bad))}: pass e.g. 1.0",
            )
            for bad in (float("nan"), float("inf"), 2e19)  # 2e19: finite, but its square overflows float32
        ),
        (
            lambda: losses.class_kl_divergence(
                student_logits=torch.randn(2, 3, 4), teacher_logits=torch.randn(2, 3, 4), temperature=1.0
            ),
            "token_kl_divergence",
        ),
        (
            lambda: losses.token_kl_divergence(
                student_logits=torch.randn(2, 3), teacher_logits=torch.randn(2, 3), mask=None, temperature=1.0
            ),
            "class_kl_divergence",
        ),
        (
            lambda: losses.token_kl_divergence(
                student_logits=torch.randn(2, 3, 4),
                teacher_logits=torch.randn(2, 3, 4),
                mask=torch.ones(2, 4),
                temperature=1.0,
            ),
            "mask must have shape",
        ),
        (
            lambda: losses.class_kl_divergence(
                student_logits=torch.randn(2, 3),
                teacher_logits=torch.randn(2, 3),
                temperature=1.0,
                reduction="batchmean",
            ),
            "'mean' or 'sum'",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
