"""The command line: typer commands that parse, call ``dataver.ops`` and render."""
