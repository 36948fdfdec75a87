"""Publishing a converted repo directory to the Hub: one commit, a validated card, clear errors, no token leaks."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import HfApi, ModelCard, get_token
from huggingface_hub.errors import (
    HFValidationError,
    HfHubHTTPError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .repo_check import RepoCheckError, check_repo

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


class PushError(RuntimeError):
    """A push that did not happen; the remote repo is as it was before."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    commit_oid: str
    commit_url: str
    pr_url: str | None
    created_commit: bool


def push_repo(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    ignore_patterns: tuple[str, ...] = (),
    attempts: int = 4,
    backoff_seconds: float = 1.0,
) -> PushResult:
    """
    Upload every file of `directory` (but hidden ones and `ignore_patterns`) to the model repo `repo_id` in ONE
    commit (or one pull request).

    The card is validated by the Hub first. The token comes from `token`, else `HF_TOKEN` or the login cache; it is
    never printed or written. Transient failures (429, 5xx, dropped connections) are retried with backoff; since a
    commit is applied all at once or not at all, a failed push leaves the remote repo unchanged. Pushing files
    identical to the remote ones creates no commit.
    """
    directory = Path(directory)
    check_repo_id(repo_id)
    try:
        check_repo(directory)  # before anything remote is created
    except RepoCheckError as error:
        raise PushError(str(error)) from None
    api = HfApi(token=token)
    secret = token or get_token()  # the token the client will really send (HF_TOKEN or the login cache)
    created = False
    try:
        _validate_card(directory)
        created = not api.repo_exists(repo_id)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit, head = _upload(api, directory, repo_id, revision, create_pr, commit_message, ignore_patterns,
                               attempts, backoff_seconds)
    except Exception as error:
        message = str(error) if isinstance(error, PushError) else _explain(error, repo_id, revision)
        if created:
            message += _remove_created(api, repo_id)
        raise PushError(_redact(message, secret)) from None
    return PushResult(
        repo_id=repo_id,
        commit_oid=commit.oid,
        commit_url=commit.commit_url,
        pr_url=commit.pr_url,
        created_commit=commit.oid != head,
    )


def check_repo_id(repo_id: str) -> None:
    """Refuse a malformed Hub id (before a conversion or training run spends any time)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PushError(f"--push-to-hub {repo_id!r} is not a Hub repo id: {error}") from None
    if "/" not in repo_id:
        raise PushError(f"--push-to-hub {repo_id!r}: name the owner too, as ORG/NAME or USER/NAME")


def _upload(api: HfApi, directory: Path, repo_id: str, revision: str | None, create_pr: bool,
            commit_message: str | None, ignore_patterns: tuple[str, ...], attempts: int,
            backoff_seconds: float) -> tuple[Any, str]:
    """One commit of the whole directory; returns it and the head it was made on."""
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    head = _retrying(lambda: api.repo_info(repo_id, revision=revision).sha, attempts, backoff_seconds)
    commit = _retrying(
        lambda: api.upload_folder(
            folder_path=directory,
            repo_id=repo_id,
            repo_type="model",
            revision=revision,
            commit_message=commit_message or _default_message(directory),
            create_pr=create_pr,
            ignore_patterns=[".*", "**/.*", *ignore_patterns],
        ),
        attempts,
        backoff_seconds,
    )
    return commit, head


def _remove_created(api: HfApi, repo_id: str) -> str:
    """A failed push leaves nothing behind: the repo it created is deleted again (or the user is told)."""
    try:
        api.delete_repo(repo_id, repo_type="model")
    except Exception:  # the Hub is failing: say what is left
        return f"; this push created {repo_id}, which is left empty on the Hub (delete it there)"
    return f"; the repo {repo_id} that this push had created was deleted again"


def _validate_card(directory: Path) -> None:
    card = ModelCard.load(directory / "README.md")
    try:
        card.validate(repo_type="model")
    except ValueError as error:
        raise PushError(f"the model card {directory / 'README.md'} has invalid metadata: {error}") from None


def _default_message(directory: Path) -> str:
    return f"Upload converted ViT repo {directory.resolve().name}"


def _is_transient(error: Exception) -> bool:
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error.response.status_code in TRANSIENT_STATUSES
    # Connection resets and timeouts surface as the HTTP library's transport errors.
    return type(error).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore") or isinstance(error, (ConnectionError, TimeoutError))


def _retrying(call: Callable[[], T], attempts: int, backoff_seconds: float) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:
            if attempt == attempts or not _is_transient(error):
                if _is_transient(error):
                    raise PushError(
                        f"the Hub kept failing ({_status(error)}) after {attempts} attempts; the remote repo was "
                        f"not changed, try again later"
                    ) from None
                raise
            delay = backoff_seconds * 2 ** (attempt - 1)
            logger.warning("transient Hub failure (%s); retrying in %.0f s", _status(error), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _status(error: Exception) -> str:
    response = getattr(error, "response", None)
    return f"HTTP {response.status_code}" if response is not None else type(error).__name__


def _explain(error: Exception, repo_id: str, revision: str | None) -> str:
    if isinstance(error, LocalTokenNotFoundError):
        return "no Hugging Face token found: set HF_TOKEN or run `hf auth login` (a write token is needed to push)"
    if isinstance(error, RevisionNotFoundError):
        return f"revision {revision!r} of {repo_id} was not found on the Hub"
    if isinstance(error, RepositoryNotFoundError):
        return f"{repo_id} was not found on the Hub, or the token may not see it"
    status = getattr(getattr(error, "response", None), "status_code", None)
    messages: dict[Any, str] = {
        401: "the Hub rejected the token (401): it is invalid or expired; set HF_TOKEN or run `hf auth login`",
        403: f"the token may not write to {repo_id} (403): use a write token of a member of its organisation",
        404: f"{repo_id} (revision {revision or 'main'}) was not found on the Hub (404)",
        409: f"conflict pushing to {repo_id} (409): the repo or branch changed meanwhile, or exists with another type",
    }
    if status in messages:
        return messages[status]
    return f"pushing to {repo_id} failed: {error}"


def _redact(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message
