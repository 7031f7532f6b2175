"""`gateway policy ...`: the admin CLI for routing policies, working on the database directly
(same store as the admin API; replicas pick changes up within their refresh interval)."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from gateway.settings import load_settings

policy_app = typer.Typer(
    help="Routing policies: validate, version, activate, roll back, simulate.", no_args_is_help=True
)
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Gateway config (deployments, database).")
]
ActorOption = Annotated[str, typer.Option(help="Who is making the change (audit log).")]


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _read_document(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict):
        raise typer.BadParameter(f"{path} must hold a YAML/JSON mapping")
    return document


def _run(config: Path | None, action):
    """Run `action(store, engine)` against the configured database, with migrations applied."""
    from gateway.db.engine import create_engine, migrate
    from gateway.routing.policy import PolicyError
    from gateway.routing.store import PolicyStore
    from gateway.upstreams.registry import deployment_facts

    settings = load_settings(config)

    async def go():
        if settings.auto_migrate:
            await asyncio.to_thread(migrate, settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            return await action(PolicyStore(engine, deployment_facts(settings)), engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except PolicyError as exc:
        console.print(f"[red]invalid policy:[/red] {exc}")
        raise typer.Exit(2) from None
    except LookupError as exc:
        console.print(f"[red]{str(exc).strip(chr(39))}[/red]")
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@policy_app.command("schema")
def schema() -> None:
    """Print the JSON schema of policy documents."""
    from gateway.routing.policy import PolicySpec

    _print_json(PolicySpec.model_json_schema(by_alias=True))


@policy_app.command("validate")
def validate(file: Path, config: ConfigOption = None) -> None:
    """Check a policy file against the schema and the configured deployments."""

    async def action(store, _engine):
        return store.validate(_read_document(file))

    spec = _run(config, action)
    console.print(f"[green]valid[/green]: policy {spec.name} ({len(spec.bands)} bands)")


@policy_app.command("create")
def create(
    file: Path,
    comment: Annotated[str | None, typer.Option(help="Why this version exists.")] = None,
    actor: ActorOption = _default_actor(),
    config: ConfigOption = None,
) -> None:
    """Store a new version of the policy in FILE (validated; not activated)."""
    document = _read_document(file)

    async def action(store, _engine):
        return await store.create(document, actor, comment)

    version = _run(config, action)
    console.print(
        f"created {document['name']} v{version} (not active: `gateway policy activate {document['name']} {version}`)"
    )


@policy_app.command("list")
def list_policies(config: ConfigOption = None) -> None:
    """Policies, their latest and active versions, and who uses them."""
    _print_json(_run(config, lambda store, _engine: store.list()))


@policy_app.command("show")
def show(
    name: str,
    version: Annotated[int | None, typer.Option(help="Default: the active version.")] = None,
    config: ConfigOption = None,
) -> None:
    """Print a version as YAML."""
    from gateway.routing.store import to_yaml

    found = _run(config, lambda store, _engine: store.get(name, version))
    console.print(
        f"# {found['name']} v{found['version']}{' (active)' if found['active'] else ''}, "
        f"by {found['created_by']} at {found['created_at']}"
    )
    console.print(to_yaml(found["document"]), highlight=False, markup=False)


@policy_app.command("diff")
def diff(name: str, from_version: int, to_version: int, config: ConfigOption = None) -> None:
    """Unified diff between two versions."""
    console.print(
        _run(config, lambda store, _engine: store.diff(name, from_version, to_version)) or "(identical)",
        highlight=False,
        markup=False,
    )


@policy_app.command("activate")
def activate(
    name: str, version: int, actor: ActorOption = _default_actor(), config: ConfigOption = None
) -> None:
    """Make VERSION live on every replica (within their refresh interval)."""
    _run(config, lambda store, _engine: store.activate(name, version, actor))
    console.print(f"{name} v{version} is active")


@policy_app.command("rollback")
def rollback(name: str, actor: ActorOption = _default_actor(), config: ConfigOption = None) -> None:
    """Re-activate the version that was live before the last change."""
    version = _run(config, lambda store, _engine: store.rollback(name, actor))
    console.print(f"{name} rolled back to v{version}")


@policy_app.command("assign")
def assign(
    policy: str,
    team: Annotated[str, typer.Option(help="Team, or '*' for the default policy.")],
    project: Annotated[str | None, typer.Option(help="One project of the team (default: all).")] = None,
    actor: ActorOption = _default_actor(),
    config: ConfigOption = None,
) -> None:
    """Assign POLICY to a team, one of its projects, or everyone (--team '*')."""
    _run(config, lambda store, _engine: store.assign(team, project, policy, actor))
    console.print(
        f"{policy} assigned to {'everyone (default)' if team == '*' else team + '/' + (project or '*')}"
    )


@policy_app.command("simulate")
def simulate_command(
    name: str,
    version: Annotated[int | None, typer.Option(help="Stored version to try (default: latest).")] = None,
    file: Annotated[Path | None, typer.Option(help="Or an unsaved candidate document.")] = None,
    last: Annotated[int, typer.Option(help="Replay the last N routed ledger rows.")] = 1000,
    team: Annotated[str | None, typer.Option(help="Only this team's traffic.")] = None,
    config: ConfigOption = None,
) -> None:
    """Project cost, tier mix and savings of a candidate against the active version."""
    from gateway.routing.policy import Router
    from gateway.routing.simulate import simulate

    async def action(store, engine):
        if file is not None:
            document, number = _read_document(file), 0
        else:
            listed = {row["name"]: row for row in await store.list()}
            if name not in listed:
                raise LookupError(f"no policy {name!r}")
            found = await store.get(name, version or listed[name]["latest_version"])
            document, number = found["document"], found["version"]
        candidate = Router(store.validate(document), number, store.deployments)
        book = await store.load()
        return await simulate(engine, candidate, book.routers.get(name), store.deployments, last, team)

    _print_json(_run(config, action))


@policy_app.command("audit")
def audit(
    policy: Annotated[str | None, typer.Option(help="Only this policy.")] = None,
    limit: int = 50,
    config: ConfigOption = None,
) -> None:
    """Who changed what, when."""
    _print_json(_run(config, lambda store, _engine: store.audit(limit, policy)))
