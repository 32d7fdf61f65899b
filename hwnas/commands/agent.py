"""hwnas agent serve: share this machine's devices with hwnas clients elsewhere (the `remote` backend)."""
from __future__ import annotations

import os

import click

from hwnas.commands._common import devices_option

TOKEN_HELP = ("make one only you can read with `(umask 077; python -c \"import secrets; "
              "print(secrets.token_urlsafe(32))\" > agent.token)` and pass --token-file agent.token (or set "
              "HWNAS_AGENT_TOKEN); clients put it in the variable named by their device's token_env")


@click.group("agent")
def command():
    """Serve this machine's devices to remote hwnas clients."""


@command.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told).")
@click.option("--port", type=click.IntRange(0, 65535), default=7711, show_default=True)
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the token clients must send (else $HWNAS_AGENT_TOKEN).")
@click.option("--no-token", is_flag=True, help="Serve without a token (trusted networks only).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.001), default=200.0, show_default=True)
@click.option("--queue-timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Seconds a request may wait for its device before a 503.")
@click.option("--max-request-s", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Seconds of the device's time one request may take; its measurement then stops (504).")
@devices_option
def serve(host, port, token_file, no_token, max_upload_mb, queue_timeout, max_request_s, devices_file):
    """Run the agent: POST /measure, GET /devices, schema at /openapi.json (all with the token)."""
    from hwnas.errors import HwnasError
    from hwnas.latency.agent import create_app
    from hwnas.latency.agent import serve as run
    from hwnas.latency.devices import list_devices

    token = None
    if token_file:
        try:
            mode = os.stat(token_file).st_mode
            if mode & 0o077:
                raise HwnasError(f"--token-file {token_file} can be read or written by other users (mode "
                                 f"{mode & 0o777:o}); make it yours alone with `chmod 600 {token_file}`")
            token = open(token_file).read().strip()
        except OSError as e:
            raise HwnasError(f"cannot read --token-file {token_file}: {e.strerror}") from None
        if not token:
            raise HwnasError(f"--token-file {token_file} is empty; {TOKEN_HELP}")
    elif os.environ.get("HWNAS_AGENT_TOKEN", "").strip():
        token = os.environ["HWNAS_AGENT_TOKEN"].strip()
    if token and no_token:
        raise HwnasError("--no-token conflicts with the token given")
    if token is None and not no_token:
        raise HwnasError(f"the agent needs a token; {TOKEN_HELP}; or pass --no-token to serve without one")
    names = ", ".join(list_devices(devices_file))
    click.echo(f"hwnas agent on http://{host}:{port} ({'token required' if token else 'NO TOKEN'}); "
               f"devices: {names}", err=True)
    run(create_app(token, devices_file, max_upload_mb, queue_timeout, max_request_s), host, port)
