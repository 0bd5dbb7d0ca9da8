"""Checks before a run that will push to the Hugging Face Hub, and the push itself.

A run that trains for hours and then fails to push has wasted those hours: the token and the Hub's reachability
are checked before training. The token is never printed, logged or written to a file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .export import EXPORTED_FILES

logger = logging.getLogger(__name__)

__all__ = [
    "cache_folder_patterns",
    "check_can_push",
    "check_repo_id",
    "hub_repo_id",
    "push_folder",
    "take_token_out_of_arguments",
    "teacher_cache_folders",
]

# Files of the output folder that are not the student: intermediate checkpoints, the fine-tuned teacher, the
# teacher-logit cache and TensorBoard runs; and Trainer's training_args.bin, a pickle (which nobody should have to
# unpickle) holding this machine's folders: the card's command line states the arguments instead. Also a run's
# working files: the search's trial folders and optuna journal (hp_search.json, its record, is published by the run
# that searched), the predictions and teacher scoring folders, and scripts/run_results.py's marks.
IGNORE_ON_PUSH = [
    "checkpoint-*",
    "checkpoint-*/**",
    "teacher/**",
    "teacher_cache/**",
    "runs/**",
    "*.pt",
    "training_args.bin",
    "hp_search/**",
    "hp_search_study.journal*",
    "hp_search.json.partial",
    "predict/**",
    "teacher_eval/**",
    "*.command.json",
    "search_command.json",
    "run_results.reproduces.json",  # run_results.py's record of a reproduction
    "emissions.csv",  # codecarbon's (report_to codecarbon): it holds the machine's location
    # a teacher cache's build folder, when the cache root is the output folder (the library allows it)
    ".*.partial-*",
    ".*.partial-*/**",
    # Trainer's state names the best checkpoint by this machine's path (load_best_model_at_end)
    "trainer_state.json",
    # what a desktop or a notebook leaves in any folder it opens (the output-folder check counts them as no one's):
    # a notebook's checkpoint copy would publish the notebook
    ".DS_Store",
    "**/.DS_Store",
    "Thumbs.db",
    "**/Thumbs.db",
    ".ipynb_checkpoints/**",
    "**/.ipynb_checkpoints/**",
]
# Files an earlier push may have left in the repo that this run's folder may not hold: deleted in the push's commit
# unless this run uploads them again (an earlier run's ONNX files would stand beside a student they were not
# exported from).
STALE_ON_PUSH = [*EXPORTED_FILES, "trainer_state.json"]


def cache_folder_patterns(output_dir: str | Path, cache_root: str | Path | None) -> list[str]:
    """The ignore patterns of teacher caches inside `output_dir` that `IGNORE_ON_PUSH` would not know: the cache
    folder `cache_root` (`--teacher_cache_dir`) under a name other than `teacher_cache`, and any folder holding a
    cache's metadata file (`teacher_cache_folders`: a `cache_root` equal to `output_dir` puts each cache in
    `<output_dir>/<fingerprint>/`, which no name tells)."""
    patterns = teacher_cache_folders(output_dir)
    inner = cache_root_inside(output_dir, cache_root)
    # the default teacher_cache/ is left out already
    return patterns if inner is None or f"{inner}/**" in IGNORE_ON_PUSH else [f"{inner}/**", *patterns]


def cache_root_inside(output_dir: str | Path, cache_root: str | Path | None) -> str | None:
    """`cache_root`'s path relative to `output_dir` (posix) when it lies inside it, else None (elsewhere, the same
    folder, or not given)."""
    if cache_root is None:
        return None
    output_dir, cache_root = Path(os.path.abspath(output_dir)), Path(os.path.abspath(cache_root))
    if cache_root == output_dir or not cache_root.is_relative_to(output_dir):
        return None
    return cache_root.relative_to(output_dir).as_posix()


def teacher_cache_folders(folder: str | Path) -> list[str]:
    """Ignore patterns of every folder under `folder` that holds a teacher cache's metadata file: each holds every
    training row's teacher outputs, never part of the student, wherever `--teacher_cache_dir` put it."""
    from hf_distill.cache.store import _METADATA_FILE  # the file every finished cache folder holds

    folder = Path(folder)
    found = sorted(path.parent.relative_to(folder) for path in folder.rglob(_METADATA_FILE))
    return [f"{parent.as_posix()}/**" for parent in found if parent.parts]


