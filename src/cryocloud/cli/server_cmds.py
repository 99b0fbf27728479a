"""serve, users, tokens: the facility's server and who may call it."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Another than loopback needs TLS or --insecure-bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--tls-cert", default="", help="PEM certificate (with --tls-key): serve HTTPS.")
@click.option("--tls-key", default="", help="PEM private key of --tls-cert.")
@click.option("--insecure-bind", is_flag=True,
              help="Listen on a non-loopback address without TLS. Unsafe: tokens and cookies travel in clear; "
                   "only behind a TLS proxy.")
def serve(host: str, port: int, tls_cert: str, tls_key: str, insecure_bind: bool) -> None:
    """Serve the REST API (/api/v1/, OpenAPI at /api/v1/openapi.json) and the dashboard (/).

    \b
    The server runs the monitor itself and is then the one writer of the ledger (facility mode):
    with [server] url set in the config, `cryocloud-qsub` hands RELION's jobs to it. Every job runs as
    the Unix account that runs the server; API users are identities for scope and accounting.
      cryocloud users add alice && cryocloud tokens create alice
      cryocloud serve --port 8080
    """
    from cryocloud.server.run import serve as run
    from cryocloud.settings import load_settings

    raise SystemExit(run(load_settings(), host, port, tls_cert=tls_cert, tls_key=tls_key,
                         insecure_bind=insecure_bind))


@click.group()
def users() -> None:
    """API users of `cryocloud serve`: identities for scope, budgets and accounting (not Unix users)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "manager"]), default="user", show_default=True,
              help="A user sees and acts on their own jobs; a manager on everyone's.")
@click.option("--slurm-account", default="", help="Charge their jobs on Slurm profiles to this --account.")
def users_add(name: str, role: str, slurm_account: str) -> None:
    """Add user NAME. Then give them a token: cryocloud tokens create NAME."""
    from cryocloud.app.facility import add_user
    from cryocloud.settings import load_settings

    user = add_user(load_settings(), name, role, slurm_account)
    click.echo(f"added {user.name} ({user.role}); give them a token: cryocloud tokens create {user.name}")


@users.command("list")
def users_list() -> None:
    """List the API users."""
    from cryocloud.app.facility import list_users
    from cryocloud.settings import load_settings

    for user in list_users(load_settings()):
        click.echo(f"{user.name}\t{user.role}" + (f"\tslurm account {user.slurm_account}" if user.slurm_account else ""))


@users.command("notify")
@click.argument("name")
@click.option("--webhook", default=None, help="A chat channel's incoming hook URL ('' to remove).")
@click.option("--email", default=None, help="An email address ('' to remove); sent through [server] smtp_host.")
def users_notify(name: str, webhook: str | None, email: str | None) -> None:
    """Tell user NAME when a job of theirs ends (with its cost) and when a budget passes 80% and 100%."""
    from cryocloud.app.facility import set_notify
    from cryocloud.settings import load_settings

    hook, mail = set_notify(load_settings(), name, webhook, email)
    click.echo(f"{name}: webhook {'set' if hook else 'none'}, email {mail or 'none'}")


@click.group()
def tokens() -> None:
    """API tokens: create (shown once; only a hash is kept), list, revoke."""


@tokens.command("create")
@click.argument("name")
def tokens_create(name: str) -> None:
    """Make a token for user NAME and print it once. Only its SHA-256 is kept in the ledger."""
    from cryocloud.app.facility import create_token
    from cryocloud.settings import load_settings

    token_id, token = create_token(load_settings(), name)
    click.echo(token)
    click.echo(f"token {token_id} for {name}: shown this once; keep it in ~/.config/cryocloud/token (chmod 600) "
               "or $CRYOCLOUD_TOKEN. Revoke it with: cryocloud tokens revoke " + str(token_id), err=True)


@tokens.command("list")
@click.argument("name", required=False)
def tokens_list(name: str | None) -> None:
    """List tokens (ids, owners, when made and revoked; never the tokens)."""
    from cryocloud.app.facility import list_tokens
    from cryocloud.cli.render import when
    from cryocloud.settings import load_settings

    for t in list_tokens(load_settings(), name):
        click.echo(f"{t.id}\t{t.user}\t{when(t.created_at)}\t"
                   + (f"revoked {when(t.revoked_at)}" if t.revoked_at else "live"))


@tokens.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID (see `tokens list`): the next call with it is refused."""
    from cryocloud.app.facility import revoke_token
    from cryocloud.settings import load_settings

    row = revoke_token(load_settings(), token_id)
    click.echo(f"token {row.id} of {row.user}: revoked")
