"""`DistillationTrainer`'s student: checked against the teacher when given or built by `model_init` (each
hyperparameter-search trial), its hidden-state projection attached, and saved without it."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .arguments import DistillationTrainingArguments, distillation_settings
from .compatibility import (
    check_chunkable_heads,
    check_distillable,
    check_hidden_sizes,
    check_hooks_under_data_parallel,
    check_intermediate,
    check_task_term,
)
from .intermediate import PROJECTION_NAME, attach_projection
from .loss_terms import active_terms
from .model_inputs import unwrap

logger = logging.getLogger(__name__)

__all__ = ["StudentSetupMixin"]


class StudentSetupMixin:
    """Methods of `DistillationTrainer` (a `transformers.Trainer`); uses its `_unplaced_teacher`, `args` and
    `_teacher_cache_root()`."""

    def _check_student(self, student: nn.Module, args: DistillationTrainingArguments) -> None:
        if student is self._unplaced_teacher:
            raise ValueError("the student is the teacher object itself: build a separate student to distil into.")
        teachers = {id(parameter) for parameter in self._unplaced_teacher.parameters()}
        shared = [name for name, parameter in student.named_parameters() if id(parameter) in teachers]
        if shared:
            # freezing (and casting) the teacher would freeze those student weights too, without a word
            raise ValueError(
                f"the student shares {len(shared)} parameter(s) with the teacher (e.g. {shared[0]}): freezing the "
                "teacher would freeze them in the student. Give the student copies (copy.deepcopy of the teacher's "
                "module) instead of the teacher's own modules."
            )
        check_distillable(student, self._unplaced_teacher)
        check_task_term(student, args.alpha_task)
        if args.alpha_cos > 0:
            check_hidden_sizes(student, self._unplaced_teacher)
        check_intermediate(student, self._unplaced_teacher, args)
        check_chunkable_heads(student, self._unplaced_teacher, args)
        attach_projection(student, self._unplaced_teacher, args)

    def _check_distillation_args(self) -> None:
        """The checks of the distillation arguments that hold whatever the student: their values, and the hooked
        terms under one process over several GPUs."""
        self.args.validate_distillation()
        check_hooks_under_data_parallel(self._unplaced_teacher, self.args)

    def _rebuild_loss_terms(self) -> None:
        """The table of loss terms, and what depends on it, from the current arguments (`__init__`, a search trial,
        arguments changed before a `train()`)."""
        self._hidden_pairs = None  # (student, its layer pairs): hidden_layer_map may have changed
        self._loss_terms = active_terms(self.args)
        if all(term.name == "task" for term, _ in self._loss_terms) and not getattr(self, "_said_no_teacher", False):
            self._said_no_teacher = True  # once: a search trial rebuilds the terms, with the same weights or others
            # the teacher still runs every step (or builds its cache): nothing reads it
            logger.warning(
                "No active loss term reads the teacher (alpha_kd, alpha_cos, alpha_hidden, alpha_attention and "
                "alpha_value_relation are all 0): the student trains on its labels alone while the teacher still runs "
                "%s. Set alpha_kd > 0 to distil, or train without a teacher (transformers.Trainer, or "
                "--student_training labels_only in the scripts).",
                "once over the training set for its cache" if self.args.cache_teacher_logits else "on every step",
            )
        # Running sums of the logged terms stay on the device: one reduction per logging window, no sync per step.
        self._logged_term_sums = torch.zeros(len(self._loss_terms), device=self.args.device)
        self._applied_settings = distillation_settings(self.args)  # what the terms and the checks were made from

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """[`~transformers.Trainer.call_model_init`], with the teacher/student checks on every student it builds."""
        student = super().call_model_init(trial)
        if trial is None or self.hp_search_backend is None:
            self._check_student(student, self.args)
            return student
        # A trial's student is checked (and given its projection) with the trial's values in `args`: transformers
        # 5.25 builds it before `_hp_search_setup` applies them, which then checks it; earlier releases built it
        # after, and it is checked here.
        self._student_of_trial = trial
        if getattr(self, "_args_of_trial", None) is trial:
            self._check_student(student, self.args)
        return student

    def _check_given_optimizer(self, student: nn.Module) -> None:
        """An optimizer passed as `optimizers=(optimizer, scheduler)` was built from the student's parameters before
        the trainer gave a narrower student its hidden-state projection: it would never train it (a random map for
        the whole run, its term logged as if it worked). Refused, naming the fix."""
        projection = getattr(unwrap(student), PROJECTION_NAME, None)
        if projection is None:
            return
        held = {id(parameter) for group in self.optimizer.param_groups for parameter in group["params"]}
        if any(id(parameter) not in held for parameter in projection.parameters()):
            raise ValueError(
                f"alpha_hidden > 0 gives this student, narrower than its teacher, a projection ({PROJECTION_NAME}) "
                "that the trainer adds, but the optimizer passed in `optimizers=` was built before it and would never "
                "train it. Build the optimizer after the trainer, from trainer.model.parameters() (or leave "
                "`optimizers` unset)."
            )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """[`~transformers.Trainer.save_model`]: checkpoints keep the hidden-state projection (resume is exact); the
        saved student leaves it out, so it loads as a plain `AutoModelFor...`."""
        student = unwrap(self.model)
        projection = getattr(student, PROJECTION_NAME, None)
        if projection is None or (_internal_call and not getattr(self, "_saving_to_push", False)):
            return super().save_model(output_dir, _internal_call=_internal_call)
        delattr(student, PROJECTION_NAME)
        try:
            return super().save_model(output_dir, _internal_call=_internal_call)
        finally:
            student.add_module(PROJECTION_NAME, projection)

    def push_to_hub(self, *args: Any, **kwargs: Any) -> Any:
        """[`~transformers.Trainer.push_to_hub`], whose save (an internal one, which keeps the projection for a
        checkpoint) writes the student without the hidden-state projection, as `save_model` does; output_dir is
        uploaded without what is not the student (`_not_pushed`)."""
        self._saving_to_push = True
        try:
            with self._not_pushed():
                return super().push_to_hub(*args, **kwargs)
        finally:
            self._saving_to_push = False

    @contextlib.contextmanager
    def _not_pushed(self) -> Iterator[None]:
        """Adds the scripts' `IGNORE_ON_PUSH` and the teacher cache folder to the ignore patterns of Trainer's uploads
        of output_dir (it passes its own, fixed ones): the default teacher cache lives in output_dir, and a crashed
        build's folder there names this machine. Other uploads (a checkpoint folder) keep Trainer's patterns."""
        import transformers.trainer as trainer_module

        from hf_distill.publish.hub import IGNORE_ON_PUSH, cache_folder_patterns

        # and a teacher_cache_dir of another name in output_dir
        patterns = [*IGNORE_ON_PUSH, *cache_folder_patterns(self.args.output_dir, self._teacher_cache_root())]
        output_dir = Path(os.path.abspath(self.args.output_dir))

        def leaving_out(upload: Any) -> Any:
            def upload_folder(*, folder_path: str, ignore_patterns: Any = None, **kwargs: Any) -> Any:
                if Path(os.path.abspath(folder_path)) == output_dir:
                    given = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
                    ignore_patterns = [*given, *patterns]
                return upload(folder_path=folder_path, ignore_patterns=ignore_patterns, **kwargs)

            return upload_folder

        # transformers 5 uploads through its shared client, `hf_api()`; earlier releases called huggingface_hub's
        # `upload_folder`, imported into the module.
        saved = {name: getattr(trainer_module, name) for name in ("hf_api", "upload_folder")
                 if hasattr(trainer_module, name)}  # fmt: skip
        if "hf_api" in saved:
            trainer_module.hf_api = lambda: _Uploads(saved["hf_api"](), leaving_out)
        if "upload_folder" in saved:
            trainer_module.upload_folder = leaving_out(saved["upload_folder"])
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(trainer_module, name, value)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """[`~transformers.Trainer._push_from_checkpoint`] under `push_to_hub` with `hub_strategy="every_save"` (the
        default): the student it copies from the checkpoint into the repo's root is the checkpoint's weights without
        the hidden-state projection (the checkpoint keeps it, for resume). The strategies that also upload the
        checkpoints ("checkpoint", "all_checkpoints") upload them as saved, and the root's copy with them. The root
        is uploaded without what is not the student (`_not_pushed`)."""
        with self._not_pushed():
            return self._push_student_from_checkpoint(checkpoint_folder)

    def _push_student_from_checkpoint(self, checkpoint_folder: str) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file
        from transformers.trainer_utils import HubStrategy
        from transformers.utils import CONFIG_NAME, GENERATION_CONFIG_NAME, SAFE_WEIGHTS_NAME

        source = Path(checkpoint_folder) / SAFE_WEIGHTS_NAME
        busy = self.push_in_progress is not None and not self.push_in_progress.is_done()
        if (
            getattr(unwrap(self.model), PROJECTION_NAME, None) is None
            or not self.is_world_process_zero()  # (Trainer returns at once there, and rank 0 may be writing source)
            or self.args.hub_strategy != HubStrategy.EVERY_SAVE  # the checkpoint folder itself is uploaded, later
            or (busy and not self.args.hub_always_push)  # Trainer skips this push
            or not source.is_file()  # sharded weights
        ):
            return super()._push_from_checkpoint(checkpoint_folder)
        with tempfile.TemporaryDirectory() as folder:
            with safe_open(str(source), framework="pt") as weights:
                kept = {k: weights.get_tensor(k) for k in weights.keys() if not k.startswith(PROJECTION_NAME + ".")}
                metadata = weights.metadata()
            save_file(kept, str(Path(folder) / SAFE_WEIGHTS_NAME), metadata=metadata)
            for name in (CONFIG_NAME, GENERATION_CONFIG_NAME):
                if (Path(checkpoint_folder) / name).is_file():
                    shutil.copy(Path(checkpoint_folder) / name, Path(folder) / name)
            return super()._push_from_checkpoint(folder)  # copies the files into output_dir before it returns

    def _hp_search_setup(self, trial: Any) -> None:
        """Applies a trial's values to `args` (Trainer), then re-validates them and rebuilds the table of loss terms:
        a trial may change any weight, the temperature or the learning rate."""
        super()._hp_search_setup(trial)
        if trial is None or self.hp_search_backend is None:
            return
        self._check_distillation_args()  # a trial may turn a hooked term on
        self._args_of_trial = trial
        if self.model is not None and getattr(self, "_student_of_trial", None) is trial:
            self._check_student(unwrap(self.model), self.args)  # this trial's weights, map and seed
        self._rebuild_loss_terms()
        if self.args.cache_teacher_logits:
            self.prepare_teacher_cache()  # a token cache stores log-probabilities at the trial's temperature and k


class _Uploads:
    """A Hub client whose `upload_folder` is wrapped by `wrap` (the rest is the client's own)."""

    def __init__(self, api: Any, wrap: Any):
        self._api = api
        self.upload_folder = wrap(api.upload_folder)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)
