"""Commands: ``flask keys create|list|revoke``, ``flask models download``, ``flask files
backfill``, ``flask dev-banner``."""

from __future__ import annotations

import os
import re
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app import store
from app.errors import BlockedURLError
from app.store import apikeys

keys = AppGroup("keys", help="Create, list and revoke API keys.")
models = AppGroup("models", help="Pose model weights.")
files = AppGroup("files", help="Stored files.")


def _services():
    return current_app.extensions["posehook"]


@keys.command("create")
@click.option("--name", default="", help="A label to recognise the key by.")
def keys_create(name: str) -> None:
    """Create an API key and print it (it is shown only this once)."""
    record, key = apikeys.create(_services().redis, name)
    click.echo(f"id:  {record.id}\nkey: {key}")


@keys.command("list")
def keys_list() -> None:
    """List API keys (ids and names; keys themselves are stored hashed)."""
    for record in apikeys.list_keys(_services().redis):
        state = "revoked" if record.revoked else "active"
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record.created_at))
        click.echo(f"{record.id}  {state:8}  {created}  {record.name}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key by id."""
    if not apikeys.revoke(_services().redis, key_id):
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"revoked {key_id}")


@models.command("download")
@click.option("--dir", "model_dir", default=None, help="Target directory (DWPOSE_MODEL_DIR).")
@click.option("--base-url", default=None, help="A mirror of the weights (default: their home).")
@click.option("--sha256", "sums", multiple=True, metavar="NAME=HEX",
              help="Expect this SHA-256 for a model or file (a mirror's own build, or a model "
                   "with no published hash).")
@click.option("--model", "names", multiple=True, metavar="NAME",
              help="A model of the registry (default: the configured detector and pose model).")
@click.option("--trust-first-download", is_flag=True,
              help="Install a model with no published SHA-256 and record the hash it has now.")
def models_download(model_dir: str | None, base_url: str | None, sums: tuple[str, ...],
                    names: tuple[str, ...], trust_first_download: bool) -> None:
    """Download DWPose-family weights and check their SHA-256."""
    from app.engine.dwpose.registry import MODELS
    from app.engine.dwpose.weights import ChecksumError, download_weights, read_sums

    checksums = {}
    for item in sums:
        name, _, digest = item.partition("=")
        if not name or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise click.BadParameter(f"{item!r} is not NAME=<64 hex digits>", param_hint="--sha256")
        checksums[name] = digest.lower()
    settings = _services().settings
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise click.BadParameter(f"unknown model {unknown[0]!r}; choose from: "
                                 + ", ".join(MODELS), param_hint="--model")
    target = model_dir or settings.dwpose_model_dir or os.path.join(settings.data_dir, "models")
    try:
        paths = download_weights(target, names=names or (settings.dwpose_detector,
                                                         settings.dwpose_pose),
                                 base_url=base_url, progress=True, checksums=checksums,
                                 trust_first=trust_first_download)
    except ChecksumError as exc:
        raise click.ClickException(str(exc)) from exc
    recorded = read_sums(target)
    for path in paths:
        digest = recorded.get(os.path.basename(path))
        click.echo(f"ok  {path}  sha256 {digest}" if digest else
                   f"unverified  {path}  (no SHA-256 known or recorded for it)")


@files.command("backfill")
@click.option("--ttl", type=click.IntRange(min=1), default=None,
              help="Seconds from now the files found get (default POSEHOOK_REQUEST_TTL: no "
                   "request still alive can point at a file that goes first).")
@click.option("--batch", type=click.IntRange(1, 1000), default=500, show_default=True,
              help="Files listed and indexed per Redis call.")
def files_backfill(ttl: int | None, batch: int) -> None:
    """Give every stored file with no owner one (files stored before retention existed)."""
    from app.retention import backfill

    done = backfill(_services(), ttl=ttl, batch=batch)
    click.echo(f"{done['seen']} stored file(s), {done['indexed']} newly indexed; the janitor "
               "deletes them once their expiry passes")


@click.command("dev-banner")
@with_appcontext
def dev_banner() -> None:
    """Wait for Redis, make sure a development key exists, print how to call the service."""
    svc = _services()
    deadline = time.time() + 30
    while True:
        try:
            store.reachable(svc.redis)
            break
        except Exception as exc:  # noqa: BLE001 - Redis is still starting
            if time.time() > deadline:
                raise click.ClickException(
                    f"Redis at {svc.settings.redis_url} does not answer") from exc
            time.sleep(0.3)
    path = os.path.join(svc.settings.data_dir, "dev-api-key")
    key = ""
    if os.path.exists(path):
        with open(path) as fh:
            key = fh.read().strip()
    if not key or apikeys.authenticate(svc.redis, key) is None:
        _, key = apikeys.create(svc.redis, "development")
        os.makedirs(svc.settings.data_dir, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
    base = svc.settings.public_base_url
    click.echo(
        f"\n  posehook is starting at {base}\n"
        f"  development API key (also in {path}):\n    {key}\n"
        f"  try:  curl -s -H 'Authorization: Key {key}' -H 'Content-Type: application/json' \\\n"
        f"          -H 'Prefer: wait=30' -d '{{\"input\": {{\"image_url\": \"...\"}}}}' "
        f"{base}/v1/requests\n"
        f"  or open {base.rstrip('/')}/playground#key={key} and drop a photo\n"
        f"  (the key stays in the browser tab: a #fragment is never sent to a server);\n"
        f"  the API reference is at {base.rstrip('/')}/docs\n")
    if svc.settings.provider == "fal":
        from app.outbound import Guard

        click.echo(f"  provider: fal ({svc.settings.fal_app}); fal calls back at "
                   f"{base.rstrip('/')}/webhooks/fal")
        try:
            Guard().check_url(base, "POSEHOOK_PUBLIC_BASE_URL")
        except BlockedURLError:  # not public, or not resolvable from here
            click.echo("  warning: that address is not public, so fal's callbacks cannot "
                       "reach it;\n  requests settle only by reconciliation, after "
                       f"{svc.settings.reconcile_after} s\n")


def register(app: Flask) -> None:
    """Add the commands to the app's CLI."""
    app.cli.add_command(keys)
    app.cli.add_command(models)
    app.cli.add_command(files)
    app.cli.add_command(dev_banner)
