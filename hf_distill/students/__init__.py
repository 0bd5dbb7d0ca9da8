"""Building a student from a teacher.

- `build.py`: `build_student` (the entry point), `build_bert_student` and `check_buildable` (its refusals, building
  nothing);
- `layers.py`: which teacher layers a student starts from;
- `distilbert.py`: the BERT -> DistilBERT weight mapping.
"""

from .build import build_bert_student, build_student, check_buildable
from .distilbert import build_distilbert_student
from .layers import select_layers, validate_layers

__all__ = [
    "build_bert_student",
    "build_distilbert_student",
    "build_student",
    "check_buildable",
    "select_layers",
    "validate_layers",
]
