// Small SVG charts, drawn by hand (no chart library, nothing fetched). Every chart puts the
// numbers it plots on the <svg> as data-values (JSON), so a test reads exactly what is drawn.

const NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

function frame(width, height, label, values) {
  // width= caps a chart at its drawn size (CSS max-width shrinks it on phones), so text
  // keeps the size it was laid out for instead of growing with a wide column.
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, role: "img", "aria-label": label, class: "chart" });
  svg.append(s("title", {}, label));
  svg.dataset.values = JSON.stringify(values);
  return svg;
}

export const fmt = (x, digits = 3) => {
  if (x === null || x === undefined) return "—";
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(2) : x.toFixed(digits).replace(/\.?0+$/, "");
};

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) [lo, hi] = [lo - 0.5, hi + 0.5]; // a flat series still gets a visible axis
  return [lo, hi];
}

// Horizontal bars, one per label; for weights p_μ (0..1) pass max 1.
export function barChart({ labels, values, label, max, width = 360, rowHeight = 22 }) {
  const left = 110;
  const right = 60;
  const height = rowHeight * values.length + 8;
  const svg = frame(width, height, label, values);
  const top = max ?? Math.max(...values, 1e-12);
  values.forEach((v, i) => {
    const y = 4 + i * rowHeight;
    const w = Math.max(0, ((width - left - right) * v) / top);
    svg.append(
      s("text", { x: left - 6, y: y + rowHeight * 0.65, "text-anchor": "end", class: "tick" }, labels[i]),
      s("rect", { x: left, y: y + 3, width: w.toFixed(2), height: rowHeight - 6, class: "bar" }),
      s("text", { x: left + w + 4, y: y + rowHeight * 0.65, class: "tick" }, fmt(v)),
    );
  });
  return svg;
}

// y against x, with min/max ticks on both axes and a dot per recorded point.
export function lineChart({ xs, ys, label, xLabel, yLabel, width = 520, height = 240 }) {
  const m = { l: 70, r: 16, t: 14, b: 40 };
  const svg = frame(width, height, label, ys);
  svg.dataset.xs = JSON.stringify(xs);
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (y) => height - m.b - ((y - y0) / (y1 - y0)) * (height - m.t - m.b);
  svg.append(
    s("line", { x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b, class: "axis" }),
    s("line", { x1: m.l, y1: m.t, x2: m.l, y2: height - m.b, class: "axis" }),
    s("text", { x: m.l - 6, y: Y(y1) + 4, "text-anchor": "end", class: "tick" }, fmt(y1)),
    s("text", { x: m.l - 6, y: Y(y0) + 4, "text-anchor": "end", class: "tick" }, fmt(y0)),
    s("text", { x: X(x0), y: height - m.b + 16, class: "tick" }, fmt(x0)),
    s("text", { x: X(x1), y: height - m.b + 16, "text-anchor": "end", class: "tick" }, fmt(x1)),
    s("text", { x: (m.l + width - m.r) / 2, y: height - 6, "text-anchor": "middle", class: "axis-label" }, xLabel),
    s("text", { x: 12, y: (m.t + height - m.b) / 2, "text-anchor": "middle", class: "axis-label",
      transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})` }, yLabel),
  );
  const points = xs.map((x, i) => `${X(x).toFixed(2)},${Y(ys[i]).toFixed(2)}`).join(" ");
  svg.append(s("polyline", { points, class: "line" }));
  if (xs.length <= 60) xs.forEach((x, i) => svg.append(s("circle", { cx: X(x), cy: Y(ys[i]), r: 3, class: "dot" })));
  return svg;
}

// Counts of values in equal bins, with a vertical marker (the fixed-point threshold T(β)).
export function histogram({ values, bins = 30, marker, markerLabel, label, width = 520, height = 220 }) {
  const m = { l: 44, r: 16, t: 22, b: 36 };
  const lo0 = Math.min(...values, marker ?? Infinity);
  const hi0 = Math.max(...values, marker ?? -Infinity);
  const [lo, hi] = extent([lo0, hi0]);
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))] += 1;
  const svg = frame(width, height, label, counts);
  svg.dataset.range = JSON.stringify([lo, hi]);
  const top = Math.max(...counts, 1);
  const bw = (width - m.l - m.r) / bins;
  const X = (x) => m.l + ((x - lo) / (hi - lo)) * (width - m.l - m.r);
  counts.forEach((c, i) => {
    const h = ((height - m.t - m.b) * c) / top;
    const edge = lo + ((i + 0.5) / bins) * (hi - lo);
    const cls = marker !== undefined && edge < marker ? "bar bar-fail" : "bar";
    svg.append(s("rect", { x: (m.l + i * bw + 0.5).toFixed(2), y: (height - m.b - h).toFixed(2),
      width: Math.max(0, bw - 1).toFixed(2), height: h.toFixed(2), class: cls }));
  });
  svg.append(
    s("line", { x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b, class: "axis" }),
    s("text", { x: m.l, y: height - m.b + 16, class: "tick" }, fmt(lo)),
    s("text", { x: width - m.r, y: height - m.b + 16, "text-anchor": "end", class: "tick" }, fmt(hi)),
    s("text", { x: m.l - 6, y: m.t + 8, "text-anchor": "end", class: "tick" }, String(top)),
    s("text", { x: m.l - 6, y: height - m.b, "text-anchor": "end", class: "tick" }, "0"),
    s("text", { x: 12, y: (m.t + height - m.b) / 2, "text-anchor": "middle", class: "axis-label",
      transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})` }, "memories"),
    s("text", { x: (m.l + width - m.r) / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" }, "separation Δᵢ"),
  );
  if (marker !== undefined && Number.isFinite(marker)) {
    svg.append(
      s("line", { x1: X(marker), y1: m.t - 6, x2: X(marker), y2: height - m.b, class: "marker" }),
      // Label on the side with room, so it is not cut at the chart's edge.
      X(marker) > width / 2
        ? s("text", { x: X(marker) - 4, y: m.t - 8, "text-anchor": "end", class: "marker-label" }, markerLabel ?? "")
        : s("text", { x: X(marker) + 4, y: m.t - 8, class: "marker-label" }, markerLabel ?? ""),
    );
  }
  return svg;
}

