"""The former home of `build_student`, kept so that `from hf_distill.student import build_student` still works.

New code: `from hf_distill import build_student` or `from hf_distill.students import build_student`.
"""

from .students import build_bert_student, build_distilbert_student, build_student, select_layers, validate_layers

__all__ = ["build_bert_student", "build_distilbert_student", "build_student", "select_layers", "validate_layers"]
