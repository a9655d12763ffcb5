"""`sandbox` commands: serve a local Numerai, and drive a running one through its admin API."""

# The project CLI mounts this app, so importing it must stay light for `--help`: the runner (data
# generation with numpy/pyarrow/pandas, uvicorn and the server) is imported only when serving,
# and httpx (tens of milliseconds) only by the admin commands that call a running sandbox.

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.tournaments import CLASSIC, TOURNAMENT_HELP
from sandbox.chaos import COUNTED, DEFAULT_PROFILE, PROFILES, Chaos
from sandbox.defaults import DEFAULT_MODELS, DEFAULT_PUBLIC_ID, DEFAULT_SECRET_KEY, SIZE_NAMES
from sandbox.ready import SandboxReady

if TYPE_CHECKING:
    from sandbox.runner import Sandbox

app = typer.Typer(
    help="A local Numerai (GraphQL API, datasets, uploads, rounds) for tests and dry runs.",
    no_args_is_help=False,
    add_completion=False,
)
_console = Console(stderr=True)

Host = Annotated[str, typer.Option(help="Address to bind; keep it on loopback.")]
Port = Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")]
Size = Annotated[str, typer.Option(help=f"Synthetic data size: {', '.join(SIZE_NAMES)}.")]
Seed = Annotated[int, typer.Option(help="Seed of the synthetic data.")]
DataDir = Annotated[
    Path | None,
    typer.Option(help="Serve this directory of real Numerai files (<dir>/v5.2/live.parquet...)."),
]
Root = Annotated[Path, typer.Option(help="Where generated data is cached.")]
PublicId = Annotated[str, typer.Option(help="The API public id the sandbox accepts.")]
SecretKey = Annotated[str, typer.Option(help="The API secret key the sandbox accepts.")]
Models = Annotated[
    list[str] | None,
    typer.Option("--model", help="A model name (repeatable); `name:signals` puts it in Signals."),
]
_READY_FIELDS = ", ".join(f.name for f in fields(SandboxReady))
ReadyFile = Annotated[
    Path | None,
    typer.Option(help=f"Write JSON with {_READY_FIELDS} (mode 0600) once listening."),
]
# The project CLI sets this to the local stack's sandbox, so the commands below find it alone.
SANDBOX_URL_ENV = "NUMERAI_NODES_SANDBOX_URL"
Url = Annotated[
    str | None,
    typer.Option(
        envvar=[SANDBOX_URL_ENV, "NUMERAI_API_URL"],
        help="The running sandbox's URL (GraphQL endpoint). Default: the local stack's sandbox.",
    ),
]
ChaosSeed = Annotated[
    int | None,
    typer.Option(
        "--chaos",
        metavar="SEED",
        help="Inject seeded faults into the Numerai API: 5xx answers, delays, truncated "
        "downloads, failed uploads, dropped connections (never into /_sandbox/).",
    ),
]
ChaosProfileName = Annotated[
    str, typer.Option(help=f"How bad a day --chaos makes: {', '.join(PROFILES)}.")
]
TournamentId = Annotated[int, typer.Option(help=f"Tournament id: {TOURNAMENT_HELP}.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]

DEFAULT_ROOT = Path(".numerai-nodes/sandbox")


def _write_ready_file(path: Path, sandbox: Sandbox) -> None:
    """Tell a parent process, atomically, how to talk to this sandbox."""
    SandboxReady(
        url=sandbox.url,
        public_id=sandbox.public_id,
        secret_key=sandbox.secret_key,
        models=dict(sandbox.models),
        model_tournaments={m.name: int(m.tournament) for m in sandbox.state.models()},
        yahoo_url=sandbox.yahoo_url,
        pid=os.getpid(),
    ).write(path)


def _announce(sandbox: Sandbox) -> None:
    table = Table(title="Numerai sandbox", show_header=False)
    table.add_row("NUMERAI_API_URL", sandbox.url)
    table.add_row("NUMERAI_NODES_YAHOO_URL", sandbox.yahoo_url)
    table.add_row("NUMERAI_PUBLIC_ID", sandbox.public_id)
    table.add_row("NUMERAI_SECRET_KEY", sandbox.secret_key)
    for name, model_id in sandbox.models.items():
        table.add_row(f"model {name}", model_id)
    table.add_row("round", str(sandbox.current_round()))
    if sandbox.chaos.enabled:
        table.add_row("chaos", f"seed {sandbox.chaos.seed}: {_chaos_line(sandbox.chaos.to_json())}")
    _console.print(table)
    _console.print("Ctrl-C stops it.")


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    size: str = "tiny",
    seed: int = 0,
    data_dir: Path | None = None,
    root: Path = DEFAULT_ROOT,
    public_id: str = DEFAULT_PUBLIC_ID,
    secret_key: str = DEFAULT_SECRET_KEY,
    models: list[str] | None = None,
    ready_file: Path | None = None,
    chaos: int | None = None,
    chaos_profile: str = DEFAULT_PROFILE,
) -> None:
    """Serve until SIGINT or SIGTERM."""
    if size not in SIZE_NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(SIZE_NAMES)}", param_hint="--size")
    if chaos_profile not in PROFILES:
        raise typer.BadParameter(
            f"choose one of {', '.join(PROFILES)}", param_hint="--chaos-profile"
        )
    if data_dir is not None and not data_dir.is_dir():
        raise typer.BadParameter(
            f"{data_dir} is not a directory of Numerai files (<dir>/v5.2/live.parquet...)",
            param_hint="--data-dir",
        )
    if port and not _port_free(host, port):
        raise typer.BadParameter(
            f"{host}:{port} is in use: stop what listens there, or pick another port "
            "(0 takes a free one)",
            param_hint="--port",
        )
    # A plain flag: a handler that takes a lock (Event.set) can deadlock the main thread it
    # interrupts while that thread is inside Event.wait.
    stopping: list[int] = []
    previous = {s: signal.signal(s, lambda sig, _: stopping.append(sig)) for s in _STOP_SIGNALS}
    from sandbox.runner import Sandbox  # heavy: see the comment at the top

    sandbox = Sandbox(
        root,
        size=size,
        seed=seed,
        data_dir=data_dir,
        public_id=public_id,
        secret_key=secret_key,
        models=tuple(models or DEFAULT_MODELS),
        host=host,
        port=port,
        chaos=Chaos.seeded(chaos, chaos_profile) if chaos is not None else None,
    )
    try:
        sandbox.start()
        if ready_file is not None:
            _write_ready_file(ready_file, sandbox)
        _announce(sandbox)
        while not stopping:
            if not sandbox.running:
                raise typer.Exit(1)
            time.sleep(0.1)
    finally:
        sandbox.stop()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    host: Host = "127.0.0.1",
    port: Port = 0,
    size: Size = "tiny",
    seed: Seed = 0,
    data_dir: DataDir = None,
    root: Root = DEFAULT_ROOT,
    public_id: PublicId = DEFAULT_PUBLIC_ID,
    secret_key: SecretKey = DEFAULT_SECRET_KEY,
    models: Models = None,
    ready_file: ReadyFile = None,
    chaos: ChaosSeed = None,
    chaos_profile: ChaosProfileName = DEFAULT_PROFILE,
) -> None:
    """Serve a local Numerai (the default command), or run one of the commands below."""
    if ctx.invoked_subcommand is None:
        serve(
            host, port, size, seed, data_dir, root, public_id, secret_key, models, ready_file,
            chaos, chaos_profile,
        )  # fmt: skip


