"""Before any work: a tracking server named by MLFLOW_TRACKING_URI=http(s)://… must answer and take
this user's credentials. MLflow's own client would retry a dead server for minutes and then print
a traceback; this says in one line which server, what went wrong, with any password hidden."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import read_mlflow_creds

from pipelines.errors import PlatformError, first_line

HEALTH_TIMEOUT_S = 10


def shown(uri: str) -> str:
    """The URI with a password in it (http://user:secret@host) replaced by ***."""
    return re.sub(r"(//[^/:@]+):[^/@]*@", r"\1:***@", uri)


def _without_userinfo(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//", uri)


def check_server(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{_without_userinfo(uri).rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S):
            pass
    except urllib.error.HTTPError as exc:
        raise PlatformError(f"tracking server {shown(uri)} answered /health with HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PlatformError(f"tracking server {shown(uri)} does not answer: {reason}") from None
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as exc:
        user = read_mlflow_creds().username
        text = first_line(exc)
        if "401" in text:
            who = f"user '{user}'" if user else "no user (set MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials)"
            raise PlatformError(f"tracking server {shown(uri)} refuses the credentials of {who}") from None
        if "403" in text:
            raise PlatformError(f"tracking server {shown(uri)} refuses the request of user '{user}': permission denied") from None
        raise PlatformError(f"tracking server {shown(uri)} refuses the request: {text[:200]}") from None
