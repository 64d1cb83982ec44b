import base64
import secrets
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from gateway.cli import EXIT_CONFIG, main
from gateway.settings import SettingsError, load_settings


def test_dev_mode_needs_no_variables_and_persists_generated_secrets(tmp_path: Path) -> None:
    first = load_settings({}, var_dir=tmp_path)
    second = load_settings({}, var_dir=tmp_path)
    assert first.is_dev
    assert first.database_url.startswith("sqlite+aiosqlite://")
    assert str(first.secret_key) == str(second.secret_key)
    assert len(str(first.secret_key)) >= 32
    assert [str(k) for k in first.encryption_keys] == [str(k) for k in second.encryption_keys]
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_production_names_every_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as e:
        load_settings({"GATEWAY_ENV": "production"}, var_dir=tmp_path)
    message = str(e.value)
    for name in ("SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL", "PUBLIC_URL"):
        assert name in message


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "GATEWAY_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": "postgresql+asyncpg://gw@db/gw",
        "PUBLIC_URL": "https://gw.example.com",
        "SANDBOX": "false",
    }
    env.update(overrides)
    return env


def test_production_accepts_complete_configuration(tmp_path: Path) -> None:
    settings = load_settings(production_env(), var_dir=tmp_path)
    assert settings.is_production
    assert settings.log_format == "json"
    assert not settings.sandbox_enabled


def test_production_refuses_generated_dev_secrets(tmp_path: Path) -> None:
    dev = load_settings({}, var_dir=tmp_path)
    env = production_env(SECRET_KEY=str(dev.secret_key), ENCRYPTION_KEYS=str(dev.encryption_keys[0]))
    with pytest.raises(SettingsError, match="dev secret") as e:
        load_settings(env, var_dir=tmp_path)
    assert "ENCRYPTION_KEYS contains the generated dev key" in str(e.value)
    assert "dev-secrets.json exists" in str(e.value)


def test_production_recognises_dev_secrets_copied_elsewhere(tmp_path: Path) -> None:
    """The values carry a marker: production refuses them even where no var/dev-secrets.json lies beside it."""
    dev = load_settings({}, var_dir=tmp_path / "laptop")
    env = production_env(SECRET_KEY=str(dev.secret_key), ENCRYPTION_KEYS=str(dev.encryption_keys[0]))
    with pytest.raises(SettingsError) as e:
        load_settings(env, var_dir=tmp_path / "server")
    assert set(e.value.problems) == {
        "SECRET_KEY is the generated dev secret; production refuses it",
        "ENCRYPTION_KEYS contains the generated dev key; production refuses it",
    }


WEAK_FERNET = base64.urlsafe_b64encode(b"ab" * 16).decode()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        pytest.param({"SECRET_KEY": "a" * 32}, "SECRET_KEY holds too little randomness", id="one-letter"),
        pytest.param({"SECRET_KEY": "password" * 5}, "SECRET_KEY holds too little randomness", id="repeated-word"),
        pytest.param({"SECRET_KEY": secrets.token_urlsafe(12)}, "SECRET_KEY holds too little", id="short"),
        pytest.param({"ENCRYPTION_KEYS": WEAK_FERNET}, "ENCRYPTION_KEYS entry 1 holds too little", id="weak-fernet"),
        pytest.param({"METRICS_TOKEN": "metrics-metrics-metrics"}, "METRICS_TOKEN holds too little", id="metrics"),
        pytest.param({"PUBLIC_URL": "http://gw.example.com"}, "PUBLIC_URL must start with https://", id="http"),
        pytest.param({"DATABASE_URL": "sqlite+aiosqlite:///gw.db"}, "DATABASE_URL must be PostgreSQL", id="sqlite"),
        pytest.param({"SANDBOX_FAULTS": "true"}, "SANDBOX_FAULTS must be off", id="faults"),
    ],
)
def test_production_refuses_weak_settings(tmp_path: Path, overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as e:
        load_settings(production_env(**overrides), var_dir=tmp_path)
    assert len(e.value.problems) == 1, e.value.problems
    assert e.value.problems[0].startswith(problem)


def test_http_public_url_is_allowed_only_by_explicit_choice(tmp_path: Path) -> None:
    env = production_env(PUBLIC_URL="http://gateway.internal", ALLOW_HTTP_PUBLIC_URL="true")
    assert load_settings(env, var_dir=tmp_path).public_host == "gateway.internal"


def test_every_weak_setting_gets_a_line_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no var/dev-secrets.json of a dev run beside it
    env = production_env(SECRET_KEY="a" * 40, PUBLIC_URL="http://gw.example.com", SANDBOX_FAULTS="true")
    assert main(["check"], env) == EXIT_CONFIG
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "gateway: invalid configuration:"
    assert [line.split()[1] for line in lines[1:]] == ["SECRET_KEY", "PUBLIC_URL", "SANDBOX_FAULTS"]


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        pytest.param({"SECRET_KEY": "changethis"}, "SECRET_KEY", id="placeholder-secret"),
        pytest.param({"ENCRYPTION_KEYS": "not-a-key"}, "ENCRYPTION_KEYS", id="bad-fernet-key"),
        pytest.param({"DATABASE_URL": "mysql://x"}, "DATABASE_URL", id="unsupported-database"),
        pytest.param({"PORT": "eighty"}, "PORT", id="non-integer-port"),
        pytest.param({"WORKER_METRICS_PORT": "70000"}, "WORKER_METRICS_PORT", id="port-out-of-range"),
        pytest.param({"SANDBOX": "true"}, "SANDBOX", id="sandbox-in-production"),
        pytest.param({"LOG_FORMAT": "xml"}, "LOG_FORMAT", id="bad-log-format"),
    ],
)
def test_invalid_values_fail_naming_the_variable(tmp_path: Path, overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(production_env(**overrides), var_dir=tmp_path)


def test_exact_hosts_and_mww_base_url_are_settings(tmp_path: Path) -> None:
    settings = load_settings(
        production_env(EXACT_HOST_BE="http://127.0.0.1:9001/", MWW_BASE_URL="http://127.0.0.1:9002/v1"),
        var_dir=tmp_path,
    )
    assert settings.exact_hosts["be"] == "http://127.0.0.1:9001"
    assert settings.exact_hosts["nl"] == "https://start.exactonline.nl"
    assert settings.mww_base_url == "http://127.0.0.1:9002/v1"


def test_key_rotation_list_keeps_order(tmp_path: Path) -> None:
    keys = [Fernet.generate_key().decode() for _ in range(3)]
    settings = load_settings(production_env(ENCRYPTION_KEYS=",".join(keys)), var_dir=tmp_path)
    assert [str(k) for k in settings.encryption_keys] == keys
