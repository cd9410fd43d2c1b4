"""The Lua scripts RedisStore runs, as Redis receives them: scripts/NAME.lua after the
prelude (_prelude.lua), each body wrapped so its buffered events go out at the end."""

from __future__ import annotations

from importlib import resources


def _load() -> dict[str, str]:
    folder = resources.files(__package__).joinpath("scripts")
    prelude = folder.joinpath("_prelude.lua").read_text()
    sources = {
        entry.name.removesuffix(".lua"): entry.read_text()
        for entry in folder.iterdir()
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    }
    # A schedule's fire runs the enqueue script itself, as a function, in the same
    # atomic step as its once-per-fire-time check.
    bodies = dict(sources, fire_schedule="local function enqueue()\n" + sources["enqueue"]
                  + "\nend\n" + sources["fire_schedule"])
    acking = folder.joinpath("_ack.lua").read_text()  # claim.lua acks too
    for name in ("ack", "claim"):
        bodies[name] = acking + sources[name]
    # Each body runs as a function so its events, buffered by emit(), go out in one
    # XADD after it returns (an error on the way out writes none). Lua 5.1 gives a
    # function at most 60 upvalues: the prelude's locals and the header's constants.
    return {name: (prelude + "local function body()\n" + body
                   + "\nend\nlocal reply = body()\nflush_events()\nreturn reply\n")
            for name, body in bodies.items()}


SCRIPTS = _load()
