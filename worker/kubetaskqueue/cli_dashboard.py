"""`kubetaskqueue dashboard`: serve the web dashboard (kubetaskqueue.dashboard)."""

from __future__ import annotations

import click

from .cli import _fail, _manager, cli, examples, runtime_errors


@cli.command(epilog=examples(
    "kubetaskqueue dashboard --host 127.0.0.1      # then open http://127.0.0.1:8080/",
    "KUBETASKQUEUE_DASHBOARD_TOKEN=$(openssl rand -hex 32) \\",
    "  kubetaskqueue dashboard --allow-actions",
))
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              envvar="KUBETASKQUEUE_DASHBOARD_PORT", show_envvar=True, help="Port of the page")
@click.option("--host", default="127.0.0.1", show_default=True,
              envvar="KUBETASKQUEUE_DASHBOARD_HOST", show_envvar=True,
              help="Address to listen on (0.0.0.0 = every interface, as a container needs)")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="HOST",
              envvar="KUBETASKQUEUE_DASHBOARD_ALLOWED_HOSTS", show_envvar=True,
              help="Host header to serve besides localhost, 127.0.0.1, [::1] and --host "
                   "(repeatable; the variable is comma-separated; *.example.com for "
                   "subdomains); other Hosts get 400")
@click.option("--allow-actions", is_flag=True, envvar="KUBETASKQUEUE_DASHBOARD_ALLOW_ACTIONS",
              show_envvar=True,
              help="Allow requeue and purge, for requests with the bearer token in "
                   "KUBETASKQUEUE_DASHBOARD_TOKEN")
@click.pass_context
@runtime_errors
def dashboard(ctx: click.Context, port: int, host: str, allowed_hosts: tuple[str, ...],
              allow_actions: bool) -> None:
    """Serve the web dashboard: live topics and managers, dead tasks (read-only by default)."""
    from .dashboard import INSTALL_HINT, TOKEN_MIN_CHARS, missing_dependencies
    from .settings import env_or_secret_file

    missing = missing_dependencies()
    if missing:
        _fail(f"the dashboard needs {' and '.join(missing)}: {INSTALL_HINT}")
    token = (env_or_secret_file("KUBETASKQUEUE_DASHBOARD_TOKEN") or "").strip() or None
    if allow_actions and (token is None or len(token) < TOKEN_MIN_CHARS):
        raise click.UsageError(
            f"--allow-actions needs a bearer token of at least {TOKEN_MIN_CHARS} characters "
            "in KUBETASKQUEUE_DASHBOARD_TOKEN, or in the file KUBETASKQUEUE_DASHBOARD_TOKEN_FILE "
            "names (e.g. $(openssl rand -hex 32))")
    from .dashboard.server import serve

    serve(_manager(ctx), host=host, port=port, allow_actions=allow_actions, token=token,
          extra_hosts=allowed_hosts)