// A vector as a side × side grey image (dark = large), hidden features hatched in a colour.
// Values are scaled to the vector's own range so a completion and its cue look alike.
export function imageOf(vec, side, { label = "vector as image", hidden = null, size = 96 } = {}) {
  const svg = frame(side, side, label, vec);
  svg.setAttribute("width", size);
  svg.setAttribute("height", size);
  svg.classList.add("pixels");
  const [lo, hi] = extent(vec);
  vec.forEach((v, i) => {
    const x = i % side;
    const y = Math.floor(i / side);
    const attrs = { x, y, width: 1.02, height: 1.02 };
    if (hidden?.[i]) attrs.class = "px-hidden";
    else attrs.fill = grey((v - lo) / (hi - lo));
    svg.append(s("rect", attrs));
  });
  return svg;
}

export function grey(t) {
  const c = Math.round(255 * (1 - Math.min(1, Math.max(0, t))));
  return `rgb(${c},${c},${c})`;
}

// A non-square vector as a strip of bars (value per feature), so every bank can be looked at.
export function stripOf(vec, { label = "vector", width = 320, height = 48 } = {}) {
  const svg = frame(width, height, label, vec);
  const [lo, hi] = extent([...vec, 0]);
  const Y = (y) => height - ((y - lo) / (hi - lo)) * height;
  const bw = width / vec.length;
  vec.forEach((v, i) => {
    const y = Math.min(Y(v), Y(0));
    svg.append(s("rect", { x: (i * bw).toFixed(2), y: y.toFixed(2), width: Math.max(bw, 0.5).toFixed(2),
      height: Math.abs(Y(v) - Y(0)).toFixed(2), class: "bar" }));
  });
  return svg;
}

export const squareSide = (dim) => {
  const side = Math.round(Math.sqrt(dim));
  return side * side === dim && side > 1 ? side : null;
};
