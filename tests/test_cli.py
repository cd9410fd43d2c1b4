"""The CLI: exit codes and the exact lines a person reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import redis
from click.testing import CliRunner
from kubetaskqueue import Manager, RedisUnavailableError, Task, __version__
from kubetaskqueue.cli import cli
from kubetaskqueue.keys import TopicKeys


@pytest.fixture
def url(redis_url: str) -> str:
    """A real redis-server: the CLI refuses to change memory://, which dies with it."""
    return redis_url


def run(*args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin, env=env)
    return result.exit_code, result.stdout, result.stderr


def make_dead(url: str, n: int, error: str = "boom") -> Manager:
    m = Manager(url, poll_interval_s=0.05)

    @m.processor("email")
    def fail(task: object) -> None:
        raise RuntimeError(error)

    m.enqueue_many("email", [{"i": i} for i in range(n)])
    m.run(burst=True)
    return m


def test_enqueue_prints_id_and_stats_json_has_the_contract_shape(url: str) -> None:
    code, out, _ = run("--redis-url", url, "enqueue", "email", '{"to": "a@b.c"}',
                       "--retries", "3", "--id", "abc")
    assert (code, out) == (0, "abc\n")
    code, out, _ = run("--redis-url", url, "stats", "--json")
    assert code == 0
    assert json.loads(out) == {"topics": {"email": {
        "input": 1, "scheduled": 0, "work": 0, "dead": 0, "enqueued": 1, "started": 0,
        "retried": 0, "failed": 0, "completed": 0, "dead_dropped": 0,
        "paused": False}}, "managers": 0}


def test_stats_table(url: str) -> None:
    run("--redis-url", url, "enqueue", "email", "{}", "--delay", "60")
    code, out, _ = run("--redis-url", url, "stats")
    assert code == 0
    assert out.splitlines() == [
        "topic  input  scheduled  work  dead  enqueued  started  retried  failed  completed",
        "email      0          1     0     0         1        0        0       0          0",
        "live managers: 0",
    ]


def test_usage_errors_exit_2(url: str) -> None:
    code, _, err = run("--redis-url", url, "enqueue", "email", "{not json")
    assert code == 2 and "not valid JSON" in err
    code, _, err = run("--redis-url", url, "dead", "requeue", "email")
    assert code == 2 and "give task ids or --all" in err
    code, _, err = run("worker", "no_such_module_xyz:manager")
    assert code == 2 and "cannot import module 'no_such_module_xyz'" in err
    code, _, err = run("worker", "kubetaskqueue.cli:nothing")
    assert code == 2 and "module 'kubetaskqueue.cli' has no attribute 'nothing'" in err
    code, _, err = run("worker", "kubetaskqueue.cli:cli")
    assert code == 2 and "not a kubetaskqueue Manager" in err


def test_runtime_errors_exit_1_with_one_line(url: str) -> None:
    run("--redis-url", url, "enqueue", "email", "{}", "--id", "same")
    code, out, err = run("--redis-url", url, "enqueue", "email", "{}", "--id", "same")
    assert code == 1 and out == ""
    assert err == "error: task id 'same' already exists in topic 'email'; nothing was enqueued\n"
    code, _, err = run("--redis-url", "redis://127.0.0.1:1/0", "stats")
    assert code == 1 and err.startswith("error: Redis at redis://127.0.0.1:1/0 failed:")
    assert err.endswith("; is it running? (set KUBETASKQUEUE_REDIS_URL)\n")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_only_a_connection_error_asks_whether_redis_runs(url: str) -> None:
    """A server that answers is running: its refusal needs no hint."""
    out_of_range = url.rsplit("/", 1)[0] + "/99"
    for args in (["stats"], ["enqueue", "email", "{}"], ["dead", "list", "email"]):
        code, _, err = run("--redis-url", out_of_range, *args)
        assert code == 1 and err.count("\n") == 1, err
        assert err.endswith("failed: DB index is out of range\n"), err


