#!/usr/bin/env python3
"""Generate man/*.1, man/celops.7, completions/ and README's vocabulary from declarations.

argparse-manpage writes the roff, shtab the bash and zsh completions; nothing
here is hand-written per command. ``--check`` compares instead of writing and
exits 1 when the committed files have drifted.
"""

import argparse
import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import shtab  # noqa: E402
from argparse_manpage.manpage import Manpage  # noqa: E402

from celops import __version__  # noqa: E402
from celops.commands import COMMANDS  # noqa: E402
from celops.core.cli import completion_preamble  # noqa: E402
from celops.records import RECORDS, describe  # noqa: E402

MAN_DATA = {"version": __version__, "project_name": "celops", "manual_title": "celops manual",
            "date": "November 2026"}


def manpage(parser):
    page = Manpage(parser, _data=dict(MAN_DATA))
    for heading, text in parser.man_sections:
        page.add_section(heading, "=", _roff_paragraphs(text))
    see_also = [rf"\fB{name}\fR(1)" for name in COMMANDS if name != parser.prog] + [r"\fBcelops\fR(7)"]
    page.add_section("SEE ALSO", "=", ", ".join(see_also))
    return str(page)


def _roff_paragraphs(text):
    """Plain text to roff: blank lines become paragraphs, indented lines are kept as-is."""
    out = []
    for block in text.strip("\n").rstrip().split("\n\n"):
        lines = block.split("\n")
        if any(line.startswith("  ") for line in lines):
            out.append(".nf\n" + "\n".join(_escape(line) for line in lines) + "\n.fi")
        else:
            out.append(_escape(" ".join(lines)))
    return "\n.PP\n".join(out)


def _escape(line):
    line = line.replace("\\", "\\\\").replace("-", "\\-")
    return "\\&" + line if line.startswith((".", "'")) else line


def vocabulary_page():
    parser = argparse.ArgumentParser(prog="celops", add_help=False,
                                     description="the NDJSON record vocabulary shared by the celops commands")
    parser.man_short_description = "record vocabulary of the celops commands"
    page = Manpage(parser, _data=dict(MAN_DATA, manual_section=7))
    page.synopsis = []
    body = "\n\n".join("\n".join(describe(kind)) for kind in RECORDS)
    page.add_section("RECORDS", "=", _roff_paragraphs(
        "Every command writes one compact JSON object per line on standard output; diagnostics go "
        "to standard error as PROG: message. Times are epoch seconds as floats.\n\n" + body))
    page.add_section("SEE ALSO", "=", ", ".join(rf"\fB{name}\fR(1)" for name in COMMANDS))
    return str(page)


README_MARKERS = ("<!-- records:start -->\n", "<!-- records:end -->")


def readme_with_vocabulary():
    """README.md with the record vocabulary between its markers regenerated."""
    text = open(os.path.join(ROOT, "README.md")).read()
    head, rest = text.split(README_MARKERS[0], 1)
    _, tail = rest.split(README_MARKERS[1], 1)
    sections = []
    for kind, spec in RECORDS.items():
        rows = "\n".join(f"| `{field}` | {meaning} |" for field, meaning in spec["fields"].items())
        sections.append(f"### {kind}\n\n{spec['summary']} Produced by {spec['produced_by']}; "
                        f"consumed by {spec['consumed_by']}.\n\n| field | meaning |\n| --- | --- |\n{rows}\n")
    return head + README_MARKERS[0] + "\n".join(sections) + README_MARKERS[1] + tail


def bash_completion(parser, preamble):
    """shtab's script, registered through _celops_rejoined (cli.py), which gives it the words as typed."""
    script = shtab.complete(parser, "bash", preamble=preamble)
    registration = f"-F _shtab_{parser.prog.replace('-', '_')} {parser.prog}"
    assert registration in script, "shtab changed how it registers the function"
    return script.replace(registration, f"-F _celops_rejoined {parser.prog}")


def outputs():
    """Every generated file: path relative to ROOT -> content."""
    files = {"man/celops.7": vocabulary_page(), "README.md": readme_with_vocabulary()}
    preamble = completion_preamble()
    for name, module_name in COMMANDS.items():
        parser = importlib.import_module(f"celops.commands.{module_name}").build_parser()
        files[f"man/{name}.1"] = manpage(parser)
        files[f"completions/bash/{name}"] = bash_completion(parser, preamble)
        files[f"completions/zsh/_{name}"] = shtab.complete(parser, "zsh", preamble=preamble)
    return files


def main(argv=None):
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="report drift instead of writing")
    check = args.parse_args(argv).check
    drifted = []
    for path, content in outputs().items():
        full = os.path.join(ROOT, path)
        current = open(full).read() if os.path.exists(full) else None
        if current == content:
            continue
        if check:
            drifted.append(path)
            continue
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as handle:
            handle.write(content)
        print(f"wrote {path}")
    for path in drifted:
        print(f"drifted: {path} (run make docs)", file=sys.stderr)
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main())