@app.command("serve")
def serve_command(
    host: Host = "127.0.0.1",
    port: Port = 0,
    size: Size = "tiny",
    seed: Seed = 0,
    data_dir: DataDir = None,
    root: Root = DEFAULT_ROOT,
    public_id: PublicId = DEFAULT_PUBLIC_ID,
    secret_key: SecretKey = DEFAULT_SECRET_KEY,
    models: Models = None,
    ready_file: ReadyFile = None,
    chaos: ChaosSeed = None,
    chaos_profile: ChaosProfileName = DEFAULT_PROFILE,
) -> None:
    """Serve a local Numerai until SIGINT or SIGTERM."""
    serve(
        host, port, size, seed, data_dir, root, public_id, secret_key, models, ready_file,
        chaos, chaos_profile,
    )  # fmt: skip


def _admin(method: str, url: str | None, path: str, **kwargs: Any) -> Any:
    """Call a running sandbox's admin endpoint; a failure is a message on stderr and exit 1."""
    import httpx

    if not url:
        raise typer.BadParameter(
            "no sandbox to talk to: start one with `numerai-nodes up --sandbox` (its commands "
            "then find it), or give its URL",
            param_hint="--url",
        )
    target = f"{url.rstrip('/')}/_sandbox/{path}"
    try:
        response = httpx.request(method, target, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        raise typer.BadParameter(
            f"cannot reach a sandbox at {url}: {exc}", param_hint="--url"
        ) from exc
    if response.status_code >= 400:
        # typer vendors its own click: a ClickException of the `click` package would escape it
        # as a traceback, so the message is printed here and the exit raised.
        _console.print(
            f"[bold red]Error:[/] {escape(target)} answered {response.status_code}: "
            f"{escape(response.text)}",
            highlight=False,
        )
        raise typer.Exit(1)
    return response.json()


def _print_round(data: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        typer.echo(json.dumps(data))
    else:
        typer.echo(
            f"round {data['number']} (tournament {data['tournament']}) {verb}; "
            f"closes {data['closeTime']}"
        )


@app.command("open-round")
def open_round(
    url: Url = None,
    tournament: TournamentId = CLASSIC,
    window_seconds: Annotated[
        float | None,
        typer.Option(help="How long the round takes submissions (default: a day)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Open the next round, with new live data."""
    body: dict[str, Any] = {"tournament": tournament}
    if window_seconds is not None:
        body["window_seconds"] = window_seconds
    data = _admin("POST", url, "rounds/open", json=body)
    _print_round(data, as_json, "open")
    if not as_json:
        called = data.get("webhooks_called") or []
        typer.echo(
            f"webhooks called: {', '.join(called)}"
            if called
            else "no model of this tournament has a webhook: no node was called"
        )


@app.command("add-model")
def add_model(
    name: Annotated[str, typer.Argument(help="The model's name, as on numer.ai.")],
    url: Url = None,
    tournament: TournamentId = CLASSIC,
) -> None:
    """Add a model to the sandbox's account (on Numerai you create it on numer.ai)."""
    models = _admin("POST", url, "models", json={"name": name, "tournament": tournament})
    typer.echo(f"the sandbox account has {len(models)} models; {name} is one of them")


@app.command("close-round")
def close_round(
    url: Url = None, tournament: TournamentId = CLASSIC, as_json: AsJson = False
) -> None:
    """Close the current round for submissions."""
    data = _admin("POST", url, "rounds/close", json={"tournament": tournament})
    _print_round(data, as_json, "closed")


@app.command("submissions")
def submissions(
    url: Url = None,
    model: Annotated[str | None, typer.Option(help="Only this model's submissions.")] = None,
    as_json: AsJson = False,
) -> None:
    """List the submissions a running sandbox received."""
    params = {"model": model} if model else {}
    records = _admin("GET", url, "submissions", params=params)
    if as_json:
        typer.echo(json.dumps(records))
        return
    table = Table("model", "round", "rows", "trigger", "inserted", "id")
    for r in records:
        table.add_row(
            r["model_name"],
            str(r["round"]),
            str(r["row_count"]),
            r["trigger_id"] or "-",
            r["inserted_at"],
            r["id"],
        )
    Console().print(table)


@app.command("faults")
def faults(
    url: Url = None,
    reject_uploads: Annotated[
        bool | None, typer.Option("--reject-uploads/--accept-uploads", help="Answer PUTs 403.")
    ] = None,
    graphql_error: Annotated[
        str | None, typer.Option(help="Answer every GraphQL call with this error; '' clears.")
    ] = None,
    latency_s: Annotated[float | None, typer.Option(help="Delay every API request.")] = None,
) -> None:
    """Show or set injected faults."""
    changes = {
        k: v
        for k, v in {
            "reject_uploads": reject_uploads,
            "graphql_error": graphql_error,
            "latency_s": latency_s,
        }.items()
        if v is not None
    }
    typer.echo(json.dumps(_admin("POST", url, "faults", json=changes)))


def set_chaos(url: str | None, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a running sandbox's chaos (POST /_sandbox/chaos); returns its settings and counts."""
    data: dict[str, Any] = _admin("POST", url, "chaos", json=changes)
    return data


def _chaos_line(data: dict[str, Any]) -> str:
    low, high = data["delay_s"]
    return (
        f"{data['graphql_5xx']:.0%} GraphQL 5xx, {data['delay']:.0%} delays of {low:g}-{high:g} s, "
        f"{data['truncate']:.0%} truncated downloads, {data['put_fail']:.0%} failed PUTs, "
        f"{data['drop']:.0%} dropped connections"
    )


@app.command("chaos")
def chaos(
    url: Url = None,
    seed: Annotated[
        int | None, typer.Option(help="Start (or restart) chaos with this seed; counters reset.")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Stop injecting faults.")] = False,
    chaos_profile: Annotated[
        str | None, typer.Option("--profile", help=f"Set every probability: {', '.join(PROFILES)}.")
    ] = None,
    graphql_5xx: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="P(a GraphQL POST answers 502/503).")
    ] = None,
    delay: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="P(a request is delayed).")
    ] = None,
    delay_s: Annotated[
        tuple[float, float] | None,
        typer.Option(metavar="MIN MAX", help="Range of a delay, in seconds."),
    ] = None,
    truncate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="P(a download is cut short; a resume answers 503)."),
    ] = None,
    put_fail: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="P(an upload PUT answers 500/503).")
    ] = None,
    drop: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="P(a connection closes unanswered).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show, start or stop seeded chaos, and count the faults it injected so far."""
    if chaos_profile is not None and chaos_profile not in PROFILES:
        raise typer.BadParameter(f"choose one of {', '.join(PROFILES)}", param_hint="--profile")
    settings = {
        "seed": seed,
        "profile": chaos_profile,
        "graphql_5xx": graphql_5xx,
        "delay": delay,
        "delay_s": list(delay_s) if delay_s is not None else None,
        "truncate": truncate,
        "put_fail": put_fail,
        "drop": drop,
    }
    changes: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}
    if off:
        changes["enabled"] = False
    data = set_chaos(url, changes) if changes else _admin("GET", url, "chaos")
    if as_json:
        typer.echo(json.dumps(data))
        return
    state = f"on, seed {data['seed']}" if data["enabled"] else "off"
    typer.echo(f"chaos {state}: {_chaos_line(data)}; {data['requests']} requests seen")
    table = Table("fault", "injected")
    for kind in COUNTED:
        table.add_row(kind, str(data["counts"][kind]))
    Console().print(table)
