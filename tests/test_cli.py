"""Commands: API keys are created, listed and revoked from the CLI."""

from __future__ import annotations

from app.store import apikeys


def test_keys_create_list_revoke(app, services):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["keys", "create", "--name", "backend"])
    assert created.exit_code == 0, created.output
    key = created.output.split("key: ")[1].strip()
    record = apikeys.authenticate(services.redis, key)
    assert record is not None and record.name == "backend"
    listed = runner.invoke(args=["keys", "list"])
    assert record.id in listed.output and "active" in listed.output and key not in listed.output
    assert runner.invoke(args=["keys", "revoke", record.id]).exit_code == 0
    assert apikeys.authenticate(services.redis, key) is None
    assert runner.invoke(args=["keys", "revoke", "key_nope"]).exit_code != 0


def test_dev_banner_makes_one_key_and_reuses_it(app, services):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["dev-banner"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(args=["dev-banner"])
    key = open(f"{services.settings.data_dir}/dev-api-key").read().strip()
    assert key in first.output and key in again.output
    assert apikeys.authenticate(services.redis, key) is not None
    assert len(apikeys.list_keys(services.redis)) == 1


def test_dev_banner_warns_when_fal_cannot_call_back(overrides, redis):
    from app import create_app

    app = create_app({**overrides, "provider": "fal", "fal_key": "k"})
    out = app.test_cli_runner().invoke(args=["dev-banner"]).output
    assert "fal calls back at http://127.0.0.1:" in out and "/webhooks/fal" in out
    assert "not public" in out and "reconciliation" in out
