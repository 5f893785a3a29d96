"""The HTML page: styles and script inline, data in a JSON script block (`page.build_page` fills it)."""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2em; color: #222; background: #fff; }
h1 { font-size: 1.2em; margin: 0 0 .3em; }
#summary { color: #444; margin-bottom: .6em; }
#controls { margin: .4em 0; display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
#text { font: 14px/1.7 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all;
        border: 1px solid #ddd; padding: .6em; max-height: 60vh; overflow-y: auto; }
#text span { cursor: default; }
#text span.nl { color: #999; }
#text span.hit { outline: 2px solid #000; }
#tip { position: fixed; display: none; background: #fff; border: 1px solid #888; border-radius: 4px;
       padding: .4em .6em; box-shadow: 0 2px 6px rgba(0,0,0,.25); font: 13px ui-monospace, monospace;
       pointer-events: none; z-index: 10; white-space: pre; }
#legend { display: flex; align-items: center; gap: .4em; font-size: 12px; }
#legend .bar { width: 180px; height: 12px; border: 1px solid #aaa; }
#chart { width: 100%; height: 90px; border: 1px solid #ddd; margin-top: .6em; cursor: crosshair; }
#units { font-size: 13px; }
.note { color: #777; font-size: 12px; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="summary"></div>
<div id="controls">
  <label>Colour by <select id="mode"></select></label>
  <span id="legend"><span id="lo"></span><span class="bar" id="bar"></span><span id="hi"></span></span>
</div>
<div id="text"></div>
<svg id="chart" preserveAspectRatio="none"></svg>
<div class="note" id="note"></div>
<div id="tip"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const chars = Array.from(D.text);
const BITS = [[0, [230, 245, 230]], [2, [250, 240, 150]], [4, [250, 170, 90]], [6, [235, 90, 70]], [8, [170, 20, 40]]];
const BLUE = [40, 90, 220], WHITE = [250, 250, 250], RED = [220, 40, 40];
function mix(a, b, t) { t = Math.max(0, Math.min(1, t)); return a.map((v, i) => Math.round(v + (b[i] - v) * t)); }
function bitsColour(b) {
  for (let i = 1; i < BITS.length; i++) {
    if (b <= BITS[i][0]) return mix(BITS[i - 1][1], BITS[i][1], (b - BITS[i - 1][0]) / (BITS[i][0] - BITS[i - 1][0]));
  }
  return BITS[BITS.length - 1][1];
}
function unitColour(v) { return v >= 0 ? mix(WHITE, RED, v) : mix(WHITE, BLUE, -v); }
function css(rgb) { return "rgb(" + rgb.join(",") + ")"; }
function show(ch) { return ch === "\n" ? "\u21b5" : ch === "\t" ? "\u2192" : ch === " " ? "\u2423" : ch; }

document.getElementById("title").textContent = D.title;
document.getElementById("summary").textContent = D.summary_line;
document.getElementById("note").textContent = D.note || "";
const box = document.getElementById("text");
const spans = [];
const frag = document.createDocumentFragment();
chars.forEach((ch, i) => {
  const s = document.createElement("span");
  s.dataset.i = i;
  if (ch === "\n") { s.textContent = "\u21b5\n"; s.className = "nl"; } else { s.textContent = ch; }
  spans.push(s);
  frag.appendChild(s);
});
box.appendChild(frag);

const mode = document.getElementById("mode");
if (D.bits) mode.add(new Option("surprisal (bits)", "bits"));
(D.units || []).forEach((u, j) => mode.add(new Option(u.name + (u.label ? "  " + u.label : ""), "u" + j)));

function colourOf(i) {
  if (mode.value === "bits") { const b = D.bits[i]; return b === null ? null : bitsColour(b); }
  const v = D.units[+mode.value.slice(1)].values[i];
  return v === null ? null : unitColour(v);
}
function recolour() {
  for (let i = 0; i < spans.length; i++) {
    const c = colourOf(i);
    spans[i].style.backgroundColor = c === null ? "" : css(c);
  }
  const bar = document.getElementById("bar");
  if (mode.value === "bits") {
    bar.style.background = "linear-gradient(to right," + BITS.map(s => css(s[1])).join(",") + ")";
    document.getElementById("lo").textContent = "0 bits";
    document.getElementById("hi").textContent = "8+ bits";
  } else {
    bar.style.background = "linear-gradient(to right," + [BLUE, WHITE, RED].map(css).join(",") + ")";
    document.getElementById("lo").textContent = "-1";
    document.getElementById("hi").textContent = "+1";
  }
  drawChart();
}
mode.addEventListener("change", recolour);

const tip = document.getElementById("tip");
function tipText(i) {
  const lines = ["#" + i + "  " + JSON.stringify(chars[i])];
  if (D.bits) {
    const b = D.bits[i];
    lines.push(b === null ? "not scored (nothing before it)" : b.toFixed(2) + " bits");
    const top = D.top ? D.top[i] : null;
    if (top && top.length) {
      lines.push("model's guesses:");
      top.forEach(g => {
        const mark = g[0] === chars[i] ? "  \u2190" : "";
        lines.push("  " + show(g[0]).padEnd(3) + (100 * g[1]).toFixed(1).padStart(5) + "%" + mark);
      });
    }
  }
  if (mode.value !== "bits" && D.units && D.units.length) {
    const u = D.units[+mode.value.slice(1)];
    const v = u.values[i];
    lines.push("unit " + u.name + ": " + (v === null ? "-" : v.toFixed(3)));
  }
  return lines.join("\n");
}
let hit = null;
function showTip(ev) {
  const s = ev.target.closest("span[data-i]");
  if (!s) return;
  if (hit) hit.classList.remove("hit");
  hit = s; s.classList.add("hit");
  tip.textContent = tipText(+s.dataset.i);
  tip.style.display = "block";
  const r = s.getBoundingClientRect();
  let x = r.left, y = r.bottom + 6;
  if (x + tip.offsetWidth > innerWidth - 8) x = innerWidth - tip.offsetWidth - 8;
  if (y + tip.offsetHeight > innerHeight - 8) y = r.top - tip.offsetHeight - 6;
  tip.style.left = Math.max(4, x) + "px";
  tip.style.top = Math.max(4, y) + "px";
}
box.addEventListener("mouseover", showTip);
box.addEventListener("click", showTip);
box.addEventListener("mouseleave", () => { tip.style.display = "none"; if (hit) hit.classList.remove("hit"); });

const chart = document.getElementById("chart");
function series() {
  if (mode.value === "bits") return { values: D.bits, lo: 0, hi: Math.max(8, ...D.bits.filter(b => b !== null)) };
  return { values: D.units[+mode.value.slice(1)].values, lo: -1, hi: 1 };
}
function drawChart() {
  const NS = "http://www.w3.org/2000/svg";
  while (chart.firstChild) chart.removeChild(chart.firstChild);
  const W = 1000, H = 100, n = chars.length;
  chart.setAttribute("viewBox", "0 0 " + W + " " + H);
  const s = series();
  const bins = Math.min(n, W);
  let d = "";
  for (let b = 0; b < bins; b++) {
    let best = null;
    for (let i = Math.floor(b * n / bins); i < Math.floor((b + 1) * n / bins); i++) {
      const v = s.values[i];
      if (v !== null && (best === null || Math.abs(v) > Math.abs(best))) best = v;
    }
    if (best === null) continue;
    const x = (b + 0.5) * W / bins, y = H - (best - s.lo) / (s.hi - s.lo) * H;
    d += (d ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
  }
  const path = document.createElementNS(NS, "path");
  path.setAttribute("d", d);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", mode.value === "bits" ? "#c0392b" : "#2c3e50");
  path.setAttribute("stroke-width", "1");
  path.setAttribute("vector-effect", "non-scaling-stroke");
  chart.appendChild(path);
  const label = document.createElementNS(NS, "title");
  label.textContent = (mode.value === "bits" ? "bits" : "unit value") + " over position; click to jump";
  chart.appendChild(label);
}
chart.addEventListener("click", ev => {
  const r = chart.getBoundingClientRect();
  const i = Math.min(chars.length - 1, Math.floor((ev.clientX - r.left) / r.width * chars.length));
  spans[i].scrollIntoView({ block: "center" });
  showTip({ target: spans[i] });
});
recolour();
</script>
</body>
</html>
"""
