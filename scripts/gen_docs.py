#!/usr/bin/env python3
"""Generate man/*.1, man/celops.7, completions/ and README's vocabulary from declarations.

argparse-manpage writes the roff, shtab the bash and zsh completions; nothing
here is hand-written per command. A command's RECORDS section comes from
celops/records.py (COMMAND_RECORDS: the types and fields it writes), after
its INPUT section if it has one. ``--check`` compares instead of writing and
exits 1 when the committed files have drifted.
"""

import argparse
import importlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import shtab  # noqa: E402
from argparse_manpage.manpage import Manpage  # noqa: E402

from celops import __version__  # noqa: E402
from celops.commands import COMMANDS, TOOLS  # noqa: E402
from celops.core.cli import completion_preamble  # noqa: E402
from celops.core import render  # noqa: E402
from celops.records import COMMAND_RECORDS, RECORDS, fields_written  # noqa: E402

MAN_DATA = {"version": __version__, "project_name": "celops", "manual_title": "celops manual",
            "date": "November 2026"}


# man indents a section's text by 7 columns: what is not filled must fit the rest of 80.
NOFILL_WIDTH = 80 - 7
# "  TERM  what it means" (two spaces or more between): a definition list, filled by groff.
_DEFINITION = re.compile(r"^  (\S(?:.*?\S)?) {2,}(\S.*)$")
_CODE = re.compile(r"`([^`\n]+)`")
_LONG_WORD = re.compile(r"\S{%d,}" % (NOFILL_WIDTH // 2))


def manpage(parser):
    page = Manpage(parser, _data=dict(MAN_DATA))
    sections = [(heading, _roff_paragraphs(text, shell=heading == "EXAMPLES")) for heading, text in parser.man_sections]
    if "RECORDS" in dict(sections):
        raise SystemExit(f"{parser.prog}: a RECORDS section is generated from COMMAND_RECORDS in celops/records.py")
    if parser.prog in COMMANDS:  # TOOLS write no records
        after_input = next((at + 1 for at, (heading, _) in enumerate(sections) if heading == "INPUT"), 0)
        sections.insert(after_input, ("RECORDS", records_section(parser.prog)))
    for heading, roff in sections:
        page.add_section(heading, "=", roff)
    see_also = [rf"\fB{name}\fR(1)" for name in [*COMMANDS, *TOOLS] if name != parser.prog] + [r"\fBcelops\fR(7)"]
    page.add_section("SEE ALSO", "=", ", ".join(see_also))
    return _finished(str(page))


def _finished(roff):
    """No hyphenation (it would break names and options in two); markdown's `code` left in filled text
    (argparse descriptions are shared with --help) in bold."""
    lines, filling = [], True
    for line in roff.split("\n"):
        filling = {".nf": False, ".fi": True}.get(line, filling)
        lines.append(_CODE.sub(r"\\fB\1\\fR", line) if filling else line)
        if line.startswith(".TH "):
            lines.append(".nh")
    return "\n".join(lines)


def _roff_paragraphs(text, shell=False):
    """Plain text to roff that fits 80 columns.

    Blank lines separate paragraphs, which groff fills. A block of indented
    "TERM  meaning" lines becomes a definition list (filled too). Other
    indented blocks (commands, records) keep their lines; a line too long is
    folded, with a backslash when ``shell`` says it is a command.
    """
    out = []
    for block in text.strip("\n").rstrip().split("\n\n"):
        lines = block.split("\n")
        if not any(line.startswith("  ") for line in lines):
            out.append(_prose(" ".join(lines)))
        elif not shell and all(_DEFINITION.match(line) for line in lines):
            out.append(_definitions([_DEFINITION.match(line).groups() for line in lines]))
        else:
            folded = [part for line in lines for part in _fold(line, shell)]
            out.append(".nf\n" + "\n".join(_escape(line) for line in folded) + "\n.fi")
    return "\n.PP\n".join(out)


def _definitions(pairs, widest=30):
    """A .TP list: a term up to ``widest`` columns shares its line with its meaning; a longer one sits above it."""
    indent = min(max(len(term) for term, _ in pairs), widest) + 2
    items = "\n".join(f".TP {indent}n\n{_escape(term)}\n{_prose(meaning)}" for term, meaning in pairs)
    return f".PD 0\n{items}\n.PD"


def _fold(line, shell):
    """``line`` as lines of at most NOFILL_WIDTH columns, broken at spaces (or after commas), indented further."""
    indent = len(line) - len(line.lstrip(" ")) + 4
    parts = []
    while len(line) > NOFILL_WIDTH:
        room = NOFILL_WIDTH - 2 if shell else NOFILL_WIDTH
        cut = max(line.rfind(" ", indent, room), -1 if shell else line.rfind(",", indent, room - 1) + 1)
        if cut <= indent:
            break  # one unbreakable word: leave it long rather than wrong
        head, line = line[:cut].rstrip(), " " * indent + line[cut:].lstrip()
        parts.append(head + " \\" if shell else head)
    return parts + [line]


def _prose(text):
    """Filled text: escaped, markdown's `code` in bold, long words breakable after their commas."""
    return _LONG_WORD.sub(lambda word: word.group().replace(",", ",\\:"), _CODE.sub(r"\\fB\1\\fR", _escape(text)))


def _escape(line):
    line = line.replace("\\", "\\\\").replace("-", "\\-")
    return "\\&" + line if line.startswith((".", "'")) else line


def vocabulary_page():
    parser = argparse.ArgumentParser(prog="celops", add_help=False,
                                     description="the NDJSON record vocabulary shared by the celops commands")
    parser.man_short_description = "record vocabulary of the celops commands"
    page = Manpage(parser, _data=dict(MAN_DATA, manual_section=7))
    page.synopsis = []
    records = [_prose("Every command writes one compact JSON object per line on standard output; diagnostics go "
                      "to standard error as PROG: message. Times are epoch seconds as floats.")]
    for kind, spec in RECORDS.items():
        records += _record_type(kind, list(spec["fields"].items()))
    page.add_section("RECORDS", "=", "\n.PP\n".join(records))
    page.add_section("TABLES", "=", _roff_paragraphs(render.__doc__))
    page.add_section("SEE ALSO", "=", ", ".join(rf"\fB{name}\fR(1)" for name in COMMANDS))
    return _finished(str(page))


def records_section(command):
    """The RECORDS section of ``command``'s man page: the record types and fields COMMAND_RECORDS gives it."""
    if command not in COMMAND_RECORDS:
        raise SystemExit(f"{command}: add it to COMMAND_RECORDS in celops/records.py (the records it writes)")
    parts = [_prose("One compact JSON object per line on standard output, of these types (celops(7) has them "
                    "all); fields without a value are absent or null, as each says.")]
    for kind in COMMAND_RECORDS[command]:
        parts += _record_type(kind, fields_written(command, kind))
    return "\n.PP\n".join(parts)


def _record_type(kind, fields):
    """A record type as roff: its summary, who writes and reads it, and ``(names, meaning)`` as a list."""
    spec = RECORDS[kind]
    about = f"{spec['summary']} Produced by {spec['produced_by']}; consumed by {spec['consumed_by']}."
    return [f".SS {kind}\n" + _prose(about), _definitions(fields, widest=14)]


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
    modules = {**{name: f"celops.commands.{module}" for name, module in COMMANDS.items()}, **TOOLS}
    for name, module_name in modules.items():
        parser = importlib.import_module(module_name).build_parser()
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
