"""`python -m sandbox`: serve a local Numerai (see `python -m sandbox --help`)."""

from sandbox.cli import app

if __name__ == "__main__":
    app(prog_name="python -m sandbox")