def test_dead_list_requeue_purge(url: str) -> None:
    make_dead(url, 3, error="SMTP timeout")
    code, out, _ = run("--redis-url", url, "dead", "list", "email", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 3
    assert all("SMTP timeout" in r["last_error"] and r["attempts"] == 1 for r in rows)
    assert sorted(r["payload"]["i"] for r in rows) == [0, 1, 2]  # JSON, not a JSON string
    code, out, _ = run("--redis-url", url, "dead", "list", "email", "--error", "nope")
    assert out == "0 dead task(s)\n"
    code, out, _ = run("--redis-url", url, "dead", "requeue", "email", "--all", "--dry-run")
    assert out == "would requeue 3 task(s)\n"
    code, out, _ = run("--redis-url", url, "dead", "requeue", "email", rows[0]["id"])
    assert (code, out) == (0, "requeued 1 task(s)\n")
    code, out, _ = run("--redis-url", url, "dead", "purge", "email", "--all")
    assert (code, out) == (0, "purged 2 task(s)\n")
    stats = json.loads(run("--redis-url", url, "stats", "--json")[1])["topics"]["email"]
    assert (stats["input"], stats["dead"]) == (1, 0)


def test_dead_requeue_filters_by_error(url: str) -> None:
    make_dead(url, 2, error="SMTP timeout")
    code, out, _ = run("--redis-url", url, "dead", "requeue", "email", "--all", "--error",
                       "timeout")
    assert code == 0
    assert out == "requeued 2 task(s)\n"


def test_demo_runs_to_completion() -> None:
    code, out, _ = run("demo", "--tasks", "60")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["topic", "input", "scheduled", "work", "dead", "enqueued",
                                "started", "retried", "failed", "completed"]
    rows = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in lines[1:4]}
    assert set(rows) == {"email", "report", "thumbnail"}
    # every task ended completed or dead; nothing left queued or in flight
    assert sum(r[8] + r[7] for r in rows.values()) == 60
    assert all(r[0] == r[1] == r[2] == 0 for r in rows.values())
    assert rows["thumbnail"][3] == 2  # the bad widths end dead
    # The table says what retried and failed count (the words of README's glossary).
    assert "failed     tasks with no retries left, moved to dead" in lines


