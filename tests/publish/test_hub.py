"""check_can_push: a token that cannot push is refused before training, never after it."""

import pytest


class _Hub:
    role: str | None = "write"

    def __init__(self, token=None):
        self.token = token

    def whoami(self, token=None):
        access = {"displayName": "t", "role": _Hub.role} if _Hub.role else {}
        orgs = [{"name": "my-lab", "roleInOrg": "write"}, {"name": "their-lab", "roleInOrg": "read"}]
        return {"type": "user", "name": "me", "orgs": orgs, "auth": {"accessToken": access}}


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(huggingface_hub, "HfApi", _Hub)
    monkeypatch.setattr(_Hub, "role", "write")  # a test's role is undone after it
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return _Hub


@pytest.mark.parametrize("role", ["write", "fineGrained", None])  # fine-grained scopes are the Hub's to judge
def test_a_token_that_may_write_passes(hub, role):
    from hf_distill.publish.hub import check_can_push

    hub.role = role
    secret = "hf_" + "w" * 34
    assert check_can_push(secret) == secret


def test_a_read_only_token_is_refused_before_training_without_printing_it(hub):
    # it passed whoami, trained for hours, then failed at create_repo
    from hf_distill.publish.hub import check_can_push

    hub.role = "read"
    secret = "hf_" + "r" * 34
    with pytest.raises(ValueError, match=r"read-only.*write") as error:
        check_can_push(secret)
    assert secret not in str(error.value) and "\n" not in str(error.value)


def test_a_hub_that_never_answers_is_refused_after_the_timeout(hub, monkeypatch):
    # the timeout argument was never used: a silent connection (a firewall dropping packets) hung every rank
    import time

    from hf_distill.publish.hub import check_can_push

    monkeypatch.setattr(_Hub, "whoami", lambda self, token=None: time.sleep(30))
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"could not be reached or refused the token \(no answer within 0.5 s\)"):
        check_can_push("hf_secret_token", timeout=0.5)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("repo_id", ["me/student", "my-lab/student", "student", None])
def test_a_repo_in_the_users_own_or_writable_namespace_passes(hub, repo_id):
    from hf_distill.publish.hub import check_can_push

    assert check_can_push("hf_" + "w" * 34, repo_id=repo_id).startswith("hf_")


def test_a_repo_in_a_namespace_the_user_cannot_write_to_is_refused_before_training(hub, caplog):
    # create_repo refused it after hours of training
    from hf_distill.publish.hub import check_can_push

    secret = "hf_" + "w" * 34
    match = (r"'someone-else/student': the token's user 'me' is not 'someone-else' nor in an organisation of that "
             r"name \(its organisations: my-lab, their-lab\).*Nothing was trained.*--hub_model_id")  # fmt: skip
    with pytest.raises(ValueError, match=match) as error:
        check_can_push(secret, repo_id="someone-else/student")
    assert secret not in str(error.value) and "\n" not in str(error.value)
    # the read role: warned, not refused (an Enterprise resource group can grant write on some of its repos)
    with caplog.at_level("WARNING"):
        assert check_can_push(secret, repo_id="their-lab/student") == secret
    assert "the read role in the organisation 'their-lab'" in caplog.text and secret not in caplog.text
    hub.role = "fineGrained"  # its scopes, organisations included, are the Hub's to judge
    assert check_can_push(secret, repo_id="someone-else/student") == secret


def test_the_token_in_hf_token_is_used_when_none_is_given(hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from hf_distill.publish.hub import check_can_push

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))  # no login's token file on this machine
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    secret = "hf_" + "e" * 34
    monkeypatch.setenv("HF_TOKEN", secret)
    assert check_can_push(None, repo_id="me/student") == secret
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ValueError, match=r"--push_to_hub needs a Hugging Face token, and none was found"):
        check_can_push(None, repo_id="me/student")