def check_can_push(token: str | None, *, timeout: float = 10.0, repo_id: str | None = None) -> str:
    """Returns the token to push with, or raises `ValueError` saying why a push cannot work.

    Args:
        token (`str`, *optional*): an explicit token; else the one from `HF_TOKEN` or `huggingface-cli login`.
        timeout (`float`): seconds to wait for the Hub.
        repo_id (`str`, *optional*): the repo the push will create or update: its namespace must be the token's
            user or an organisation the user may write in.
    """
    from huggingface_hub import HfApi, constants, get_token

    token = token or get_token()
    if not token:
        raise ValueError(
            "--push_to_hub needs a Hugging Face token, and none was found: run `hf auth login`, or set HF_TOKEN in "
            "the environment. Nothing was trained; drop --push_to_hub to keep the results local only."
        )
    if constants.HF_HUB_OFFLINE:
        raise ValueError(
            "--push_to_hub cannot work offline: HF_HUB_OFFLINE is set. Nothing was trained; unset it on a machine "
            "that reaches the Hub, or drop --push_to_hub."
        )
    try:
        identity = _within(timeout, lambda: HfApi(token=token).whoami(token=token))
    except Exception as error:  # network errors come as several types; none of them may leak the token
        reason = f"no answer within {timeout:g} s" if isinstance(error, TimeoutError) else type(error).__name__
        raise ValueError(
            f"--push_to_hub: the Hub at {constants.ENDPOINT} could not be reached or refused the token ({reason}). "
            "Nothing was trained; check the network and the token, or drop --push_to_hub."
        ) from None
    # A read token passes whoami and fails at create_repo, after training. A fine-grained token's scopes are per
    # repo and left to the Hub.
    access = ((identity or {}).get("auth") or {}).get("accessToken") or {}
    if access.get("role") == "read":
        raise ValueError(
            f"--push_to_hub: the Hugging Face token ({access.get('displayName') or 'unnamed'}) is read-only, and a "
            "push needs write access. Nothing was trained; log in with a write token (`hf auth login`, or HF_TOKEN), "
            "or drop --push_to_hub."
        )
    if repo_id is not None and "/" in repo_id and access.get("role") != "fineGrained":
        _check_namespace(repo_id, identity or {})  # a fine-grained token's scopes, organisations too, are the Hub's
    return token


def _check_namespace(repo_id: str, identity: dict) -> None:
    """create_repo refuses a namespace that is neither the user's nor one of their organisations, after training:
    refused here (the read role in the organisation is warned of). An organisation's own token (`type` "org") is left
    to the Hub."""
    user = identity.get("name")
    if identity.get("type", "user") != "user" or not user:
        return
    namespace = repo_id.split("/", 1)[0]
    if namespace.lower() == user.lower():
        return
    roles = {org.get("name", "").lower(): org.get("roleInOrg") for org in identity.get("orgs") or []}
    if namespace.lower() not in roles:
        names = ", ".join(org.get("name", "") for org in identity.get("orgs") or []) or "none"
        raise ValueError(
            f"--push_to_hub to {repo_id!r}: the token's user {user!r} is not {namespace!r} nor in an organisation of "
            f"that name (its organisations: {names}). Nothing was trained; pass --hub_model_id with your user name "
            "or a writable organisation as namespace, or drop --push_to_hub."
        )
    if roles[namespace.lower()] == "read":
        # warned, not refused: an Enterprise organisation's resource groups can grant write on some repos
        logger.warning(
            "--push_to_hub to %r: the token's user %r has the read role in the organisation %r; the push will fail "
            "after training unless a resource group lets them write there.",
            repo_id,
            user,
            namespace,
        )


