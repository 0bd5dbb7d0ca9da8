"""The teacher-output cache: run the teacher once before training, read its outputs back every epoch.

- `store.py`: building, storing and loading the cache (Arrow columns beside each example);
- `fingerprint.py`: the cache's folder name, a hash of everything its outputs depend on;
- `collator.py`: reading the stored outputs back into batches;
- `trainer_mixin.py`: the trainer's side: load or build the cache, attach it to the training set.
"""

from . import store
from .collator import TeacherCacheCollator
from .fingerprint import cache_fingerprint, fingerprint_model, fingerprint_rows
from .store import *  # noqa: F403  (the store's public names: columns, TeacherCache, build and load)

__all__ = [*store.__all__, "TeacherCacheCollator", "cache_fingerprint", "fingerprint_model", "fingerprint_rows"]
