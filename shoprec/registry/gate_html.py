"""gate.html: the gate's verdict as one self-contained page (no script, no external asset): the
checks, the metrics table, and an inline SVG bar chart per metric (candidate, production, each
baseline). Rendered from gate.json's dict, so the page always says what the JSON says."""

from __future__ import annotations

from html import escape

BAR_W, ROW_H, LABEL_W, VALUE_W = 320, 18, 230, 60
COLOURS = {"candidate": "#2b6cb0", "production": "#dd6b20", "baseline": "#a0aec0"}

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1a202c; max-width: 72em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.verdict { font-weight: 600; padding: .4em .8em; border-radius: 4px; display: inline-block; }
.pass { background: #c6f6d5; } .fail { background: #fed7d7; } .skip { color: #718096; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #e2e8f0; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; } figcaption { font-weight: 600; }
"""


def _kind(row: str) -> str:
    if row.startswith("candidate"):
        return "candidate"
    if row.startswith("production"):
        return "production"
    return "baseline"


def _num(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int | float):
        return f"{v:.4f}" if isinstance(v, float) else str(v)
    return escape(str(v))


def chart(metric: str, values: dict[str, float]) -> str:
    """A horizontal bar chart of one metric: one bar per row of the table."""
    rows = [(name, v) for name, v in values.items() if isinstance(v, int | float)]
    top = max([v for _, v in rows if v == v and v > 0] or [1.0])
    h = ROW_H * len(rows) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + BAR_W + VALUE_W}" '
             f'height="{h}" role="img" aria-label="{escape(metric)}">']
    for i, (name, v) in enumerate(rows):
        y = 4 + i * ROW_H
        width = 0.0 if v != v or v <= 0 else BAR_W * v / top  # NaN draws nothing
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{y + ROW_H - 5}" text-anchor="end" '
            f'font-size="12">{escape(name)}</text>'
            f'<rect x="{LABEL_W}" y="{y + 2}" width="{width:.1f}" height="{ROW_H - 4}" '
            f'fill="{COLOURS[_kind(name)]}"><title>{escape(name)}: {v}</title></rect>'
            f'<text x="{LABEL_W + width + 4:.1f}" y="{y + ROW_H - 5}" font-size="12">'
            f'{v:.4f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(report: dict) -> str:
    """The page of a gate report (gate.json's dict)."""
    passed = report.get("passed")
    verdict = ("passed: may be promoted to production" if passed
               else "refused: production stays as it is")
    title = f"Gate {report.get('run', '')} ({report.get('dataset', '')})"
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
           f"<style>{CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
           f"<p class='verdict {'pass' if passed else 'fail'}'>{escape(verdict)}</p>",
           f"<p>Judged: <b>{escape(str(report.get('candidate')))}</b> (serving runs the "
           f"{escape(str(report.get('recommender')))}) on <b>{escape(str(report.get('metric')))}"
           f"</b>, {escape(str(report.get('split', 'test')))} split, protocol "
           f"{escape(str(report.get('protocol')))}; production: "
           f"{escape(str(report.get('production') or 'none yet'))}. {escape(report.get('at', ''))}"
           f"</p>", "<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>value</th>"
           "<th>threshold</th><th>reason</th></tr>"]
    for c in report.get("checks", []):
        res = "skipped" if c.get("skipped") else ("pass" if c.get("passed") else "FAIL")
        cls = "skip" if c.get("skipped") else ("pass" if c.get("passed") else "fail")
        out.append(f"<tr><td>{escape(str(c.get('name')))}</td><td class='{cls}'>{res}</td>"
                   f"<td class='num'>{_num(c.get('value'))}</td>"
                   f"<td class='num'>{_num(c.get('threshold'))}</td>"
                   f"<td>{escape(str(c.get('reason', '')))}</td></tr>")
    out.append("</table>")
    table: dict[str, dict] = report.get("table") or {}
    metrics: list[str] = []
    for m in table.values():
        metrics += [k for k in m if k not in metrics]
    if table:
        out.append("<h2>Metrics (test split)</h2><table><tr><th></th>"
                   + "".join(f"<th>{escape(k)}</th>" for k in metrics) + "</tr>")
        for row, m in table.items():
            out.append(f"<tr><td>{escape(row)}</td>"
                       + "".join(f"<td class='num'>{_num(m.get(k))}</td>" for k in metrics)
                       + "</tr>")
        out.append("</table><h2>Per metric</h2><div class='charts'>")
        for k in metrics:
            values = {row: m[k] for row, m in table.items() if isinstance(m.get(k), int | float)}
            out.append(f"<figure><figcaption>{escape(k)}</figcaption>{chart(k, values)}"
                       f"</figure>")
        out.append("</div>")
    out.append("</body></html>\n")
    return "\n".join(out)
