"""The workshop keys role (playbooks/workshop_keys.yml) run for real against the live proxy, with the file key store.

Each test uses its own guid, so the tests share one proxy without seeing each other's keys.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import openai
import pytest

from tests.support.agnosticd import Layout, assignments, callback_body, requester_email, showroom_pages

REPO = Path(__file__).resolve().parents[3]
ROLE = "rhpds.litemaas.ocp4_workload_litellm_virtual_keys"
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        found = RECAP.findall(self.output)
        self.ok, self.changed, self.unreachable, self.failed = (int(x) for x in found[-1]) if found else (-1, -1, -1, -1)

    def __repr__(self) -> str:
        return f"Run(rc={self.rc}, changed={self.changed}, failed={self.failed})\n{self.output[-4000:]}"


class Workshop:
    """One workshop (guid) driven through ansible-playbook rhpds.litemaas.workshop_keys, or, given an AgnosticD layout
    (tests/support/agnosticd.py), through AgnosticD's way of running the role as a workload."""

    def __init__(self, proxy, env: dict, tmp: Path, users: int | None = 3, layout: Layout | None = None, **extra):
        self.proxy = proxy
        self.layout = layout
        self.env = layout.env if layout else env
        self.tmp = tmp
        self.guid = "w" + uuid.uuid4().hex[:6]
        self.store_dir = tmp / "store"
        self.vars = {
            "guid": self.guid,
            **({} if users is None else {"num_users": users}),
            "litellm_url": proxy.url + "/",
            "litellm_master_key": proxy.master_key,
            "ocp4_workload_litellm_virtual_keys_models": ["stub-model"],
            "ocp4_workload_litellm_virtual_keys_store": "file",
            "ocp4_workload_litellm_virtual_keys_store_dir": str(self.store_dir),
            "ocp4_workload_litellm_virtual_keys_tpm_limit": 100000,
            "ocp4_workload_litellm_virtual_keys_rpm_limit": 600,
            "ocp4_workload_litellm_virtual_keys_max_budget": 5,
            "ocp4_workload_litellm_virtual_keys_budget_duration": "1d",
            "ocp4_workload_litellm_virtual_keys_max_parallel_requests": 8,
            "ocp4_workload_litellm_virtual_keys_duration": "2d",
            **extra,
        }
        self.n = 0

    @property
    def store_file(self) -> Path:
        return self.store_dir / f"{self.guid}.json"

    def store(self) -> dict:
        return json.loads(self.store_file.read_text())["keys"]

    def run(self, action: str = "provision", check: bool = False, **extra) -> Run:
        self.n += 1
        vars_file = self.tmp / f"vars-{self.n}.json"
        agnosticd = self.layout.extra_vars([ROLE], action) if self.layout else {}
        if self.layout:
            self.layout.reset(action)
        vars_file.write_text(json.dumps({**self.vars, "ACTION": action, **agnosticd, **extra}))
        vars_file.chmod(0o600)
        cmd = self.layout.command(vars_file) if self.layout else ["ansible-playbook", "rhpds.litemaas.workshop_keys", "-e", f"@{vars_file}"]
        if check:
            cmd.append("--check")
        proc = subprocess.run(cmd, cwd=str(self.tmp), env=self.env, capture_output=True, text=True, timeout=300, check=False)
        return Run(proc)

    def proxy_keys(self) -> dict:
        """alias -> key object, for every key of this workshop, read through every page of /key/list."""
        out, page = {}, 1
        while True:
            status, body = self.proxy.admin("GET", f"/key/list?return_full_object=true&size=100&page={page}")
            assert status == 200, body
            for key in body["keys"]:
                if (key.get("key_alias") or "").startswith(f"virtkey-{self.guid}"):
                    out[key["key_alias"]] = key
            if page >= (body["total_pages"] or 0):
                return out
            page += 1


def chat(proxy, secret: str) -> str:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0)
    resp = client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
    return resp.choices[0].message.content


