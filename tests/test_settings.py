"""Settings are checked when the process starts: wrong JSON, wrong types, out-of-range values and
values that name something missing stop it with one line naming the variable, the value and the
rule (``SettingsError``); nothing waits for the first task to find out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixelmill.exceptions import SettingsError
from pixelmill.runtime import build_runtime
from pixelmill.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("PIXELMILL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIXELMILL_DATA_DIR", str(tmp_path / "data"))


def refused_at_load(monkeypatch: pytest.MonkeyPatch, **env: str) -> SettingsError:
    """The error loading the settings gives with ``env`` set."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    return err.value


def refused_at_start(monkeypatch: pytest.MonkeyPatch, **env: str) -> SettingsError:
    """The error the start gives with ``env`` set, once the settings loaded: what they name."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        build_runtime(load_settings(workers=0, screening="off"))
    return err.value


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PIXELMILL_OUTPUT_PROFILES", '{"x": {"size": "300x200"}}',
     """PIXELMILL_OUTPUT_PROFILES='{"x": {"size": "300x200"}}': profile 'x': size: must be [width, height] in pixels, e.g. [1200, 800]; got '300x200'"""),
    ("PIXELMILL_OUTPUT_PROFILES", '{"x": {"max_bytes": 200}}',
     """PIXELMILL_OUTPUT_PROFILES='{"x": {"max_bytes": 200}}': profile 'x': max_bytes: Input should be greater than or equal to 1024"""),
    ("PIXELMILL_OUTPUT_PROFILES", '{"web": {"format": "png"}}',
     """PIXELMILL_OUTPUT_PROFILES='{"web": {"format": "png"}}': profile 'web' is built in; give yours another name"""),
    ("PIXELMILL_OUTPUT_PROFILES", "{not json", "PIXELMILL_OUTPUT_PROFILES='{not json': not valid JSON (Expecting property name"),
    ("PIXELMILL_OUTPUT_PROFILE", "poster", "PIXELMILL_OUTPUT_PROFILE=poster: output_profile 'poster' is not a profile (original, web, jpeg, avif)"),
    ("PIXELMILL_PORT", "99999", "PIXELMILL_PORT=99999: Input should be less than or equal to 65535"),
    ("PIXELMILL_WORKERS", "lots", "PIXELMILL_WORKERS=lots: Input should be a valid integer"),
    ("PIXELMILL_PUBLIC_URL", "img.example.com", "PIXELMILL_PUBLIC_URL=img.example.com: must be an absolute http(s) URL"),
    ("PIXELMILL_FAULT_INJECTION", '[{"match": "x", "times": 0}]', "PIXELMILL_FAULT_INJECTION='[{\"match\": \"x\", \"times\": 0}]': fault rule 'times' must be a positive integer"),
    ("PIXELMILL_ENGINE_COST_PER_SECOND", '{"procedural": -1}', "PIXELMILL_ENGINE_COST_PER_SECOND='{\"procedural\": -1}': a cost per second is >= 0 (procedural)"),
    ("PIXELMILL_ENGINE", "sdxl", "PIXELMILL_ENGINE=sdxl: engine 'sdxl' is not one of the configured engines (procedural)"),
    ("PIXELMILL_STORAGE", "s3", "PIXELMILL_STORAGE=s3: storage s3 needs s3_bucket"),
    ("PIXELMILL_API_KEY", "short-secret", "PIXELMILL_API_KEY=<hidden>: String should have at least 16 characters"),
])
def test_a_bad_setting_is_one_line_naming_variable_value_and_rule(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    err = refused_at_load(monkeypatch, **{name: value})
    assert str(err).startswith(expected), str(err)
    assert "\n" not in str(err) and err.variable == name


def test_secrets_inside_json_values_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    engines = {"mj": {"kind": "remote", "base_url": "https://up.example.com", "api_key": "sk-very-secret", "poll_seconds": 0}}
    err = refused_at_start(monkeypatch, PIXELMILL_ENGINES=json.dumps(engines), PIXELMILL_ENGINE="mj")
    assert "sk-very-secret" not in str(err) and '"api_key": "***"' in str(err)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PIXELMILL_ENGINES", '{"procedural": {"kind": "procedural", "delay": 3}}', "engine 'procedural': unknown settings delay"),
    ("PIXELMILL_ENGINES", '{"procedural": {"kind": "painter"}}', "engine 'procedural': kind must be one of procedural, remote, diffusers"),
    ("PIXELMILL_ENGINES", ('{"procedural": {"kind": "procedural"}, "mj": {"kind": "remote", "base_url": "https://up.example.com", '
                           '"api_key": "k", "poll_seconds": "fast"}}'),
     "engine 'mj': remote engine: poll_seconds: Input should be a valid number"),
    ("PIXELMILL_ENGINES", '{"procedural": {"kind": "procedural"}, "sd": {"kind": "diffusers", "model": "m", "steps": "many"}}',
     "engine 'sd': steps: Input should be a valid integer"),
    ("PIXELMILL_PRICES_FILE", "/nonexistent/prices.json", "price file /nonexistent/prices.json: [Errno 2]"),
    ("PIXELMILL_SCREENING_FILE", "/nonexistent/screening.json", "screening file /nonexistent/screening.json: [Errno 2]"),
    ("PIXELMILL_MODERATION_FILE", "/nonexistent/moderation.json", "moderation file /nonexistent/moderation.json: [Errno 2]"),
    ("PIXELMILL_DATABASE_URL", "postgresql://someone:hunter2@127.0.0.1:1/x", "(psycopg.OperationalError) connection failed"),
])
def test_what_a_setting_names_is_checked_before_the_process_serves(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    err = refused_at_start(monkeypatch, **{name: value})
    assert err.variable == name and expected in err.rule, str(err)
    assert "hunter2" not in str(err) and "\n" not in str(err)


def test_settings_within_their_limits_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELMILL_OUTPUT_PROFILES", '{"brand": {"format": "jpeg", "size": [1200, 800], "fit": "cover", "max_bytes": 1024}}')
    monkeypatch.setenv("PIXELMILL_OUTPUT_PROFILE", "brand")
    monkeypatch.setenv("PIXELMILL_PUBLIC_URL", "https://img.example.com/")
    settings = load_settings(port=9000)
    assert settings.output_profile == "brand" and settings.port == 9000 and settings.public_url == "https://img.example.com"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PIXELMILL_FETCH_ALLOW", '["10.0.0.0/33"]', "PIXELMILL_FETCH_ALLOW='[\"10.0.0.0/33\"]': '10.0.0.0/33' is not a network or address"),
    ("PIXELMILL_FETCH_ALLOW", '["images internal"]', "'images internal' is not a host name, an address or a network"),
    ("PIXELMILL_FAULT_INJECTION", '[{"match": "x", "retryable": "false"}]', "fault rule 'retryable' must be true or false, got 'false'"),
])
def test_values_inside_json_settings_are_checked_by_type(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    assert expected in str(refused_at_load(monkeypatch, **{name: value}))


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("PIXELMILL_MODERATION_FILE", '{"global": {"brand": "rival"}}', "global.brand: Input should be a valid list"),
    ("PIXELMILL_MODERATION_FILE", '{"tenants": ["kids"]}', "tenants: Input should be a valid dictionary"),
    ("PIXELMILL_SCREENING_FILE", '{"tenants": ["kids"]}', "tenants must be a JSON object"),
    ("PIXELMILL_SCREENING_FILE", '{"tenants": {"kids": []}}', "tenants.kids: needs"),
])
def test_setting_files_of_the_wrong_shape_stop_the_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, content: str,
                                                         expected: str) -> None:
    path = tmp_path / "file.json"
    path.write_text(content)
    err = refused_at_start(monkeypatch, **{name: str(path)})
    assert err.variable == name and expected in err.rule, str(err)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PIXELMILL_DATABASE_URL", "postgresql//bob:hunter2@db/x", "PIXELMILL_DATABASE_URL=postgresql//***@db/x"),
    ("PIXELMILL_DATABASE_URL", "postgresql://bob:hunter2@db:notaport/x", "PIXELMILL_DATABASE_URL=postgresql://***@db:notaport/x"),
    ("PIXELMILL_STORAGE_DIR", "/proc/no-such-place", "PIXELMILL_STORAGE_DIR=/proc/no-such-place"),
    ("PIXELMILL_ENGINES", ('{"procedural": {"kind": "procedural"}, "mj": {"kind": "remote", "base_url": "https://bob:pw123@up.example.com", '
                           '"api_key": "k", "poll_seconds": 0}}'),
     '"base_url": "https://***@up.example.com"'),
])
def test_malformed_urls_and_folders_name_their_setting_and_hide_passwords(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                                          expected: str) -> None:
    err = refused_at_start(monkeypatch, **{name: value})
    assert expected in str(err), str(err)
    assert "pw123" not in str(err) and "hunter2" not in str(err) and "\n" not in str(err)