def test_console_script_help_lists_examples() -> None:
    out = subprocess.run([sys.executable, "-m", "kubetaskqueue", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "Examples:" in out and "KUBETASKQUEUE_REDIS_URL" in out


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
    return paths


@pytest.mark.parametrize("path", command_paths(cli), ids=" ".join)
def test_each_command_help_shows_its_own_examples(path: tuple[str, ...]) -> None:
    code, out, _ = run(*path, "--help")
    assert code == 0
    lines = out.split("Examples:\n", 1)[1].splitlines()
    commands = [line.split() for line in lines if line.strip().startswith("kubetaskqueue ")]
    assert commands, out
    for words in commands:
        words = [w for w in words if w != "-v"]
        assert tuple(words[1:1 + len(path)]) == path, words


def test_enqueue_wait_reports_completion_death_and_timeout(redis_url: str) -> None:
    m = Manager(redis_url, poll_interval_s=0.05)

    @m.processor("t")
    def work(task: Task) -> None:
        if task.payload == "die":
            raise RuntimeError("no")

    m.start()
    try:
        code, out, _ = run("--redis-url", redis_url, "enqueue", "t", '"ok"', "--wait", "10")
        assert code == 0 and len(out.strip()) == 32
        code, _, err = run("--redis-url", redis_url, "enqueue", "t", '"die"', "--wait", "10")
        assert code == 1 and "died: see `kubetaskqueue dead list t`" in err
        code, _, err = run("--redis-url", redis_url, "enqueue", "nobody", "1", "--wait", "0.3")
        assert code == 1 and "did not finish within 0.3s" in err
    finally:
        m.stop()


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "kubetaskqueue", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out == f"kubetaskqueue {__version__}\n"


def stored(url: str, topic: str) -> list[dict[str, str]]:
    """The hashes of TOPIC's ready tasks in queue order, then of its scheduled ones."""
    r = redis.Redis.from_url(url, decode_responses=True)
    keys = TopicKeys("kubetaskqueue", topic)
    ids = r.zrange(keys.input, 0, -1) + r.zrange(keys.scheduled, 0, -1)
    pipe = r.pipeline()
    for task_id in ids:
        pipe.hgetall(keys.task(task_id))
    return list(pipe.execute())


def test_enqueue_file_one_task_a_line_with_the_options_on_each(redis_url: str,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"to": "a@b.c"}\n\n  \n[1, 2]\n"plain"\n')  # blank lines skipped
    code, out, _ = run("--redis-url", redis_url, "enqueue", "email", "--file", str(path),
                       "--retries", "2", "--delay", "60", "--timeout", "30")
    assert (code, out) == (0, "enqueued 3 task(s)\n")
    tasks = stored(redis_url, "email")
    # Delayed alike, so their order in the scheduled set is the ids'.
    assert sorted(t["payload"] for t in tasks) == ['"plain"', "[1,2]", '{"to":"a@b.c"}']
    assert {(t["num_retries"], float(t["timeout_s"])) for t in tasks} == {("2", 30.0)}
    stats = json.loads(run("--redis-url", redis_url, "stats", "--json")[1])["topics"]["email"]
    assert (stats["input"], stats["scheduled"]) == (0, 3)  # --delay 60


def test_enqueue_stdin_json_prints_the_ids_in_order(redis_url: str) -> None:
    code, out, _ = run("--redis-url", redis_url, "enqueue", "t", "--file", "-", "--json",
                       stdin='{"i": 0}\n{"i": 1}\n')
    assert code == 0
    result = json.loads(out)
    assert result["enqueued"] == 2
    tasks = stored(redis_url, "t")
    assert [t["id"] for t in tasks] == result["ids"]
    assert [json.loads(t["payload"]) for t in tasks] == [{"i": 0}, {"i": 1}]
    # One payload in --json mode has the same shape.
    code, out, _ = run("--redis-url", redis_url, "enqueue", "t", "3", "--json", "--id", "x")
    assert (code, json.loads(out)) == (0, {"enqueued": 1, "ids": ["x"]})


def test_enqueue_file_of_2500_lines_goes_in_chunks_of_1000(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = Manager.enqueue_many

    def counting(self: Manager, topic: str, payloads: list[Any], **kw: Any) -> list[str]:
        sizes.append(len(payloads))
        return real(self, topic, payloads, **kw)

    monkeypatch.setattr(Manager, "enqueue_many", counting)
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(2500)))
    code, out, _ = run("--redis-url", redis_url, "enqueue", "bulk", "--file", str(path))
    assert (code, out) == (0, "enqueued 2500 task(s)\n")
    assert sizes == [1000, 1000, 500]
    assert [json.loads(t["payload"])["n"] for t in stored(redis_url, "bulk")] == list(range(2500))


@pytest.mark.parametrize(("bad", "says"), [
    ('{"n": 1733', "line 1734, column 11: not valid JSON (Expecting ',' delimiter)"),
    ("NaN", "line 1734: not a payload (NaN is not JSON)"),
    ('"' + "x" * 2000 + '"', "line 1734: the payload is 2002 bytes, over the 1024-byte cap"),
])
def test_a_bad_line_enqueues_nothing_and_names_its_number(redis_url: str, tmp_path: Path,
                                                          bad: str, says: str) -> None:
    lines = [json.dumps({"n": n}) for n in range(2500)]
    lines[1733] = bad  # line 1734, in the second chunk: the first must not be sent either
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run("--redis-url", redis_url, "enqueue", "bulk", "--file", str(path),
                         env={"KUBETASKQUEUE_MAX_PAYLOAD_BYTES": "1024"})
    assert code == 2 and out == ""
    assert f"{path} {says}; nothing was enqueued" in err
    assert stored(redis_url, "bulk") == []
    assert json.loads(run("--redis-url", redis_url, "stats", "--json")[1])["topics"] == {}


def test_a_failed_chunk_says_which_lines_went_in(redis_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = Manager.enqueue_many, []

    def second_fails(self: Manager, topic: str, payloads: list[Any], **kw: Any) -> list[str]:
        calls.append(len(payloads))
        if len(calls) == 2:
            raise RedisUnavailableError("Redis at redis://x failed: gone")
        return real(self, topic, payloads, **kw)

    monkeypatch.setattr(Manager, "enqueue_many", second_fails)
    code, out, err = run("--redis-url", redis_url, "enqueue", "bulk", "--file", "-",
                         stdin="\n" + "1\n" * 1500)  # payloads on lines 2-1501
    assert code == 1 and out == ""
    # Before it, a warning that no live manager serves "bulk" (logged, not an error).
    assert err.splitlines()[-1] == (
        "error: Redis at redis://x failed: gone; 1000 task(s) were enqueued "
        "(lines 1-1001), the rest were not: resend from line 1002 (tail -n +1002 FILE)")
    assert len(stored(redis_url, "bulk")) == 1000


def test_enqueue_usage_errors(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text("1\n")
    for args, says in [
        ((), "give one JSON payload or --file PATH"),
        (("1", "--file", str(path)), "give one JSON payload or --file PATH, not both"),
        (("--file", str(path), "--id", "a"), "--id and --wait take one JSON payload"),
        (("--file", str(path), "--wait", "5"), "--id and --wait take one JSON payload"),
        (("--file", str(tmp_path / "missing")), "No such file or directory"),
    ]:
        code, _, err = run("--redis-url", redis_url, "enqueue", "t", *args)
        assert code == 2 and says in err, (args, err)
    assert stored(redis_url, "t") == []


@pytest.mark.parametrize("args", [
    ["enqueue", "email", "{}"],
    ["enqueue", "email", "--file", "-"],
    ["dead", "requeue", "email", "--all"],
    ["dead", "purge", "email", "--all"],
])
def test_commands_whose_effect_would_vanish_refuse_memory_urls(args: list[str]) -> None:
    url = f"memory://cli-{uuid.uuid4().hex}"
    for how in (["--redis-url", url], []):
        code, out, err = run(*how, *args, stdin="{}\n", env={"KUBETASKQUEUE_REDIS_URL": url})
        assert (code, out) == (2, "")
        command = " ".join(args[:2]) if args[0] == "dead" else "enqueue"
        assert err == (f"error: memory:// is a store inside this one process and vanishes when "
                       f"it exits, so `{command}` would be lost; use a Redis URL (--redis-url "
                       "or KUBETASKQUEUE_REDIS_URL)\n")
    assert Manager(url).stats()["topics"] == {}


def readme_synopsis() -> list[list[str]]:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## CLI\n\n```\n", 1)[1].split("```", 1)[0]
    return [line.split()[1:] for line in block.splitlines()]


def option_names(command: click.Command) -> list[list[str]]:
    return [param.opts for param in command.params if isinstance(param, click.Option)]


@pytest.mark.parametrize("path", [(), *command_paths(cli)], ids=lambda p: " ".join(p) or "global")
def test_the_readme_synopsis_lists_every_option(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    if path:
        lines = [words for words in readme_synopsis() if tuple(words[:len(path)]) == path]
    else:
        lines = [words for words in readme_synopsis() if words[0].startswith(("[", "--"))]
    assert lines, f"no line for `kubetaskqueue {' '.join(path)}` in the README's CLI block"
    text = " ".join(word for words in lines for word in words)
    for opts in option_names(command):
        assert any(re.search(rf"(^|[\[( ]){re.escape(o)}\b", text) for o in opts), (path, opts)
