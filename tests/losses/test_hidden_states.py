"""Hidden-state losses against float64 references written from their formulas."""

from __future__ import annotations

import pytest
import torch
from references import reference_cosine_loss, reference_hidden_mse

from hf_distill import losses

# ---- hidden-state cosine (DistilBERT's L_cos) ------------------------------------------------------------------


def test_hidden_state_cosine_matches_float64_and_float32_references():
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)
    teacher = torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    expected = reference_cosine_loss(student, teacher, mask)
    got = losses.hidden_state_cosine(student_hidden=student, teacher_hidden=teacher, mask=mask)
    assert got.dtype == torch.float64 and got.item() == pytest.approx(expected, abs=1e-10)
    got32 = losses.hidden_state_cosine(student_hidden=student.float(), teacher_hidden=teacher.float(), mask=mask)
    assert got32.dtype == torch.float32 and got32.item() == pytest.approx(expected, abs=1e-6)
    summed = losses.hidden_state_cosine(student_hidden=student, teacher_hidden=teacher, mask=mask, reduction="sum")
    assert summed.item() == pytest.approx(expected * 9, abs=1e-9)  # 9 counted positions
    # padding never counts: garbage at masked positions changes nothing
    noisy = student.clone()
    noisy[0, 3:] = 1e6
    assert losses.hidden_state_cosine(student_hidden=noisy, teacher_hidden=teacher, mask=mask).item() == pytest.approx(
        expected, abs=1e-10
    )


def test_hidden_state_cosine_ignores_scale_and_is_zero_for_parallel_states():
    teacher = torch.randn(2, 4, 6, dtype=torch.float64)
    assert losses.hidden_state_cosine(student_hidden=3 * teacher, teacher_hidden=teacher).item() == pytest.approx(
        0, abs=1e-12
    )
    assert losses.hidden_state_cosine(student_hidden=-teacher, teacher_hidden=teacher).item() == pytest.approx(2)
    nothing = torch.zeros(2, 4)
    empty = losses.hidden_state_cosine(student_hidden=teacher, teacher_hidden=-teacher, mask=nothing)
    assert empty.item() == 0.0


def test_an_all_zero_student_state_has_cosine_distance_one_with_a_finite_gradient():
    generator = torch.Generator().manual_seed(4)
    teacher = torch.randn(1, 3, 4, generator=generator, dtype=torch.float64)
    student = torch.randn(1, 3, 4, generator=generator, dtype=torch.float64)
    student[0, 1] = 0.0  # counted (no mask): its norm product is 0, bounded below by eps, so cos 0
    others = reference_cosine_loss(student, teacher, torch.tensor([[1, 0, 1]]))  # the mean of the 2 others
    student.requires_grad_(True)
    value = losses.hidden_state_cosine(student_hidden=student, teacher_hidden=teacher)
    assert value.item() == pytest.approx((1 + 2 * others) / 3, rel=1e-12)
    value.backward()
    assert torch.isfinite(student.grad).all()


def test_hidden_state_cosine_gradcheck_and_refusals():
    student = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(
        lambda s: losses.hidden_state_cosine(student_hidden=s, teacher_hidden=teacher, mask=mask), (student,)
    )
    with pytest.raises(ValueError, match="hidden size 4 differs from the teacher's 5"):
        losses.hidden_state_cosine(student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="same shape"):
        losses.hidden_state_cosine(student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, L, D\)"):
        losses.hidden_state_cosine(student_hidden=torch.randn(2, 4), teacher_hidden=torch.randn(2, 4))


# ---- hidden-state MSE (TinyBERT's hidden-state loss) -----------------------------------------------------------

MSE_MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])  # 9 counted positions


