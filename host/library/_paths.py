"""SVG path data for the 2D vector templates: parse, write, measure, convert for drawing.

A path is a list of absolute commands ``(op, *numbers)`` with ``op`` one of ``M L Q C A Z``
(``H``/``V``/``S``/``T`` and relative commands are resolved when parsing). Parsing is bounded:
text longer than :data:`MAX_PATH_CHARS` or with more than :data:`MAX_COMMANDS` commands is
refused, as is anything that is not path syntax, each with a :class:`ValueError` saying where.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise
from typing import Any

__all__ = ["MAX_COMMANDS", "Path", "bounds", "fmt", "length", "parse", "to_cubics", "to_svg"]

MAX_PATH_CHARS = 1 << 20
MAX_COMMANDS = 100_000
Path = list[tuple[Any, ...]]  # (op, *numbers)

_TOKEN = re.compile(r"\s*,?\s*([MmLlHhVvCcSsQqTtAaZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


def fmt(v: float) -> str:
    """A number as Rust's ``{}`` prints an f64 (``50``, ``-0.5``, ``1e-7`` → ``0.0000001``)."""
    if v == 0:
        return "0" if math.copysign(1, v) > 0 else "-0"
    if float(v).is_integer() and abs(v) < 1e16:
        return str(int(v))
    text = repr(float(v))
    if "e" in text:
        text = f"{v:.17f}".rstrip("0").rstrip(".")
    return text


