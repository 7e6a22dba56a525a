"""MkDocs hooks: the command-line reference is generated at build time from the parser the `bertkit`
program itself builds (whose run settings come from the typed config's field metadata), so the page
cannot drift from the program."""

from __future__ import annotations

import argparse

MARKER = "<!-- bertkit:cli-reference -->"


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
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        out += [f"**{group.title}**", "", "| option | what it does | default |", "| --- | --- | --- |"]
        out += [_action_row(a) for a in actions] + [""]
    return out


def cli_reference() -> str:
    from bertkit.cli import build_parser

    parser = build_parser(run_flags=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines: list[str] = []
    for name, command in sub.choices.items():
        lines += _command(name, command)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
