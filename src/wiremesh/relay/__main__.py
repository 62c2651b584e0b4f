"""``python -m wiremesh.relay``: the relay's commands without loading the server."""

from wiremesh.relay.cli import app

if __name__ == "__main__":
    app(prog_name="wiremesh relay")
