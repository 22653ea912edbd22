"""Small inline SVG charts of time-bound findings: a timeline of polls against a deadline (HLT-02, HLT-03),
a response time against its budget (HLT-06). Rendered from finding details, so any check that records
``deadline_s`` + ``timeline`` (or ``budget_s`` + ``slowest_s``) gets one."""

from __future__ import annotations

from html import escape
from typing import Any

W, H, PAD = 320, 58, 12
STATUS_COLOR = {"UP": "#18753c", "DOWN": "#ce0500"}
GREY = "#888"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value else None


def has_chart(details: Any) -> bool:
    return isinstance(details, dict) and (
        (_num(details.get("deadline_s")) is not None and isinstance(details.get("timeline"), list))
        or (_num(details.get("budget_s")) is not None and _num(details.get("slowest_s")) is not None))


def chart(details: Any, requirement: str = "", compact: bool = False) -> str:
    """SVG (with a French caption) for a finding's details, or '' when they hold no timing.
    compact: smaller, without the caption (matrix of requirements)."""
    if not has_chart(details):
        return ""
    if isinstance(details.get("timeline"), list) and _num(details.get("deadline_s")) is not None:
        out = _timeline(details, requirement)
    else:
        out = _budget(details, requirement)
    if compact:
        out = out.replace('<figure class="chart">', '<figure class="chart compact">', 1)
        out = out[:out.index('<div class="small legend">')] + "</figure>"
    return out


def _x(t: float, tmax: float) -> float:
    return PAD + (W - 2 * PAD) * max(0.0, min(t, tmax)) / tmax


def _timeline(details: dict[str, Any], requirement: str) -> str:
    deadline = _num(details["deadline_s"]) or 0.0
    rows = [r for r in details["timeline"][:400] if isinstance(r, dict) and _num(r.get("t_s")) is not None]
    last = max([_num(r["t_s"]) or 0.0 for r in rows], default=0.0)
    tmax = max(deadline * 1.2, last * 1.05, 1.0)
    xd = _x(deadline, tmax)
    hit = _num(details.get("detected_after_s")) or _num(details.get("recovered_after_s"))
    parts = [f'<svg class="chart" role="img" width="{W}" height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(requirement)} : réponses du HealthCheck dans le temps, échéance {deadline:g} s</title>",
             f'<rect x="{xd:.1f}" y="4" width="{W - PAD - xd:.1f}" height="32" fill="#f3f3f3"/>',
             f'<line x1="{PAD}" y1="36" x2="{W - PAD}" y2="36" stroke="#444"/>',
             f'<line x1="{xd:.1f}" y1="2" x2="{xd:.1f}" y2="40" stroke="#000091" stroke-width="2" stroke-dasharray="4 2"/>',
             f'<text x="{xd - 3:.1f}" y="12" font-size="10" text-anchor="end" fill="#000091">échéance {deadline:g} s</text>']
    for r in rows:
        t = _num(r["t_s"]) or 0.0
        status = r.get("status") if r.get("http") else None
        color = STATUS_COLOR.get(status, GREY)
        label = f"{t:g} s : " + (f"HTTP {r.get('http')} {status or ''}".strip() if r.get("http") else "sans réponse")
        parts.append(f'<circle cx="{_x(t, tmax):.1f}" cy="24" r="4" fill="{color}"><title>{escape(label)}</title></circle>')
    if hit is not None:
        parts.append(f'<circle cx="{_x(hit, tmax):.1f}" cy="24" r="7" fill="none" stroke="#000" stroke-width="1.5"/>')
    parts.append(f'<text x="{PAD}" y="52" font-size="10">0 s</text>'
                 f'<text x="{W - PAD}" y="52" font-size="10" text-anchor="end">{tmax:.3g} s</text></svg>')
    caption = ("<div class=\"small legend\"><span style=\"color:#18753c\">●</span> UP "
               "<span style=\"color:#ce0500\">●</span> DOWN <span style=\"color:#888\">●</span> autre / sans réponse · "
               + (f"attendu atteint à {hit:g} s" if hit is not None else f"attendu non atteint avant {deadline:g} s")
               + f" ({len(rows)} sondage{'s' if len(rows) > 1 else ''})</div>")
    return "<figure class=\"chart\">" + "".join(parts) + caption + "</figure>"


def _budget(details: dict[str, Any], requirement: str) -> str:
    budget, slowest = _num(details["budget_s"]) or 0.0, _num(details["slowest_s"]) or 0.0
    tmax = max(budget * 1.2, slowest * 1.05, 0.1)
    xb, xs = _x(budget, tmax), _x(slowest, tmax)
    color = "#ce0500" if slowest > budget else "#18753c"
    return ("<figure class=\"chart\">"
            f'<svg class="chart" role="img" width="{W}" height="{H - 14}" viewBox="0 0 {W} {H - 14}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(requirement)} : réponse la plus lente {slowest:g} s pour un budget de {budget:g} s</title>"
            f'<rect x="{PAD}" y="14" width="{xs - PAD:.1f}" height="12" fill="{color}"/>'
            f'<line x1="{xb:.1f}" y1="4" x2="{xb:.1f}" y2="32" stroke="#000091" stroke-width="2" stroke-dasharray="4 2"/>'
            f'<text x="{xb - 3:.1f}" y="11" font-size="10" text-anchor="end" fill="#000091">budget {budget:g} s</text>'
            f'<text x="{PAD}" y="42" font-size="10">0 s</text>'
            f'<text x="{W - PAD}" y="42" font-size="10" text-anchor="end">{tmax:.3g} s</text></svg>'
            f"<div class=\"small legend\">réponse la plus lente : {slowest:g} s"
            f"{' sur ' + str(details['answers']) + ' réponses' if isinstance(details.get('answers'), int) else ''}</div>"
            "</figure>")
