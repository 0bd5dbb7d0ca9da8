"""Hidden-state losses against float64 references written from their formulas."""

from __future__ import annotations

import pytest
import torch
from references import reference_cosine_loss

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


def test_hidden_state_cosine_gradcheck_and_refusals():
    student = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(
        lambda s: losses.hidden_state_cosine(student_hidden=s, teacher_hidden=teacher, mask=mask), (student,)
    )
    with pytest.raises(ValueError, match="same shape"):
        losses.hidden_state_cosine(student_hidden=torch.randn(2, 3, 4), teacher_hidden=torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"\(B, L, D\)"):
        losses.hidden_state_cosine(student_hidden=torch.randn(2, 4), teacher_hidden=torch.randn(2, 4))
