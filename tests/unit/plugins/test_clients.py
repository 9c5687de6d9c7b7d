from __future__ import annotations

import socket

import jwt
import pytest
from ansible_collections.rhpds.litemaas.plugins.module_utils import portal_api, proxy_api

from tests.support.services import free_port


@pytest.mark.parametrize("raw,message", [
    (b'{"error":{"message":"max_budget cannot be negative. Received: -1","type":"bad_request_error","param":"max_budget","code":"400"}}',
     "max_budget cannot be negative. Received: -1"),
    (b'{"detail":[{"type":"missing","loc":["body","key"],"msg":"Field required"}]}', "body.key: Field required"),
    (b'{"detail":{"error":"User not found, passed user_id=x"}}', "User not found, passed user_id=x"),
    (b"Internal Server Error", "Internal Server Error"),
    (b"", ""),
])
def test_server_message_from_both_error_shapes(raw, message):
    assert proxy_api.server_message(raw) == message


@pytest.mark.parametrize("status,cls", [(401, proxy_api.ProxyAuthError), (403, proxy_api.ProxyAuthError), (404, proxy_api.ProxyNotFoundError),
                                        (400, proxy_api.ProxyBadRequestError), (422, proxy_api.ProxyBadRequestError),
                                        (500, proxy_api.ProxyServerError), (503, proxy_api.ProxyServerError)])
def test_error_classes(status, cls):
    err = proxy_api.error_class_for(status)("POST", "/key/generate", status, "boom\nsecond line")
    assert isinstance(err, proxy_api.ProxyApiError)
    assert str(err) == f"POST /key/generate failed with HTTP {status}: boom second line"


def test_reads_are_retried_with_backoff_when_refused():
    waits = []
    client = proxy_api.ProxyClient(f"http://127.0.0.1:{free_port()}", "sk-x", request_timeout=2, sleep=waits.append)
    with pytest.raises(proxy_api.ProxyConnectionError) as err:
        client.get("/key/list")
    assert waits == [0.25, 0.5, 1.0]
    assert "GET /key/list failed: cannot reach" in str(err.value)


def test_a_write_whose_fate_is_unknown_is_not_sent_again():
    # A listening socket that never answers: the request is sent, the response never comes.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        waits = []
        client = proxy_api.ProxyClient(f"http://127.0.0.1:{port}", "sk-x", request_timeout=0.3, sleep=waits.append, max_attempts=3)
        with pytest.raises(proxy_api.ProxyConnectionError):
            client.post("/key/generate", {"key_alias": "a"})
        assert waits == [], "a create that may have been applied must not be retried"
        with pytest.raises(proxy_api.ProxyConnectionError):
            client.get("/key/list")
        assert len(waits) == 2, "reads are retried"


def test_retry_budget_bounds_the_total_wait():
    waits = []
    client = proxy_api.ProxyClient(f"http://127.0.0.1:{free_port()}", "sk-x", max_attempts=10, retry_budget=0.6, sleep=waits.append)
    with pytest.raises(proxy_api.ProxyConnectionError):
        client.get("/key/info")
    assert sum(waits) <= 0.6


def test_hash_key_matches_the_proxy_token_convention():
    assert proxy_api.hash_key("sk-abc") == "1460db1b6902f8b1fc2a40d9381a24d0fd22c3bc1b2c6f999c521da73776fbe0"
    assert proxy_api.hash_key("f" * 64) == "f" * 64


def test_minted_jwt_verifies_with_pyjwt():
    claims = portal_api.admin_claims("8d6c3f0e-1111-4a2b-9c3d-000000000001")
    token = portal_api.mint_jwt("a-portal-jwt-secret-of-32-bytes-or-more", claims, lifetime=60, now=1_900_000_000)
    claims = jwt.decode(token, "a-portal-jwt-secret-of-32-bytes-or-more", algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims == {"userId": "8d6c3f0e-1111-4a2b-9c3d-000000000001", "username": "rhpds.litemaas", "email": "rhpds.litemaas@localhost",
                      "roles": ["admin", "user"], "iat": 1_900_000_000, "exp": 1_900_000_060}
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "other", algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})


def test_portal_client_needs_credentials():
    with pytest.raises(portal_api.PortalError, match="portal_jwt_user_id is required"):
        portal_api.PortalClient("https://portal", jwt_secret="x")
    with pytest.raises(portal_api.PortalError, match="portal_jwt_secret .* or portal_admin_key is required"):
        portal_api.PortalClient("https://portal")
    assert portal_api.PortalClient("https://portal", admin_key="ltm_admin_x").token == "ltm_admin_x"


@pytest.mark.parametrize("current,role,state,expected", [
    (["user"], "admin", "present", ["user", "admin"]),
    (["user", "admin"], "admin", "present", ["user", "admin"]),
    ([], "adminReadonly", "present", ["admin-readonly", "user"]),
    (["user", "admin", "admin-readonly"], "admin", "absent", ["user", "admin-readonly"]),
    (["user"], "admin", "absent", ["user"]),
])
def test_roles_after(current, role, state, expected):
    assert portal_api.roles_after(current, role, state) == expected
