"""The layout rules of docs/architecture.md, checked on every run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("app", "jobs") for p in (ROOT / d).rglob("*.py"))
FLASK_ALLOWED = {"app/__init__.py", "app/cli.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_modules_stay_under_300_lines(path):
    assert len(path.read_text().splitlines()) <= 300


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_flask_only_in_the_factory_the_cli_and_the_api(path):
    rel = _rel(path)
    uses_flask = any(m == "flask" or m.startswith(("flask.", "werkzeug")) for m in _imports(path))
    if uses_flask:
        assert rel in FLASK_ALLOWED or rel.startswith("app/api/"), rel


@pytest.mark.parametrize("path", [p for p in SOURCES if _rel(p).startswith("app/api/")], ids=_rel)
def test_the_api_never_imports_jobs_or_the_engine(path):
    for module in _imports(path):
        assert not module.startswith(("jobs", "app.engine")), module


@pytest.mark.parametrize("path", [p for p in SOURCES if _rel(p).startswith("app/engine/")],
                         ids=_rel)
def test_the_engine_imports_nothing_of_the_service(path):
    for module in _imports(path):
        assert not module.startswith(("redis", "rq", "flask", "werkzeug")), module
        assert not module.startswith("app.") or module.startswith("app.engine"), module


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_only_config_reads_the_environment(path):
    if _rel(path) == "app/config.py":
        return
    assert "os.environ" not in path.read_text() and "getenv(" not in path.read_text()


REDIS_ONLY = re.compile(
    r"\.(hget|hgetall|hset|hsetnx|hincrby|hmget|zadd|zrem|zcard|zrank|zrange|zrangebyscore|"
    r"zrevrange|zrevrangebyscore|eval|evalsha|register_script|scan_iter|rpush|lrange|ltrim|"
    r"sadd|srem|smembers|mget|pipeline|ping|expire|incr|incrby)\(")
REDIS_CLIENT = re.compile(r"\b(r|redis|rq|connection|client)\.(get|set|delete|exists)\(")
REDIS_ALLOWED = {"app/embedded_redis.py"}
"""It starts the server it pings, before any Services exist."""


@pytest.mark.parametrize("path", [p for p in SOURCES if not _rel(p).startswith("app/store/")],
                         ids=_rel)
def test_only_the_store_talks_to_redis(path):
    if _rel(path) in REDIS_ALLOWED:
        return
    text = path.read_text()
    found = REDIS_ONLY.findall(text) + [m[1] for m in REDIS_CLIENT.findall(text)]
    assert not found, f"{_rel(path)} calls Redis ({found}); add a function to app/store"


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_only_the_lifecycle_moves_a_request(path):
    if _rel(path) in ("app/lifecycle.py", "app/store/requests.py"):
        return
    assert "transition(" not in path.read_text(), _rel(path)


@pytest.mark.parametrize("path", [p for p in SOURCES if _rel(p).startswith("jobs/")], ids=_rel)
def test_jobs_import_no_other_job_module(path):
    own = "jobs." + path.stem
    for module in _imports(path):
        assert not module.startswith("jobs") or module == own, module


@pytest.mark.parametrize("path", [p for p in SOURCES if _rel(p).startswith("app/api/")], ids=_rel)
def test_blueprints_import_only_the_api_package_and_their_own_parts(path):
    # app/api/<x>.py may import app.api; app/api/<pkg>/<y>.py also its own app.api.<pkg>.*
    rel = _rel(path)
    own = "app.api." + rel.split("/")[2].removesuffix(".py") if rel.count("/") > 2 else None
    for module in _imports(path):
        if module.startswith("app.api") and module != "app.api":
            assert rel == "app/api/__init__.py" or (own and module.startswith(own)), (
                f"{rel} imports {module}")


def test_enqueues_and_job_ids_only_in_queues():
    for path in SOURCES:
        if _rel(path) == "app/queues.py":
            continue
        text = path.read_text()
        assert "queues.enqueue(" not in text, _rel(path)
        for prefix in ("submit-", "infer-", "settle-", "deliver-", "fal-cancel-"):
            assert f'"{prefix}' not in text and f"'{prefix}" not in text, (_rel(path), prefix)


def test_no_module_level_caches_outside_services():
    for path in SOURCES:
        if _rel(path) in ("app/services.py",) or _rel(path).startswith("app/engine/"):
            continue
        text = path.read_text()
        assert not re.search(r"^_\w*(clients|caches|engines)\b\s*[:=]", text, re.M), _rel(path)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return {m.split(".")[0] for m in out.strip().split(",")}


def test_workers_do_not_load_flask():
    loaded = _loaded_after("import jobs.settle, jobs.submit, jobs.sweep, app.store.requests")
    assert "flask" not in loaded and "werkzeug" not in loaded


def test_the_web_app_loads_no_model_runtime():
    loaded = _loaded_after("from app import create_app; create_app({'redis_url': "
                           "'redis://127.0.0.1:1/0'})")
    assert not loaded & {"cv2", "mediapipe", "onnxruntime", "jobs"}


def test_ruff_finds_nothing():
    run = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "app", "jobs",
                          "tests", "bench", "--output-format", "concise"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def _procfile() -> dict[str, str]:
    """Procfile name → the command its supervisor runs."""
    procs = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip():
            name, command = line.split(": ", 1)
            prefix = f"exec python -m app.supervise {name} '"
            assert command.startswith(prefix) and command.endswith("'"), line
            procs[name] = command[len(prefix):-1]
    return procs


def test_the_procfile_serves_every_queue_the_way_the_code_enqueues():
    from app import queues

    procs = _procfile()
    assert set(procs) == {"redis", "web", "inference", "cron", "falhosts", *queues.WORKERS}
    assert procs["falhosts"].endswith('"app:create_app(fal_hosts=True)"')
    served = []
    for name, wanted in queues.WORKERS.items():
        worker = procs[name].split("exec ", 1)[1].split()
        assert worker[:4] == ["rq", "worker", "-w", "jobs.fast_worker.Worker"], name
        assert "--with-scheduler" in worker and worker[worker.index("--serializer") + 1] == "json"
        assert int(worker[worker.index("--maintenance-interval") + 1]) == \
            queues.MAINTENANCE_INTERVAL
        assert tuple(worker[worker.index("app.rq_settings") + 1:]) == wanted, name
        served += wanted
    assert sorted(served) == sorted(queues.FAST_QUEUES)  # every fast queue, each once
    assert procs["inference"].endswith("exec python -m jobs.worker")
    assert procs["cron"].endswith("exec python -m jobs.cron")