def _tokens(d: str) -> list[str]:
    out, pos, n = [], 0, len(d)
    while pos < n:
        m = _TOKEN.match(d, pos)
        if m is None:
            rest = d[pos:].strip(" ,\t\r\n")
            if not rest:
                break
            raise ValueError(f"unexpected {d[pos : pos + 10]!r} at character {pos}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse(d: str) -> Path:
    """The absolute commands of SVG path data ``d``."""
    if len(d) > MAX_PATH_CHARS:
        raise ValueError(f"path data is longer than {MAX_PATH_CHARS} characters")
    toks = _tokens(d)
    path: Path = []
    i = 0
    cur = (0.0, 0.0)
    start = (0.0, 0.0)
    last_ctrl: tuple[float, float] | None = None
    last_op = ""
    cmd = ""
    while i < len(toks):
        if toks[i].isalpha():
            cmd = toks[i]
            i += 1
        elif not cmd:
            raise ValueError("path data must start with a command (M)")
        up = cmd.upper()
        rel = cmd.islower()
        if up == "Z":
            path.append(("Z",))
            cur, last_ctrl, last_op = start, None, "Z"
            cmd = ""
            continue
        k = _ARITY[up]
        if i + k > len(toks) or any(t.isalpha() for t in toks[i : i + k]):
            raise ValueError(f"command {cmd!r} needs {k} numbers")
        nums = [float(t) for t in toks[i : i + k]]
        if not all(math.isfinite(v) for v in nums):
            raise ValueError(f"command {cmd!r} has a number that is not finite")
        i += k
        ox, oy = cur if rel else (0.0, 0.0)
        if up == "M":
            cur = start = (nums[0] + ox, nums[1] + oy)
            path.append(("M", *cur))
            cmd = "l" if rel else "L"
            last_ctrl = None
        elif up in ("L", "H", "V"):
            if up == "H":
                cur = (nums[0] + (cur[0] if rel else 0.0), cur[1])
            elif up == "V":
                cur = (cur[0], nums[0] + (cur[1] if rel else 0.0))
            else:
                cur = (nums[0] + ox, nums[1] + oy)
            path.append(("L", *cur))
            last_ctrl = None
        elif up in ("C", "S"):
            if up == "S":
                c1 = (
                    (2 * cur[0] - last_ctrl[0], 2 * cur[1] - last_ctrl[1])
                    if last_ctrl and last_op in "CS"
                    else cur
                )
                nums = [*c1, nums[0] + ox, nums[1] + oy, nums[2] + ox, nums[3] + oy]
            else:
                nums = [
                    nums[0] + ox,
                    nums[1] + oy,
                    nums[2] + ox,
                    nums[3] + oy,
                    nums[4] + ox,
                    nums[5] + oy,
                ]
            path.append(("C", *nums))
            last_ctrl, cur = (nums[2], nums[3]), (nums[4], nums[5])
        elif up in ("Q", "T"):
            if up == "T":
                c = (
                    (2 * cur[0] - last_ctrl[0], 2 * cur[1] - last_ctrl[1])
                    if last_ctrl and last_op in "QT"
                    else cur
                )
                nums = [*c, nums[0] + ox, nums[1] + oy]
            else:
                nums = [nums[0] + ox, nums[1] + oy, nums[2] + ox, nums[3] + oy]
            path.append(("Q", *nums))
            last_ctrl, cur = (nums[0], nums[1]), (nums[2], nums[3])
        else:  # A rx ry rotation large sweep x y
            end = (nums[5] + ox, nums[6] + oy)
            path.append(
                (
                    "A",
                    abs(nums[0]),
                    abs(nums[1]),
                    nums[2],
                    float(nums[3] != 0),
                    float(nums[4] != 0),
                    *end,
                )
            )
            cur, last_ctrl = end, None
        last_op = up
        if len(path) > MAX_COMMANDS:
            raise ValueError(f"path data has more than {MAX_COMMANDS} commands")
    return path


def to_svg(path: Path) -> str:
    parts = []
    for op, *v in path:
        if op == "A":
            rx, ry, rot, large, sweep, x, y = v
            parts.append(
                f"A{fmt(rx)},{fmt(ry)} {fmt(rot)} {int(large)} {int(sweep)} {fmt(x)},{fmt(y)}"
            )
        elif op == "Z":
            parts.append("Z")
        else:
            pts = [f"{fmt(v[j])},{fmt(v[j + 1])}" for j in range(0, len(v), 2)]
            parts.append(f"{op}{' '.join(pts)}")
    return " ".join(parts)


def _arc_cubics(
    p0: tuple[float, float],
    rx: float,
    ry: float,
    rot: float,
    large: bool,
    sweep: bool,
    p1: tuple[float, float],
) -> Path:
    """An SVG elliptical arc as cubic Béziers (the endpoint-to-centre conversion of SVG 1.1
    appendix F.6)."""
    if rx == 0 or ry == 0 or p0 == p1:
        return [("L", *p1)]
    phi = math.radians(rot)
    cp, sp = math.cos(phi), math.sin(phi)
    dx, dy = (p0[0] - p1[0]) / 2, (p0[1] - p1[1]) / 2
    x1, y1 = cp * dx + sp * dy, -sp * dx + cp * dy
    lam = (x1 / rx) ** 2 + (y1 / ry) ** 2
    if lam > 1:
        rx, ry = rx * math.sqrt(lam), ry * math.sqrt(lam)
    num = rx * rx * ry * ry - rx * rx * y1 * y1 - ry * ry * x1 * x1
    den = rx * rx * y1 * y1 + ry * ry * x1 * x1
    coef = math.sqrt(max(0.0, num / den)) if den else 0.0
    if large == sweep:
        coef = -coef
    cx1, cy1 = coef * rx * y1 / ry, -coef * ry * x1 / rx
    cx = cp * cx1 - sp * cy1 + (p0[0] + p1[0]) / 2
    cy = sp * cx1 + cp * cy1 + (p0[1] + p1[1]) / 2
    t1 = math.atan2((y1 - cy1) / ry, (x1 - cx1) / rx)
    t2 = math.atan2((-y1 - cy1) / ry, (-x1 - cx1) / rx)
    dt = t2 - t1
    if sweep and dt < 0:
        dt += 2 * math.pi
    elif not sweep and dt > 0:
        dt -= 2 * math.pi
    n = max(1, math.ceil(abs(dt) / (math.pi / 2) - 1e-9))
    step = dt / n
    k = 4 / 3 * math.tan(step / 4)
    out: Path = []

    def point(t: float) -> tuple[float, float]:
        x, y = rx * math.cos(t), ry * math.sin(t)
        return cp * x - sp * y + cx, sp * x + cp * y + cy

    def deriv(t: float) -> tuple[float, float]:
        x, y = -rx * math.sin(t), ry * math.cos(t)
        return cp * x - sp * y, sp * x + cp * y

    for j in range(n):
        a, b = t1 + j * step, t1 + (j + 1) * step
        pa, pb, da, db = point(a), point(b), deriv(a), deriv(b)
        out.append(
            ("C", pa[0] + k * da[0], pa[1] + k * da[1], pb[0] - k * db[0], pb[1] - k * db[1], *pb)
        )
    out[-1] = (*out[-1][:5], p1[0], p1[1])
    return out


def to_cubics(path: Path) -> Path:
    """The same path with arcs as cubic Béziers (what a rasterizer takes)."""
    out: Path = []
    cur = start = (0.0, 0.0)
    for op, *v in path:
        if op == "A":
            out.extend(_arc_cubics(cur, v[0], v[1], v[2], bool(v[3]), bool(v[4]), (v[5], v[6])))
        else:
            out.append((op, *v))
        if op == "M":
            start = (v[0], v[1])
        if op == "Z":
            cur = start
        elif v:
            cur = (v[-2], v[-1])
    return out


def flatten(path: Path, steps: int = 32) -> list[list[tuple[float, float]]]:
    """Polylines of the path (one per sub-path), curves sampled ``steps`` times."""
    lines: list[list[tuple[float, float]]] = []
    cur = start = (0.0, 0.0)
    for op, *v in to_cubics(path):
        if op == "M":
            cur = start = (v[0], v[1])
            lines.append([cur])
            continue
        if not lines:
            lines.append([cur])
        if op == "Z":
            lines[-1].append(start)
            cur = start
            continue
        if op == "L":
            pts = [(v[0], v[1])]
        elif op == "Q":
            pts = [
                (
                    (1 - t) ** 2 * cur[0] + 2 * (1 - t) * t * v[0] + t * t * v[2],
                    (1 - t) ** 2 * cur[1] + 2 * (1 - t) * t * v[1] + t * t * v[3],
                )
                for t in (i / steps for i in range(1, steps + 1))
            ]
        else:
            pts = [
                (
                    (1 - t) ** 3 * cur[0]
                    + 3 * (1 - t) ** 2 * t * v[0]
                    + 3 * (1 - t) * t * t * v[2]
                    + t**3 * v[4],
                    (1 - t) ** 3 * cur[1]
                    + 3 * (1 - t) ** 2 * t * v[1]
                    + 3 * (1 - t) * t * t * v[3]
                    + t**3 * v[5],
                )
                for t in (i / steps for i in range(1, steps + 1))
            ]
        lines[-1].extend(pts)
        cur = pts[-1]
    return lines


def length(path: Path) -> float:
    return sum(math.dist(a, b) for line in flatten(path, 64) for a, b in pairwise(line))


def bounds(path: Path) -> tuple[float, float, float, float]:
    """``(min_x, min_y, max_x, max_y)`` of the path's points and control points (arcs: their
    end points, as the SDK); all zero for an empty path."""
    xs: list[float] = []
    ys: list[float] = []
    for op, *v in path:
        pts = v[5:7] if op == "A" else v
        xs.extend(pts[0::2])
        ys.extend(pts[1::2])
    if not xs:
        return (0.0, 0.0, 0.0, 0.0)
    return min(xs), min(ys), max(xs), max(ys)
