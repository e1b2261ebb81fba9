"""MLflow tracking, when MLFLOW_TRACKING_URI is set; otherwise every call does nothing."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path


class TrackingError(RuntimeError):
    """MLflow cannot be reached; the message says what to do."""


def check_reachable(uri: str) -> None:
    """Fails at once when an http(s) tracking server does not answer its /health (MLflow's own
    client would retry for minutes before saying so)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as response:
            response.read(64)
    except urllib.error.HTTPError as e:
        if e.code != 404:  # an MLflow behind a proxy without /health still tracks
            raise TrackingError(f"MLflow at {uri} answers /health with HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"MLflow at {uri} does not answer ({reason}): start it (compose: docker compose "
            "--profile tracking up -d mlflow), or set MLFLOW_TRACKING_URI to nothing to train "
            "without tracking"
        ) from None


class Tracker:
    """One MLflow run: parameters, per-epoch metrics, the model directory as an artifact, tags."""

    def __init__(self, experiment: str, run_name: str):
        self.uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        if not self.uri:
            return
        check_reachable(self.uri)
        import mlflow  # noqa: PLC0415 (only with tracking on)

        self._mlflow = mlflow
        # Fails here, before any training, when the server is unreachable or refuses.
        experiment_obj = mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name)
        self.run_id = run.info.run_id
        self.experiment_id = experiment_obj.experiment_id

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def params(self, params: dict) -> None:
        if self.enabled:
            self._mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled:
            self._mlflow.log_metrics(metrics, step=step)

    def tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            self._mlflow.set_tags(tags)

    def artifacts(self, directory: Path, path: str) -> None:
        if self.enabled:
            self._mlflow.log_artifacts(str(directory), artifact_path=path)

    def artifact(self, file: Path, path: str | None = None) -> None:
        if self.enabled:
            self._mlflow.log_artifact(str(file), artifact_path=path)

    def end(self, ok: bool) -> None:
        if self.enabled:
            self._mlflow.end_run(status="FINISHED" if ok else "FAILED")
