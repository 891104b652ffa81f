"""``budget(...)`` limits end to end: the app with its usage store, a priced model on the fake
provider, spend read back from recorded cost. A caller's budget refuses with 429 (the word
"budget", the rule, the reset time, Retry-After) once recorded spend plus the request's estimate
would pass it; another caller is not affected; a backend's budget makes requests fall over."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

import falcon.testing

from fakes.provider import FakeProvider
from ops_support import ADMIN, AUTH, CLIENT_KEY, build_app, post_chat, wait_records

OTHER_KEY = "sk-ops-other-client-key-Q1w2E3r4"
PRICES = {"priced-model": {"input": 1000.0, "output": 1000.0}}  # per million tokens: cents a request


def backends(fake: FakeProvider) -> dict:
    paid = {"type": "openai", "base_url": f"{fake.url}/v1", "api_key": fake.key("openai")}
    return {"echo": {"type": "echo"}, "paid": paid, "spare": dict(paid)}


async def test_caller_budget_refuses_from_recorded_cost(tmp_path: Path, fake_provider: FakeProvider) -> None:
    rules = """rules:
  - name: capped
    route: paid:priced-model
    limits: budget(0.5, per=caller, window=day)
"""
    app = build_app(tmp_path, {"10.yaml": rules}, backends=backends(fake_provider), prices=PRICES,
                    auth={"api_keys": [CLIENT_KEY, OTHER_KEY], "admin_keys": [ADMIN["Authorization"][7:]]})
    text = "x" * 400  # ~100 prompt tokens: ~0.1 at the input price
    async with falcon.testing.ASGIConductor(app) as client:
        refused = None
        for sent in range(1, 12):
            result = await post_chat(client, text=text)
            if result.status_code != 200:
                refused = result
                break
            await wait_records(client, sent, headers=ADMIN)  # the cost is recorded before the next one
        assert refused is not None and refused.status_code == 429, "the budget never refused"
        message = refused.json["error"]["message"]
        assert "budget" in message and "'capped'" in message and "resets at" in message
        # Retry-After counts the seconds to the reset the message names (the day window's end, UTC).
        resets = datetime.strptime(re.search(r"resets at (\S+Z)", message).group(1), "%Y-%m-%dT%H:%M:%SZ")
        expected = resets.replace(tzinfo=timezone.utc).timestamp() - time.time()
        assert abs(int(refused.headers["retry-after"]) - expected) <= 5, (refused.headers["retry-after"], expected)
        assert resets.hour == resets.minute == resets.second == 0  # a day window ends at midnight
        records = [r for r in await wait_records(client, sent, headers=ADMIN) if r["status"] == 200]
        estimate = 100 * 1000.0 / 1e6  # the prompt at the input price; the answer is paid after
        spent = 0.0
        for record in reversed(records):  # oldest first: each was admitted with room for its estimate
            assert spent + estimate <= 0.5 + 1e-9
            spent += record["cost"]
        assert spent + estimate > 0.5  # and the refusal came when there was none
        # Another caller has a budget of its own.
        other = await post_chat(client, text=text, headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert other.status_code == 200, other.text


async def test_backend_budget_falls_over_to_the_next_target(tmp_path: Path, fake_provider: FakeProvider) -> None:
    rules = """rules:
  - name: paid-first
    route: paid:priced-model -> spare:free-model
    limits: budget(0.3, per=backend, window=hour)
"""
    app = build_app(tmp_path, {"10.yaml": rules}, backends=backends(fake_provider), prices=PRICES,
                    auth={"api_keys": [CLIENT_KEY], "admin_keys": [ADMIN["Authorization"][7:]]})
    async with falcon.testing.ASGIConductor(app) as client:
        answered = []
        for sent in range(1, 7):
            result = await post_chat(client, text="y" * 400)
            assert result.status_code == 200, result.text
            answered.append(result.json["model"])
            await wait_records(client, sent, headers=ADMIN)
        assert answered[0] == "priced-model" and answered[-1] == "free-model"
        spent = 0.0
        for record in reversed(await wait_records(client, 6, headers=ADMIN)):  # oldest first
            if record["backend"] == "paid":  # admitted only with room for its ~0.1 estimate
                assert spent + 0.1 <= 0.3 + 0.01
                spent += record["cost"]
        assert spent > 0  # the paid backend was used until its budget ran out
