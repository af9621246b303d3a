"""Which CI job this run belongs to: GitHub Actions, GitLab CI or a local run."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from enum import StrEnum

from ciwatch.dataclass import dataclass


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    LOCAL = "local"


#: Identifiers only. Tokens (GITHUB_TOKEN, ACTIONS_RUNTIME_TOKEN, CI_JOB_TOKEN...) never are.
_GITHUB_VARS = (
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_REPOSITORY_ID",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_NUMBER",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_JOB",
    "GITHUB_ACTION",
    "GITHUB_WORKFLOW",
    "GITHUB_WORKFLOW_REF",
    "GITHUB_WORKFLOW_SHA",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITHUB_EVENT_NAME",
    "GITHUB_ACTOR",
    "GITHUB_ACTOR_ID",
    "RUNNER_NAME",
    "RUNNER_OS",
    "RUNNER_ARCH",
    "RUNNER_ENVIRONMENT",
    # Not GitHub's: a matrix leg has no variable of its own (its legs share GITHUB_JOB), so
    # ciwatch's Action passes `strategy.job-index` under this name.
    "CIWATCH_JOB_INDEX",
)
_GITLAB_VARS = (
    "CI_SERVER_URL",
    "CI_PROJECT_PATH",
    "CI_PROJECT_ID",
    "CI_PIPELINE_ID",
    "CI_PIPELINE_IID",
    "CI_PIPELINE_URL",
    "CI_PIPELINE_SOURCE",
    "CI_JOB_ID",
    "CI_JOB_NAME",
    "CI_JOB_STAGE",
    "CI_JOB_URL",
    "CI_COMMIT_SHA",
    "CI_COMMIT_REF_NAME",
    "CI_RUNNER_ID",
    "CI_RUNNER_DESCRIPTION",
    "CI_RUNNER_TAGS",
    "CI_JOB_IMAGE",
    "GITLAB_USER_LOGIN",
)


@dataclass(frozen=True)
class JobContext:
    provider: Provider
    key: str
    """One string that names the job; every event of the record carries it."""
    identifiers: dict[str, str]
    """The provider's job variables that were set (empty values left out)."""


def _present(env: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: env[name] for name in names if env.get(name)}


def detect_job(env: Mapping[str, str], started_at: str) -> JobContext:
    if env.get("GITHUB_ACTIONS") == "true":
        ids = _present(env, _GITHUB_VARS)
        key = "github:{}/{}/{}/{}".format(
            ids.get("GITHUB_REPOSITORY", "?"),
            ids.get("GITHUB_RUN_ID", "?"),
            ids.get("GITHUB_RUN_ATTEMPT", "1"),
            ids.get("GITHUB_JOB", "?"),
        )
        if "CIWATCH_JOB_INDEX" in ids:
            key += f"#{ids['CIWATCH_JOB_INDEX']}"  # one matrix leg among others of the same job
        return JobContext(Provider.GITHUB, key, ids)
    if env.get("GITLAB_CI") == "true":
        ids = _present(env, _GITLAB_VARS)
        key = "gitlab:{}/{}/{}".format(
            ids.get("CI_PROJECT_PATH", "?"), ids.get("CI_PIPELINE_ID", "?"), ids.get("CI_JOB_ID", "?")
        )
        return JobContext(Provider.GITLAB, key, ids)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    host = socket.gethostname()
    ids = {"user": user, "host": host}
    return JobContext(Provider.LOCAL, f"local:{user}@{host}/{started_at}", ids)
