"""Output of the operator commands, as the docker CLI prints: a table, JSON, or a
template per row (`{{.Field}}`, `{{.Field.Sub}}`, `{{json .}}`, `{{json .Field}}`)."""

import json
import re

TEMPLATE_RE = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def _lookup(row, path):
    value = row
    for part in [p for p in path.split(".") if p]:
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def apply_template(template, row):
    """A docker-style template over one row; an unknown field prints as empty."""
    template = template.replace("\\n", "\n").replace("\\t", "\t")

    def sub(m):
        value = _lookup(row, m.group(2))
        if m.group(1):
            return json.dumps(value, sort_keys=True)
        if isinstance(value, (list, dict)):
            return json.dumps(value, sort_keys=True)
        return str(value)

    return TEMPLATE_RE.sub(sub, template)


def table(rows, columns):
    """Columns headed in upper case, as `docker ps` prints them."""
    head = [re.sub(r"(?<!^)(?=[A-Z][a-z])", " ", c).upper() for c in columns]
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(head)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["   ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value):
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    if value in ("", None):
        return "-"
    return str(value)


def render(rows, as_json=False, template=None, columns=None, single=False):
    if template:
        return "\n".join(apply_template(template, r) for r in rows)
    if as_json or columns is None:
        return json.dumps(rows[0] if single and rows else rows, indent=2, sort_keys=True)
    return table(rows, columns)
