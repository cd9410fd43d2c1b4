"""Hypothesis strategies for bad input: payloads, ids, raw task-hash fields, CLI argv."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30)


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


payloads = st.one_of(
    json_values,
    st.integers(1, 500).map(nested),  # nesting json handles (deeper: a strict xfail test)
    st.integers(0, 3 * 1024 * 1024).map(lambda n: "x" * n),  # up to 3 MiB
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=5),
    st.sampled_from([float("nan"), float("inf"), b"bytes", {1, 2}, object(), {(1, 2): 3}]),
)
# Mostly valid arguments, so that the payload is what gets fuzzed; sometimes not.
topics = st.sampled_from(["fuzz", "unknown-topic", "a" * 200]).filter(bool) | st.one_of(
    st.just("fuzz"), st.text(max_size=210))
task_ids = st.none() | st.none() | st.text(min_size=0, max_size=210)
# Numbers of the right Python type (a str here is a TypeError: see README, findings).
numbers = st.none() | st.none() | st.integers(0, 5) | st.integers(-5, 10**12) | st.floats() | (
    st.booleans())

raw_bytes = st.binary(max_size=40)
raw_numbers = st.one_of(
    raw_bytes, st.sampled_from([b"", b"nan", b"inf", b"-1", b"0", b"1e400", b"\xff\xfe", b" 2 "]),
    st.floats(allow_nan=True).map(lambda f: repr(f).encode()),
    st.integers(-(10**30), 10**30).map(lambda n: str(n).encode()))
# Retry counts stay small so retried tasks settle quickly; junk still fails to parse.
raw_retries = st.sampled_from([b"0", b"1", b"2"]) | raw_bytes
raw_payloads = st.one_of(
    raw_bytes,
    json_values.map(lambda v: __import__("json").dumps(v).encode()),
    st.sampled_from([b"{not json", b"\xff\xfe\xfd", b"", b"null",
                     b'"\\ud800"', b"1e999999"]))
# Fields of a task hash the worker reads; None = the field is missing.
raw_task_fields = st.fixed_dictionaries({
    "payload": st.none() | raw_payloads,
    "num_retries": st.none() | raw_retries,
    "timeout_s": st.none() | raw_numbers,
    "enqueued_at": st.none() | raw_numbers,
    "ready_at": st.none() | raw_numbers,
    "priority": st.none() | raw_numbers,
})

_CLI_WORDS = ["enqueue", "stats", "dead", "list", "requeue", "purge", "worker", "--json",
              "--all", "--dry-run", "--retries", "--delay", "--timeout", "--id", "--error",
              "--namespace", "--log-format", "-v", "--help", "--version", "--num-workers",
              "--lease-ttl", "--grace", "fuzz", "{}", '{"a": 1}', "-1", "nan", "1e999",
              "no.such.module:manager", "json:loads", ":", "\x00", "{", "\udcff"]
cli_argv = st.lists(st.sampled_from(_CLI_WORDS) | st.text(max_size=20), max_size=6)