def _within(timeout: float, call):
    """`call()`'s result, or `TimeoutError` after `timeout` seconds: huggingface_hub's client waits for ever on a
    connection that never answers (a firewall dropping packets), and every rank would hang before training. The
    call is left to finish in a daemon thread."""
    import threading

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True, name="hub-check")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def hub_repo_id(training_args) -> str:
    """The repo the student is pushed to: `--hub_model_id`, else the output folder's name (as given, not resolved)."""
    return training_args.hub_model_id or Path(training_args.output_dir).name


def check_repo_id(training_args) -> str:
    """Returns the repo id the push will use, or raises `ValueError` naming it when the Hub would refuse it (found
    only after training otherwise, when the push creates the repo)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id = hub_repo_id(training_args)
    source = "--hub_model_id" if training_args.hub_model_id else "--output_dir's name, as no --hub_model_id was given"
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValueError(
            f"--push_to_hub: {repo_id!r} ({source}) is not a valid Hub repo id. Nothing was trained; pass "
            "--hub_model_id NAME or NAMESPACE/NAME (letters, digits, '-', '_' and '.', at most 96 characters), e.g. "
            "--hub_model_id my-user/bert-sst2-student."
        ) from None
    check_revision(getattr(training_args, "hub_revision", None))
    return repo_id


def check_revision(revision: str | None) -> None:
    """Refuses a `--hub_revision` that git's ref rules (`git check-ref-format`) refuse as a branch: the push creates
    the branch after training, where it failed."""
    if revision is None:
        return
    parts = revision.split("/")
    bad = (
        not revision
        or revision.startswith("-")
        or revision.endswith(".")
        or ".." in revision
        or "@{" in revision
        or revision == "@"
        or any(c in revision for c in " ~^:?*[\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in revision)
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in parts)
    )
    if bad:
        raise ValueError(
            f"--hub_revision {revision!r} is not a branch name git accepts (no spaces, '..', '~^:?*[\\', control "
            "characters, leading '-', empty or dot-led parts, or a part ending in '.lock'). Nothing was trained; "
            "pass e.g. --hub_revision experiment-2, or drop it to push to main."
        )


def push_folder(
    folder: str | Path,
    repo_id: str,
    token: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    not_pushed: tuple[str, ...] = (),
) -> str:
    """Creates `repo_id` if needed and uploads the student, tokenizer, model card and results from `folder`.

    Args:
        private: as `--hub_private_repo`: True makes a new repo private; None leaves it to the Hub's default (public,
            or the organization's setting). An existing repo keeps its visibility.
        revision: as `--hub_revision`: the branch to commit to (created from main when missing); None: main.
        not_pushed: patterns kept local besides `IGNORE_ON_PUSH` (an earlier run's records in the folder), and
            deleted from the repo in the same commit when an earlier push left them there.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    if revision is not None and not revision.startswith("refs/pr/"):  # a pull request's ref exists or fails
        # upload_folder commits only to an existing branch: a new one is made first, as transformers' own push does
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message="Distilled with hf-distill",
        # and any teacher cache, whatever its folder is called (the caller's `not_pushed` may not know it)
        ignore_patterns=list(dict.fromkeys([*IGNORE_ON_PUSH, *not_pushed, *teacher_cache_folders(folder)])),
        # and an earlier push's copy goes: it would stand beside a student it did not make
        delete_patterns=[*not_pushed, *STALE_ON_PUSH],
        revision=revision,
    )
    logger.info("Pushed %s to %s", folder, repo_id)
    return str(getattr(commit, "commit_url", repo_id))


def take_token_out_of_arguments(training_args) -> str | None:
    """Moves `--hub_token` out of the arguments (Trainer pickles them to training_args.bin) into the environment."""
    token = getattr(training_args, "hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = token
        training_args.hub_token = None
    return token
