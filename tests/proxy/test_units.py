"""Pure logic of the proxy layers, imported directly (no processes)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "proxy"))

from litemaas_proxy import auth, config, durations, routing  # noqa: E402
from litemaas_proxy.errors import ProxyError  # noqa: E402
from litemaas_proxy.limits import Descriptor, build_args, descriptors_for  # noqa: E402
from litemaas_proxy.spend import compute_cost  # noqa: E402

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 23, 40, 10, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize("value,expected", [("30s", (30, "s")), ("12h", (12, "h")), ("30d", (30, "d")), ("1w", (1, "w")), ("1mo", (1, "mo")),
                                            ("5m", (5, "m"))])
def test_parse_duration(value, expected):
    assert durations.parse_duration(value) == expected


@pytest.mark.parametrize("value", ["30", "abc", "1y", "", None, 30, "-1", "1.5h"])
def test_parse_duration_rejects(value):
    with pytest.raises(durations.DurationError):
        durations.parse_duration(value)


def test_duration_after():
    assert durations.duration_after("30s", NOW) == datetime(2026, 11, 26, 23, 40, 40, tzinfo=UTC)
    assert durations.duration_after("1mo", NOW) == datetime(2026, 12, 26, 23, 40, 10, tzinfo=UTC)
    assert durations.duration_after("1w", NOW) == datetime(2026, 12, 3, 23, 40, 10, tzinfo=UTC)
    assert durations.duration_after("1mo", datetime(2026, 1, 31, tzinfo=UTC)) == datetime(2026, 2, 28, tzinfo=UTC)


@pytest.mark.parametrize("value,expected", [
    ("1d", datetime(2026, 11, 27, tzinfo=UTC)),
    ("7d", datetime(2026, 11, 30, tzinfo=UTC)),  # next Monday
    ("1w", datetime(2026, 11, 30, tzinfo=UTC)),
    ("30d", datetime(2026, 12, 1, tzinfo=UTC)),  # first of next month
    ("1mo", datetime(2026, 12, 1, tzinfo=UTC)),
    ("3d", datetime(2026, 11, 29, tzinfo=UTC)),
    ("1h", datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),
    ("15m", datetime(2026, 11, 26, 23, 45, tzinfo=UTC)),
    ("30s", datetime(2026, 11, 26, 23, 40, 30, tzinfo=UTC)),
])
def test_budget_reset_alignment(value, expected):
    assert durations.next_budget_reset(value, NOW) == expected


def test_load_settings(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: 'http://x/v1'}\n"
                   "general_settings:\n  master_key: os.environ/MY_MASTER\n")
    s = config.load_settings(str(cfg), env={"MY_MASTER": "ignored-env-is-os"})
    assert s.model_list[0]["model_name"] == "m"
    s = config.load_settings(None, env={"REDIS_HOST": "r", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss", "DATABASE_URL": "postgresql://x",
                                        "LITELLM_MASTER_KEY": "sk-m"})
    assert s.redis_url == "redis://:p%40ss@r:6380/0" and s.database_url == "postgresql://x" and s.master_key == "sk-m"
    assert config.load_settings(None, env={"REDIS_URL": "redis://u"}).redis_url == "redis://u"


def test_key_helpers():
    key = auth.generate_key()
    assert key.startswith("sk-") and len(key) == 25
    assert auth.hash_if_needed(key) == auth.hash_token(key) and len(auth.hash_token(key)) == 64
    assert auth.hash_if_needed("ab" * 32) == "ab" * 32
    assert auth.key_name(key) == "sk-..." + key[-4:]


@pytest.mark.parametrize("headers,expected", [
    ({"x-litellm-api-key": "sk-a"}, "sk-a"),
    ({"x-litellm-api-key": "Bearer sk-a"}, "sk-a"),
    ({"Authorization": "Bearer sk-b"}, "sk-b"),
    ({"Authorization": "bearer sk-b", "x-litellm-api-key": "sk-a"}, "sk-a"),
    ({"API-Key": "sk-c"}, "sk-c"),
    ({"x-api-key": "sk-d"}, "sk-d"),
    ({}, None),
])
def test_credential_from_headers(headers, expected):
    assert auth.credential_from_headers(headers) == expected


def test_malformed_authorization():
    with pytest.raises(ProxyError) as exc:
        auth.credential_from_headers({"Authorization": "sk-a"})
    assert exc.value.status == 401


def test_deployment_and_router():
    dep = routing.Deployment("id1", "pub", {"model": "openai/served", "api_base": "http://h/v1/", "api_key": "k", "input_cost_per_token": 1e-6,
                                            "output_cost_per_token": 2e-6}, {}, False)
    assert dep.upstream_model == "served" and dep.api_base == "http://h/v1" and dep.headers["Authorization"] == "Bearer k"
    assert compute_cost(dep, 10, 5) == pytest.approx(2e-5)
    assert "api_key" not in dep.public_params()
    other = routing.Deployment("id2", "pub", {"model": "meta-llama/Llama-3"}, {}, True)
    assert other.upstream_model == "meta-llama/Llama-3"
    r = routing.Router(cooldown_time=60, allowed_fails=1)
    r.set_deployments([dep], [other])
    firsts = {r.candidates("pub")[0].id for dummy in range(4)}
    assert firsts == {"id1", "id2"}  # round robin
    r.report_failure(dep)
    assert all(r.candidates("pub")[0].id == "id2" for dummy in range(4))  # cooling down goes last
    assert r.candidates("missing") is None


def test_limit_descriptors():
    descs = descriptors_for({"token": "h", "rpm_limit": 2, "tpm_limit": None, "max_parallel_requests": None}, {"user_id": "u"}, None)
    assert [(d.name, d.value, d.rpm, d.tpm, d.par) for d in descs] == [("api_key", "h", 2, -1, -1)]
    keys, argv = build_args([Descriptor("user", "u", 1, 2, 3)], 60)
    assert keys == ["litemaas:rl:user:u:w", "litemaas:rl:user:u:l"] and argv == [60, 1, 1, 2, 3]


def test_sse_event_boundaries():
    from litemaas_proxy.api.relay import event_end

    assert event_end(b"data: a\n\ndata: b\n\n") == 9
    assert event_end(b"data: a\r\n\r\ndata: b") == 11
    assert event_end(b"data: a\r\n") == -1
    assert event_end(b"data: a\r\n\r\n") == 11


def test_sealed_model_params_round_trip_and_format():
    import base64
    import hashlib

    import nacl.bindings

    from litemaas_proxy.sealed import ParamSealer, SealedValueError

    sealer = ParamSealer("salt-key-1")
    params = {"model": "openai/m", "api_key": "sk-upstream-secret", "rpm": 10, "api_base": "http://vllm:8000/v1"}
    sealed = sealer.seal(params)
    assert sealed["rpm"] == 10 and all(sealed[k] != params[k] for k in ("model", "api_key", "api_base"))
    assert "sk-upstream-secret" not in repr(sealed)
    assert sealer.open(sealed) == params
    assert sealer.plain_values(sealed) == [] and sealer.plain_values(params) == ["model", "api_key", "api_base"]
    assert sealer.open(params) == params  # rows written before sealing are used as they are
    # A value sealed under another key is refused by name, never used as it is (and never sealed again).
    with pytest.raises(SealedValueError) as err:
        ParamSealer("another-key").open(sealed, "granite")
    assert str(err.value).startswith("model 'granite': litellm_params.api_base, litellm_params.api_key, litellm_params.model is sealed with "
                                     "another key and cannot be opened with this proxy's LITELLM_SALT_KEY")
    assert ParamSealer("another-key").unopenable(sealed) == ["model", "api_key", "api_base"]
    assert ParamSealer(None).seal(params) == params  # without any key nothing is sealed
    # The stored form is LiteLLM's: URL-safe base64(nonce + secretbox) under SHA-256 of the key, built here with
    # libsodium directly; standard base64 (what this proxy wrote before) opens too.
    key = hashlib.sha256(b"salt-key-1").digest()
    nonce = bytes([251] * 24)  # bytes that encode to "-" and "_" in URL-safe base64 and to "+" and "/" in standard
    box = nacl.bindings.crypto_secretbox(b"http://upstream:8080/v1", nonce, key)
    url_safe, standard = base64.urlsafe_b64encode(nonce + box).decode(), base64.b64encode(nonce + box).decode()
    assert "_" in url_safe and "/" in standard
    assert sealer.open_value(url_safe) == "http://upstream:8080/v1" and sealer.open_value(standard) == "http://upstream:8080/v1"
    written = sealer.seal_value("x")
    assert set(written) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
    raw = base64.urlsafe_b64decode(written)
    assert nacl.bindings.crypto_secretbox_open(raw[24:], raw[:24], key) == b"x"
    # Hexadecimal text of a sealed value's length (upstream keys often are) is plain.
    assert sealer.plain_values({"api_key": "ab" * 32}) == ["api_key"]


def test_litellm_timestamps_read_aware_and_written_as_utc():
    from datetime import datetime, timedelta, timezone

    from litemaas_proxy.db import decode_timestamp, encode_timestamp

    paris = timezone(timedelta(hours=1))
    aware = datetime(2026, 1, 15, 11, 30, tzinfo=paris)
    assert encode_timestamp(aware) == encode_timestamp(datetime(2026, 1, 15, 10, 30))  # naive means UTC
    assert decode_timestamp(encode_timestamp(aware)) == datetime(2026, 1, 15, 10, 30, tzinfo=timezone.utc)
    assert decode_timestamp((2**63 - 1,)) == datetime.max.replace(tzinfo=timezone.utc)  # 'infinity'
    with pytest.raises(TypeError, match="expected a datetime for a timestamp column, got str"):
        encode_timestamp("2026-01-15")


@pytest.mark.parametrize("path,expected", [
    ("/key/sk-0123456789abcdef/regenerate", "/key/sk-...cdef/regenerate"),
    ("/key/sk-short/regenerate", "/key/sk-.../regenerate"),
    ("/key/sk-a/regenerate/sk-0123456789abcdefXYZ", "/key/sk-.../regenerate/sk-...fXYZ"),
    ("/v1/chat/completions", "/v1/chat/completions"),
])
def test_access_log_masks_keys_in_paths(path, expected):
    from litemaas_proxy.accesslog import mask_path

    assert mask_path(path) == expected


def test_access_log_names_the_caller_without_its_key():
    from litemaas_proxy.accesslog import caller_label

    token = "ab" * 32
    assert caller_label(None) == "-"
    assert caller_label(auth.MASTER) == "master"
    assert caller_label(auth.AuthEntry(token, {"key_alias": "ws-user1"}, None, None, 0.0)) == "ws-user1"
    assert caller_label(auth.AuthEntry(token, {"key_alias": None}, None, None, 0.0)) == "token:" + token[:12]


def test_access_log_setting(tmp_path):
    assert config.load_settings(env={}).access_log is False
    cfg = tmp_path / "config.yaml"
    cfg.write_text("general_settings:\n  access_log: true\n")
    assert config.load_settings(str(cfg), env={}).access_log is True
    assert config.load_settings(str(cfg), env={"LITEMAAS_ACCESS_LOG": "no"}).access_log is False
    assert config.load_settings(env={"LITEMAAS_ACCESS_LOG": "true"}).access_log is True
    assert config.load_settings(env={"LITEMAAS_ACCESS_LOG": "0"}).access_log is False
