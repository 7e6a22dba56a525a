"""MkDocs hooks: the command-line reference is generated at build time from the parser the `bertkit`
program itself builds (whose run settings come from the typed config's field metadata), so the page
cannot drift from the program."""

from __future__ import annotations

import argparse

MARKER = "<!-- bertkit:cli-reference -->"
HTTP_MARKER = "<!-- bertkit:http-reference -->"
ERRORS_MARKER = "<!-- bertkit:http-error-codes -->"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _action_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    if action.choices and not isinstance(action.choices, dict):
        names += " {" + ",".join(str(c) for c in action.choices) + "}"
    elif action.metavar and action.option_strings:
        names += f" `{action.metavar}`"
    default = "" if action.default in (None, argparse.SUPPRESS, False, []) else f"`{action.default}`"
    return f"| {names} | {_cell(action.help or '')} | {default} |"


def _command(name: str, parser: argparse.ArgumentParser) -> list[str]:
    out = [f"## bertkit {name}", "", _cell(parser.description or ""), "",
           "```", parser.format_usage().strip().replace("usage: ", ""), "```", ""]
    nested = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        nested += [a for a in actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            continue
        out += [f"**{group.title}**", "", "| option | what it does | default |", "| --- | --- | --- |"]
        out += [_action_row(a) for a in actions] + [""]
    for action in nested:  # `bertkit runs list`, `bertkit data check`: each a section of its own
        for sub_name, sub_parser in action.choices.items():
            out += _command(f"{name} {sub_name}", sub_parser)
    return out


def cli_reference() -> str:
    from bertkit.cli import build_parser

    parser = build_parser(run_flags=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines: list[str] = []
    for name, command in sub.choices.items():
        lines += _command(name, command)
    return "\n".join(lines)


def http_reference() -> str:
    """The routes of `bertkit serve` from the OpenAPI schema the server publishes (with a model loaded, the
    body's `items` is that model's input schema; here, before loading one, it is open)."""
    import json

    from bertkit.serve.app import ServeSettings, create_app

    schema = create_app(ServeSettings(path="RUN_DIR")).openapi()
    lines: list[str] = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            lines += [f"## {method.upper()} {path}", ""]
            body = ((op.get("requestBody") or {}).get("content") or {}).get("application/json")
            if body:
                lines += ["Request body:", "", "```json", json.dumps(body["schema"], indent=2), "```", ""]
            lines += ["| status | meaning |", "| --- | --- |"]
            lines += [f"| {code} | {_cell(r.get('description', ''))} |" for code, r in op["responses"].items()]
            lines.append("")
    error = schema["components"]["schemas"]["ErrorDetail"]
    lines += ["## Error bodies", "", "Every refusal is `{\"error\": {...}}` with these fields:", "", "```json",
              json.dumps(error, indent=2), "```"]
    return "\n".join(lines)


def http_error_codes() -> str:
    """The `error.code` values the server answers with, and their statuses, read from its source (each answer
    is made by one `_error(status, "code", ...)` call, or by its handler of HTTP errors)."""
    import re
    from pathlib import Path

    import bertkit.serve.app as serve_app

    source = Path(serve_app.__file__).read_text("utf-8")
    found = set(re.findall(r'_error\((\d{3}), "([a-z_]+)"', source))
    # the HTTP errors raised before a route runs: {status: code} of the exception handler (400 is answered 422)
    handler = re.search(r"codes = \{([^}]*)\}", source)
    for status, code in re.findall(r'(\d{3}): "([a-z_]+)"', handler.group(1) if handler else ""):
        found.add(("422" if status == "400" else status, code))
    found = sorted(found)
    rows = ["| error.code | status |", "| --- | --- |"] + [f"| `{code}` | {status} |" for status, code in found]
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, make in ((MARKER, cli_reference), (HTTP_MARKER, http_reference), (ERRORS_MARKER, http_error_codes)):
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