def assert_no_secret(run: Run, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in run.output, "a secret appears in the ansible-playbook output"
    assert not re.search(r"sk-[A-Za-z0-9_-]{16,}", run.output), "something like a key appears in the output"


def assert_rhdp_multi_user_view(w: Workshop, proxy, store: dict, keys: dict, models: list, prefix: str = "") -> None:
    """Replay the published files through RHDP (workshopUserMode multi) and Showroom: the requester's e-mail shows one
    line per message and no key; each attendee's assignment, messages and Showroom page hold their own key and no
    other; data keys carry the runner's data_prefix."""
    body = callback_body(w.layout.output_dir)
    secrets = [e["key"] for e in store.values()]
    users = sorted(e["user"] for e in store.values())
    api = proxy.url + "/v1"
    assert body["message_body"] == []
    assert requester_email(body["messages"]) == body["messages"] == [
        f"LiteLLM API Endpoint: {api}",
        f"{len(users)} virtual keys, one per user; each user finds theirs in their own user data",
        f"Available Models: {', '.join(models)}",
        f"Key Duration: {w.vars['ocp4_workload_litellm_virtual_keys_duration']}"]
    shared = {k: v for k, v in body["data"].items() if k != "users"}
    assert shared == {
        f"{prefix}litellm_api_endpoint": proxy.url, f"{prefix}litellm_api_base_url": api,
        f"{prefix}litellm_available_models": models, f"{prefix}litellm_available_models_list": ", ".join(models),
        f"{prefix}litellm_key_duration": w.vars["ocp4_workload_litellm_virtual_keys_duration"],
        f"{prefix}litellm_user_count": len(users),
        f"{prefix}litellm_key_aliases": [f"virtkey-{w.guid}-{u}" for u in sorted(users, key=lambda u: int(u[4:]))],
        f"{prefix}litellm_user_ids": [f"{u}-{w.guid}@lab.opentlc.com" for u in sorted(users, key=lambda u: int(u[4:]))]}
    seats = assignments(body, "multi")
    pages = showroom_pages(body)
    assert sorted(seats) == sorted(pages) == users
    for user, seat in seats.items():
        alias = f"virtkey-{w.guid}-{user}"
        own = store[alias]["key"]
        assert seat["data"] == {
            f"{prefix}litellm_api_endpoint": proxy.url, f"{prefix}litellm_api_base_url": api,
            f"{prefix}litellm_available_models": models, f"{prefix}litellm_available_models_list": ", ".join(models),
            f"{prefix}litellm_key_duration": w.vars["ocp4_workload_litellm_virtual_keys_duration"],
            f"{prefix}litellm_virtual_key": own, f"{prefix}litellm_key_alias": alias,
            f"{prefix}litellm_key_id": keys[alias]["token"], f"{prefix}litellm_user_email": keys[alias]["user_id"]}
        assert seat["messages"] == [f"LiteMaaS API Base URL: {api}", f"LiteMaaS Virtual Key: {own}",
                                    f"Available Models: {', '.join(models)}",
                                    f"Key Duration: {w.vars['ocp4_workload_litellm_virtual_keys_duration']}"]
        assert pages[user] == {**shared, **seat["data"]}
        others = [s for s in secrets if s != own]
        assert not any(other in json.dumps([seat, pages[user]]) for other in others), f"{user} can see another key"
        assert chat(proxy, seat["data"][f"{prefix}litellm_virtual_key"])
    assert not any(secret in json.dumps([body["messages"], shared]) for secret in secrets + [proxy.master_key])


@pytest.fixture
def workshop(proxy, ansible_env, tmp_path):
    made = []

    def make(env=None, **kwargs) -> Workshop:
        w = Workshop(proxy, env or ansible_env, tmp_path / f"w{len(made)}", **kwargs)
        w.tmp.mkdir()
        made.append(w)
        return w

    yield make
    for w in made:  # leave nothing behind for the other tests
        if w.proxy_keys() or w.store_file.exists():
            w.run("destroy")


def test_three_users_lifecycle(workshop, proxy, ansible_env, tmp_path):
    w = workshop(users=3, layout=Layout("in-tree", tmp_path / "agnosticd", ansible_env))

    # Provision: three keys, one bulk call, in the store with mode 0600.
    first = w.run()
    assert first.rc == 0, first
    assert first.changed >= 2, first
    keys = w.proxy_keys()
    aliases = [f"virtkey-{w.guid}-user{n}" for n in (1, 2, 3)]
    assert sorted(keys) == aliases
    store = w.store()
    assert sorted(store) == aliases
    assert stat.S_IMODE(os.stat(w.store_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(w.store_dir).st_mode) == 0o700
    user_ids = {k["user_id"] for k in keys.values()}
    assert user_ids == {f"user{n}-{w.guid}@lab.opentlc.com" for n in (1, 2, 3)}
    for alias, key in keys.items():
        assert key["models"] == ["stub-model"]
        assert (key["tpm_limit"], key["rpm_limit"], key["max_parallel_requests"]) == (100000, 600, 8)
        assert float(key["max_budget"]) == 5.0 and key["budget_duration"] == "1d"
        assert key["expires"] is not None
        assert key["metadata"]["guid"] == w.guid and key["metadata"]["user"] == alias.rsplit("-", 1)[1]
        assert store[alias]["token"] == key["token"]
        assert store[alias]["key"].startswith("sk-")
        assert chat(proxy, store[alias]["key"])
    secrets = [e["key"] for e in store.values()]
    assert len(set(secrets)) == 3
    assert_no_secret(first, proxy.master_key, *secrets)

    # User info as RHDP shows it: the requester's messages and the shared data hold no key; each attendee only their own.
    published = w.layout.files()
    assert sorted(published) == ["provision-user-data.yaml", "provision-user-info.yaml"]
    assert_rhdp_multi_user_view(w, proxy, store, keys, models=["stub-model"])

    # Re-run: nothing changes, the same keys are handed out.
    again = w.run()
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert w.store() == store
    assert {a: k["token"] for a, k in w.proxy_keys().items()} == {a: k["token"] for a, k in keys.items()}
    assert_no_secret(again, proxy.master_key, *secrets)
    assert w.layout.files() == published  # AgnosticD reset the files; the re-run wrote them byte for byte again

    # Check mode with one more user: reports the change, writes nothing.
    predicted = w.run(check=True, num_users=4)
    assert predicted.rc == 0, predicted
    assert predicted.changed >= 1, predicted
    assert sorted(w.proxy_keys()) == aliases
    assert w.store() == store

    # A secret lost from the store is rotated (regenerate), not duplicated; the old secret stops working.
    lost = f"virtkey-{w.guid}-user2"
    doc = json.loads(w.store_file.read_text())
    del doc["keys"][lost]
    w.store_file.write_text(json.dumps(doc))
    healed = w.run()
    assert healed.rc == 0, healed
    assert healed.changed >= 1, healed
    rotated = w.store()
    assert sorted(rotated) == aliases
    assert rotated[lost]["key"] != store[lost]["key"]
    assert {a: rotated[a] for a in aliases if a != lost} == {a: store[a] for a in aliases if a != lost}
    after = w.proxy_keys()
    assert sorted(after) == aliases and after[lost]["token"] == rotated[lost]["token"]
    assert chat(proxy, rotated[lost]["key"])
    with pytest.raises(openai.AuthenticationError):
        chat(proxy, store[lost]["key"])
    assert_no_secret(healed, rotated[lost]["key"])

    # Extend by the workshop runtime (hours from now), then to a fixed time: every key gets the new expiry.
    before = datetime.now(timezone.utc)
    by_runtime = w.run("extend", ocp4_workload_litellm_virtual_keys_runtime="72")
    after = datetime.now(timezone.utc)
    assert by_runtime.rc == 0, by_runtime
    assert by_runtime.changed >= 1, by_runtime
    for key in w.proxy_keys().values():
        expires = datetime.fromisoformat(key["expires"].replace("Z", "+00:00"))
        assert before + timedelta(hours=72, seconds=-5) <= expires <= after + timedelta(hours=72, seconds=5)
    extended = w.run("extend", ocp4_workload_litellm_virtual_keys_expires="2031-01-02T03:04:05Z")
    assert extended.rc == 0, extended
    assert extended.changed >= 1, extended
    fixed = datetime(2031, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    # The management API takes a duration, so the stored expiry may be a second or two off.
    for key in w.proxy_keys().values():
        assert abs(datetime.fromisoformat(key["expires"].replace("Z", "+00:00")) - fixed) <= timedelta(seconds=5)
    assert chat(proxy, rotated[aliases[0]]["key"])

    # Destroy: no key and no store left; a second destroy changes nothing.
    gone = w.run("destroy")
    assert gone.rc == 0, gone
    assert gone.changed >= 1, gone
    assert w.proxy_keys() == {}
    assert not w.store_file.exists()
    assert w.run("destroy").changed == 0
    with pytest.raises(openai.AuthenticationError):
        chat(proxy, rotated[aliases[0]]["key"])


def test_fewer_users_then_destroy_reads_every_page_and_spares_other_workshops(workshop, proxy):
    w = workshop(users=3)
    assert w.run().rc == 0
    # Lowering num_users removes the extra attendee's key and its stored secret.
    fewer = w.run(num_users=2)
    assert fewer.rc == 0 and fewer.changed >= 1, fewer
    assert sorted(w.proxy_keys()) == [f"virtkey-{w.guid}-user1", f"virtkey-{w.guid}-user2"]
    assert sorted(w.store()) == [f"virtkey-{w.guid}-user1", f"virtkey-{w.guid}-user2"]
    # 120 newer keys (the list is newest first): the workshop's keys are now beyond the first page of 100.
    other = f"other-{uuid.uuid4().hex[:6]}"
    for n in range(120):
        status, body = proxy.admin("POST", "/key/generate", {"key_alias": f"{other}-{n}", "models": ["stub-model"]})
        assert status == 200, body
    # A neighbouring workshop whose guid starts with ours must survive.
    neighbour = f"virtkey-{w.guid}x-user1"
    status, body = proxy.admin("POST", "/key/generate", {"key_alias": neighbour})
    assert status == 200, body
    try:
        predicted = w.run("destroy", check=True)
        assert predicted.rc == 0 and predicted.changed >= 1, predicted
        assert sorted(w.proxy_keys()) == [f"virtkey-{w.guid}-user1", f"virtkey-{w.guid}-user2", neighbour] and w.store_file.exists()
        gone = w.run("destroy")
        assert gone.rc == 0, gone
        remaining = w.proxy_keys()
        assert sorted(remaining) == [neighbour]
    finally:
        proxy.admin("POST", "/key/delete", {"key_aliases": [f"{other}-{n}" for n in range(120)] + [neighbour]})


def test_single_user_key_for_the_requester(workshop, proxy):
    w = workshop(users=1, requester_email="owner@example.com")
    first = w.run()
    assert first.rc == 0, first
    keys = w.proxy_keys()
    assert list(keys) == [f"virtkey-{w.guid}"]
    key = keys[f"virtkey-{w.guid}"]
    assert key["user_id"] == "owner@example.com"
    assert key["metadata"]["owner"] == "owner@example.com"
    secret = w.store()[f"virtkey-{w.guid}"]["key"]
    assert chat(proxy, secret)
    assert_no_secret(first, secret, proxy.master_key)
    assert w.run().changed == 0
    gone = w.run("destroy")
    assert gone.rc == 0, gone
    assert w.proxy_keys() == {}
    assert not w.store_file.exists()


def test_check_mode_creates_nothing(workshop, proxy):
    w = workshop(users=2)
    predicted = w.run(check=True)
    assert predicted.rc == 0, predicted
    assert predicted.changed >= 1, predicted
    assert w.proxy_keys() == {}
    assert not w.store_file.exists()


def test_unknown_model_fails_before_creating_anything(workshop, proxy):
    w = workshop(users=2, ocp4_workload_litellm_virtual_keys_models=["no-such-model"])
    run = w.run()
    assert run.rc != 0
    assert "Unknown model(s): no-such-model" in run.output, run
    assert w.proxy_keys() == {}


@pytest.mark.skipif(not os.environ.get("LITEMAAS_WORKSHOP_SCALE"), reason="set LITEMAAS_WORKSHOP_SCALE=1000 to provision that many users")
def test_many_users_in_one_bulk_call(workshop, proxy):
    users = int(os.environ["LITEMAAS_WORKSHOP_SCALE"])
    w = workshop(users=users)
    first = w.run()
    assert first.rc == 0, first
    # One task made every key: no per-user task (the recap counts tasks, not users).
    assert first.ok < 30, first
    assert len(w.proxy_keys()) == users
    store = w.store()
    assert len(store) == users and len({e["key"] for e in store.values()}) == users
    again = w.run()
    assert again.rc == 0 and again.changed == 0, again
    gone = w.run("destroy")
    assert gone.rc == 0, gone
    assert w.proxy_keys() == {}


@pytest.mark.parametrize("kind, users, prefix", [("galaxy", 5, "cluster1_"), ("legacy", 2, "")])
def test_each_attendee_gets_only_their_key_in_every_agnosticd_layout(workshop, proxy, ansible_env, tmp_path, kind, users, prefix):
    """agnosticd.core installed with ansible-galaxy (no galaxy.yml; the runner's data_prefix in module_defaults), and
    legacy AgnosticD (the plugin in action_plugins next to the playbook): the default (auto) publishes through either."""
    layout = Layout(kind, tmp_path / kind, ansible_env)
    models = ["stub-model", "granite-3-8b"]
    w = workshop(users=users, layout=layout, agnosticd_data_prefix=prefix, ocp4_workload_litellm_virtual_keys_models=models)
    first = w.run()
    assert first.rc == 0, first
    store = w.store()
    keys = w.proxy_keys()
    assert sorted(keys) == sorted(store) == sorted(f"virtkey-{w.guid}-user{n}" for n in range(1, users + 1))
    expected_action = "agnosticd.core.agnosticd_user_info" if kind == "galaxy" else "agnosticd_user_info"
    assert f"User info: published with {expected_action}, users: " + ", ".join(f"user{n}" for n in range(1, users + 1)) in first.output
    assert_rhdp_multi_user_view(w, proxy, store, keys, models=models, prefix=prefix)
    assert_no_secret(first, proxy.master_key, *(e["key"] for e in store.values()))
    published = layout.files()
    again = w.run()
    assert again.rc == 0 and again.changed == 0, again
    assert layout.files() == published


def test_publishing_required_but_impossible_fails_before_any_key(workshop, proxy, ansible_env, tmp_path):
    w = workshop(users=2, layout=Layout("none", tmp_path / "none", ansible_env), ocp4_workload_litellm_virtual_keys_agnosticd_user_info=True)
    run = w.run()
    assert run.rc != 0
    assert ("ocp4_workload_litellm_virtual_keys_agnosticd_user_info is true, but neither agnosticd.core.agnosticd_user_info "
            "(the agnosticd.core collection) nor the legacy agnosticd_user_info action plugin can be called from this play") in run.output, run
    assert "No key was created or changed." in run.output
    assert w.proxy_keys() == {} and not w.store_file.exists()
    # auto without any plugin: the keys are made and the user info is left in the fact, as before.
    auto = w.run(ocp4_workload_litellm_virtual_keys_agnosticd_user_info="auto")
    assert auto.rc == 0, auto
    assert "User info: in the fact ocp4_workload_litellm_virtual_keys_user_info (agnosticd_user_info not used)" in auto.output
    assert len(w.proxy_keys()) == 2 and w.layout.files() == {}


def test_single_user_in_rhdp_workshop_user_modes(workshop, proxy, ansible_env, tmp_path):
    layout = Layout("in-tree", tmp_path / "agnosticd", ansible_env)
    api = proxy.url + "/v1"

    # workshopUserMode single: the catalog sets num_users 1; the attendee's assignment comes from users.user.
    single = workshop(users=1, layout=layout, requester_email="owner@example.com")
    run = single.run()
    assert run.rc == 0, run
    key = single.store()[f"virtkey-{single.guid}"]["key"]
    token = single.proxy_keys()[f"virtkey-{single.guid}"]["token"]
    assert_no_secret(run, key, proxy.master_key)
    body = callback_body(layout.output_dir)
    lines = [f"LiteMaaS API Base URL: {api}", f"LiteMaaS Virtual Key: {key}", "Available Models: stub-model", "Key Duration: 2d"]
    assert requester_email(body["messages"]) == body["messages"] == lines
    assert assignments(body, "single") == {"user": {"messages": lines, "data": {
        "litellm_api_endpoint": proxy.url, "litellm_api_base_url": api, "litellm_available_models": ["stub-model"],
        "litellm_available_models_list": "stub-model", "litellm_key_duration": "2d", "litellm_virtual_key": key,
        "litellm_key_alias": f"virtkey-{single.guid}", "litellm_key_id": token, "litellm_user_email": "owner@example.com"}}}
    assert chat(proxy, assignments(body, "single")["user"]["data"]["litellm_virtual_key"])

    # workshopUserMode none: no num_users; the one seat gets the whole data and messages, no users entry. With no_log
    # off the plugin prints what it publishes, as the real one does, key included.
    service = workshop(users=None, layout=layout, requester_email="owner@example.com", ocp4_workload_litellm_virtual_keys_no_log=False)
    run = service.run()
    assert run.rc == 0, run
    key = service.store()[f"virtkey-{service.guid}"]["key"]
    body = callback_body(layout.output_dir)
    assert "users" not in body["data"] and body["data"]["litellm_virtual_key"] == key
    lines = [f"LiteMaaS API Base URL: {api}", f"LiteMaaS Virtual Key: {key}", "Available Models: stub-model", "Key Duration: 2d"]
    assert assignments(body, "none") == {"": {"data": body["data"], "messages": lines}}
    assert f'"user.info: LiteMaaS Virtual Key: {key}"' in run.output
    assert "User info: published with agnosticd.core.agnosticd_user_info, users: none" in run.output