def test_an_explicit_token_is_checked_and_used_over_the_one_in_hf_token(hub, monkeypatch):
    # HF_TOKEN of another account (a read token): the explicit --hub_token's write access must be the one checked
    from hf_distill.publish.hub import check_can_push

    explicit, in_environment = "hf_" + "x" * 34, "hf_" + "v" * 34
    asked = []
    answer = hub.whoami

    def whoami(self, token=None):
        asked.append(token)
        return answer(self, token)

    monkeypatch.setattr(hub, "whoami", whoami)
    monkeypatch.setenv("HF_TOKEN", in_environment)
    assert check_can_push(explicit, repo_id="me/student") == explicit
    assert asked == [explicit]


def test_the_namespace_is_the_users_or_an_organisations_whatever_the_case_either_is_written_in(hub, monkeypatch):
    # the Hub's names are case-insensitive: a user "Me" pushing to me/student was refused before training
    from hf_distill.publish.hub import check_can_push

    def whoami(self, token=None):
        orgs = [{"name": "My-Lab", "roleInOrg": "write"}]
        return {"type": "user", "name": "Me", "orgs": orgs, "auth": {"accessToken": {"role": "write"}}}

    monkeypatch.setattr(_Hub, "whoami", whoami)
    secret = "hf_" + "w" * 34
    for repo_id in ("me/student", "ME/student", "my-lab/student", "MY-LAB/student"):
        assert check_can_push(secret, repo_id=repo_id) == secret
    with pytest.raises(ValueError, match=r"the token's user 'Me' is not 'my-labs' nor in an organisation of that"):
        check_can_push(secret, repo_id="my-labs/student")


@pytest.mark.parametrize("revision", ["exp.", "-exp", "exp@{1}", "tab\there", ".exp", "a/.b"])
def test_a_revision_git_refuses_as_a_branch_name_is_refused(revision):
    from hf_distill.publish.hub import check_revision

    with pytest.raises(ValueError, match=r"^--hub_revision .* is not a branch name git accepts .*Nothing was trained"):
        check_revision(revision)


@pytest.mark.parametrize("revision", ["exp.1", "my-exp", "exp-", "v1.0/rc.2", "a@b"])
def test_a_revision_with_a_dot_or_dash_inside_passes(revision):
    from hf_distill.publish.hub import check_revision

    check_revision(revision)


class _Uploads:
    """Stands in for HfApi in a push: what `upload_folder` would upload, filtered as huggingface_hub filters it."""

    uploaded: list[str] = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, **kwargs):
        pass

    def upload_folder(self, *, folder_path, ignore_patterns, **kwargs):
        from pathlib import Path

        from huggingface_hub.utils import filter_repo_objects

        files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        _Uploads.uploaded = sorted(filter_repo_objects(files, ignore_patterns=ignore_patterns))


def test_a_teacher_cache_in_the_output_folder_is_never_pushed_whatever_its_folder_is_called(tmp_path, monkeypatch):
    # --teacher_cache_dir equal to --output_dir put the cache in <output_dir>/<fingerprint>/, which no ignore pattern
    # named: the push uploaded every training row's teacher logits
    import huggingface_hub

    from hf_distill.cache.store import _METADATA_FILE
    from hf_distill.publish.hub import cache_folder_patterns, push_folder

    monkeypatch.setattr(huggingface_hub, "HfApi", _Uploads)
    (tmp_path / "model.safetensors").write_bytes(b"")
    for cache in (tmp_path / "0f3a9c", tmp_path / "logits" / "a" / "1b2c"):
        cache.mkdir(parents=True)
        (cache / "data-00000-of-00001.arrow").write_bytes(b"")
        (cache / _METADATA_FILE).write_text("{}")
    push_folder(tmp_path, "me/student", "hf_token")
    assert _Uploads.uploaded == ["model.safetensors"]
    # the trainer's own push (student_setup) leaves out what these patterns name
    assert cache_folder_patterns(tmp_path, tmp_path) == ["0f3a9c/**", "logits/a/1b2c/**"]
