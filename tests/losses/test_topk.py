"""The top-k token KL (the token-level cache's loss) against a float64 reference written from its formula."""

from __future__ import annotations

import pytest
import torch
from references import reference_topk_loss

from hf_distill import losses

# ---- the top-k KL against a reference written from its formula ---------------------------------------------------


def teacher_topk(teacher_logits: torch.Tensor, k: int, temperature: float):
    return torch.log_softmax(teacher_logits / temperature, dim=-1).topk(k, dim=-1)


@pytest.mark.parametrize(("temperature", "k"), [(1.0, 3), (2.0, 5), (4.0, 1), (2.0, 10)])
def test_topk_kl_matches_float64_reference(temperature, k):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(3, 5, 11, generator=generator, dtype=torch.float64) * 2
    teacher = torch.randn(3, 5, 11, generator=generator, dtype=torch.float64) * 3
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]])
    values, indices = teacher_topk(teacher, k, temperature)
    loss = losses.token_topk_kl_divergence(
        student_logits=student,
        teacher_topk_log_probs=values,
        teacher_topk_indices=indices.int(),
        mask=mask,
        temperature=temperature,
    )
    expected = reference_topk_loss(student, values, indices, mask, temperature)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # float32 inputs: float32 arithmetic, ~1e-6
    loss32 = losses.token_topk_kl_divergence(
        student_logits=student.float(),
        teacher_topk_log_probs=values.float(),
        teacher_topk_indices=indices,
        mask=mask,
        temperature=temperature,
    )
    assert loss32.dtype == torch.float32 and loss32.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # a lower bound of the full KL, with equality only when S is the whole vocabulary
    full = losses.token_kl_divergence(
        student_logits=student, teacher_logits=teacher, mask=mask, temperature=temperature
    )
    assert loss.item() <= full.item() + 1e-12


def test_topk_kl_with_the_whole_vocabulary_is_the_exact_kl():
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(2, 4, 7, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 4, 7, generator=generator, dtype=torch.float64) * 4
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]])
    values, indices = teacher_topk(teacher, 7, 2.0)
    topk = losses.token_topk_kl_divergence(
        student_logits=student, teacher_topk_log_probs=values, teacher_topk_indices=indices, mask=mask, temperature=2.0
    )
    full = losses.token_kl_divergence(student_logits=student, teacher_logits=teacher, mask=mask, temperature=2.0)
    assert topk.item() == pytest.approx(full.item(), rel=1e-12)


def test_topk_kl_gradcheck_and_degenerate_cases_stay_finite():
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    for k in (2, 6):
        values, indices = teacher_topk(teacher, k, 3.0)
        assert torch.autograd.gradcheck(
            lambda s, values=values, indices=indices: losses.token_topk_kl_divergence(
                student_logits=s,
                teacher_topk_log_probs=values,
                teacher_topk_indices=indices,
                mask=mask,
                temperature=3.0,
            ),
            (student,),
        )
    # A one-hot teacher (rest mass exactly 0) and a student with no mass outside S: finite value and gradient.
    one_hot = torch.full((1, 1, 4), -1e4)
    one_hot[..., 0] = 1e4
    values, indices = teacher_topk(one_hot, 2, 1.0)
    peaked_student = torch.tensor([[[50.0, 40.0, -1e4, -1e4]]], requires_grad=True)
    value = losses.token_topk_kl_divergence(
        student_logits=peaked_student,
        teacher_topk_log_probs=values,
        teacher_topk_indices=indices,
        mask=None,
        temperature=1.0,
    )
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(peaked_student.grad).all()
    # float32 resolves logits near 50 to ~4e-6: the absolute error of any float32 log-softmax there
    assert value.item() == pytest.approx(
        reference_topk_loss(peaked_student.detach().double(), values, indices, torch.ones(1, 1), 1.0), abs=1e-5
    )
    # nothing counted: 0, not NaN
    nothing = losses.token_topk_kl_divergence(
        student_logits=student,
        teacher_topk_log_probs=values.new_zeros(2, 3, 2),
        teacher_topk_indices=torch.zeros(2, 3, 2, dtype=torch.long),
        mask=torch.zeros(2, 3),
        temperature=2.0,
    )
    assert nothing.item() == 0.0


def test_topk_kl_of_a_float32_student_confident_on_the_kept_set_matches_float64_with_a_finite_gradient():
    # the student's mass outside S is 3 e^-20 (~6e-9): 1 - sum(q_S) rounds to 0 in float32 (not yet in the float64
    # reference), so a rest mass taken as log1p(-sum q_S) is log 0 = -inf, against a teacher that puts ~5%
    # (6 / (2 e^4 + 6)) outside S
    student = torch.full((1, 1, 8), -20.0)
    student[..., :2] = 0.0
    teacher = torch.zeros(1, 1, 8)
    teacher[..., :2] = 4.0
    values, indices = teacher_topk(teacher, 2, 1.0)
    assert 1 - values.exp().sum().item() == pytest.approx(0.052, abs=1e-3)
    student.requires_grad_(True)
    value = losses.token_topk_kl_divergence(
        student_logits=student, teacher_topk_log_probs=values, teacher_topk_indices=indices, mask=None, temperature=1.0
    )
    value.backward()
    expected = reference_topk_loss(student.detach().double(), values.double(), indices, torch.ones(1, 1), 1.0)
    assert value.item() == pytest.approx(expected, abs=1e-5)
    assert torch.isfinite(student.grad).all()


def test_topk_kl_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="k <= V"):
        losses.token_topk_kl_divergence(
            student_logits=torch.randn(2, 3, 4),
            teacher_topk_log_probs=torch.randn(2, 3, 5),
            teacher_topk_indices=torch.zeros(2, 3, 5, dtype=torch.long),
            mask=None,
            temperature=1.0,
        )


def test_topk_kl_ignores_non_finite_values_and_any_index_at_uncounted_positions_in_its_gradient_too():
    generator = torch.Generator().manual_seed(62)
    student = torch.randn(2, 3, 7, generator=generator)
    top_log_probs, top_indices = torch.randn(2, 3, 7, generator=generator).log_softmax(-1).topk(3, dim=-1)
    mask = torch.tensor([[1, 0, 1], [1, 1, 0]])
    clean = student.clone().requires_grad_(True)
    kwargs = dict(mask=mask, temperature=2.0)
    expected = losses.token_topk_kl_divergence(student_logits=clean, teacher_topk_log_probs=top_log_probs,
                                               teacher_topk_indices=top_indices, **kwargs)  # fmt: skip
    expected.backward()
    for bad in (float("nan"), float("inf"), float("-inf")):
        dirty, log_probs, indices = student.clone(), top_log_probs.clone(), top_indices.clone()
        dirty[0, 1], log_probs[0, 1], log_probs[1, 2] = bad, bad, bad
        indices[1, 2] = torch.tensor([4, 4, 4])  # repeated: what no real top-k holds
        dirty.requires_grad_(True)
        got = losses.token_topk_kl_divergence(student_logits=dirty, teacher_topk_log_probs=log_probs,
                                              teacher_topk_indices=indices, **kwargs)  # fmt: skip
        got.backward()
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)
        torch.testing.assert_close(dirty.grad, clean.grad)