def test_hidden_state_mse_matches_float64_and_float32_references():
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)
    teacher = torch.randn(3, 5, 8, generator=generator, dtype=torch.float64)
    expected = reference_hidden_mse(student, teacher, MSE_MASK)
    got = losses.hidden_state_mse(student_hidden=student, teacher_hidden=teacher, mask=MSE_MASK)
    assert got.dtype == torch.float64 and got.item() == pytest.approx(expected, abs=1e-10)
    got32 = losses.hidden_state_mse(student_hidden=student.float(), teacher_hidden=teacher.float(), mask=MSE_MASK)
    assert got32.dtype == torch.float32 and got32.item() == pytest.approx(expected, abs=1e-6)
    summed = losses.hidden_state_mse(student_hidden=student, teacher_hidden=teacher, mask=MSE_MASK, reduction="sum")
    assert summed.item() == pytest.approx(expected * 9, abs=1e-9)
    # no mask: every position counts, and the mean is F.mse_loss over every element
    unmasked = losses.hidden_state_mse(student_hidden=student, teacher_hidden=teacher)
    assert unmasked.item() == pytest.approx(reference_hidden_mse(student, teacher, None), abs=1e-10)
    assert unmasked.item() == pytest.approx(torch.nn.functional.mse_loss(student, teacher).item(), abs=1e-12)
    assert losses.hidden_state_mse(student_hidden=teacher, teacher_hidden=teacher).item() == 0.0


def test_hidden_state_mse_ignores_padding_and_is_zero_with_nothing_counted():
    generator = torch.Generator().manual_seed(6)
    student = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)
    teacher = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)
    expected = losses.hidden_state_mse(student_hidden=student, teacher_hidden=teacher, mask=MSE_MASK).item()
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    noisy_student[0, 3:], noisy_teacher[2, 1:] = 1e6, -1e6
    noisy = losses.hidden_state_mse(student_hidden=noisy_student, teacher_hidden=noisy_teacher, mask=MSE_MASK)
    assert noisy.item() == pytest.approx(expected, abs=1e-10)
    leaf = student.clone().requires_grad_(True)
    for reduction in ("mean", "sum"):
        empty = losses.hidden_state_mse(
            student_hidden=leaf, teacher_hidden=teacher, mask=torch.zeros(3, 5), reduction=reduction
        )
        assert empty.item() == 0.0
        (gradient,) = torch.autograd.grad(empty, leaf)
        assert torch.isfinite(gradient).all() and (gradient == 0).all()


def test_hidden_state_mse_gradcheck_and_half_precision():
    student = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(
        lambda s, t: losses.hidden_state_mse(student_hidden=s, teacher_hidden=t, mask=mask), (student, teacher)
    )
    generator = torch.Generator().manual_seed(7)
    student32 = torch.randn(3, 5, 8, generator=generator)
    teacher32 = torch.randn(3, 5, 8, generator=generator)
    full = losses.hidden_state_mse(student_hidden=student32, teacher_hidden=teacher32, mask=MSE_MASK).item()
    for dtype in (torch.float16, torch.bfloat16):
        s, t = student32.to(dtype), teacher32.to(dtype)
        got = losses.hidden_state_mse(student_hidden=s, teacher_hidden=t, mask=MSE_MASK)
        assert got.dtype == torch.float32
        rounded = losses.hidden_state_mse(student_hidden=s.float(), teacher_hidden=t.float(), mask=MSE_MASK)
        assert got.item() == pytest.approx(rounded.item(), abs=1e-6)
        assert got.item() == pytest.approx(full, rel=1e-2)


def test_hidden_state_mse_refusals():
    with pytest.raises(ValueError, match=r"hidden size 4 differs.*project.*nn\.Linear\(4, 6\)"):
        losses.hidden_state_mse(student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="same shape"):
        losses.hidden_state_mse(student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"\(B, L, D\)"):
        losses.hidden_state_mse(student_hidden=torch.randn(2, 4), teacher_hidden=torch.randn(2, 4))
    with pytest.raises(ValueError, match="mask must have shape"):
        losses.hidden_state_mse(
            student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 3, 4), mask=torch.ones(2, 4)
        )
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'batchmean'"):
        losses.hidden_state_mse(
            student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 3, 4), reduction="batchmean"
        )
