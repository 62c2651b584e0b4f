"""``python -m wiremesh.agent``: the agent's commands without loading the server."""

from wiremesh.agent.cli import app

if __name__ == "__main__":
    app(prog_name="wiremesh agent")
