// The dependency-graph view's front end (anywidget): shows the Graphviz SVG in a viewport with pan and zoom.
//
// Synced state (traitlets, set by Python's GraphState): `svg` (the layout), `styles` (per box: classes, colours,
// label lines, tooltip), `target` ({element, kind, seq}: what to bring into view), `selected` and `highlight`
// (element ids), `height`. Events to Python: {event: "click", element} and {event: "current"}. Pan and zoom are
// view-only and never leave the browser.
//
// A decision changes `styles` only: the boxes whose style changed are patched in place (no new SVG, no layout);
// a new `svg` (a block opened or closed) is drawn and then styled in full.
//
// Viewport rules: a new `target` is brought fully into view (zooming out when it does not fit, zooming in to a
// readable size for a search or the current group); a redraw without a new target keeps the box that was under
// the viewport's centre where it was.

const MIN_SCALE = 0.08;
const MAX_SCALE = 4;
const READABLE = 0.75; // scale at which 10pt labels are comfortably readable
const MIN_FIT = 0.2; // a target is not shrunk below this to fit; a bigger one shows its top part
const PAD = 16;
const PT_TO_PX = 4 / 3; // Graphviz sizes are in points

function render({ model, el }) {
  el.classList.add("pe-gv");
  const bar = document.createElement("div");
  bar.className = "pe-gv-bar";
  const mk = (label, title, cls) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "pe-gv-btn " + (cls || "");
    b.textContent = label;
    b.title = title;
    bar.appendChild(b);
    return b;
  };
  const zoomOut = mk("−", "Zoom out (or ctrl + wheel, or '-')", "pe-gv-zoom-out");
  const zoomIn = mk("+", "Zoom in (or ctrl + wheel, or '+')", "pe-gv-zoom-in");
  const fitBtn = mk("Fit", "Show the whole graph ('0')", "pe-gv-fit");
  const oneBtn = mk("1:1", "Actual size ('1')", "pe-gv-one");
  const curBtn = mk("Current group", "Open the current group's blocks and look at it ('c')", "pe-gv-current");
  const zoomLabel = document.createElement("span");
  zoomLabel.className = "pe-gv-zoom";
  bar.appendChild(zoomLabel);
  const hint = document.createElement("span");
  hint.className = "pe-gv-hint";
  hint.textContent = "drag to pan · ctrl + wheel to zoom · click a block to open it, its label to close it";
  bar.appendChild(hint);

  const vp = document.createElement("div");
  vp.className = "pe-gv-viewport";
  vp.tabIndex = 0;
  vp.setAttribute("role", "application");
  vp.setAttribute("aria-label", "dependency graph");
  const canvas = document.createElement("div");
  canvas.className = "pe-gv-canvas";
  vp.appendChild(canvas);
  el.appendChild(bar);
  el.appendChild(vp);

  let s = 1, tx = 0, ty = 0; // screen = canvas * s + t
  let natW = 0, natH = 0; // natural size of the drawing (px at scale 1)
  let seenSeq = -1;
  let pending = null; // a target waiting for the viewport to get a size
  let anchor = null; // {id, x, y}: box under the viewport centre before a redraw

  const size = () => ({ W: vp.clientWidth, H: vp.clientHeight });
  const apply = () => {
    canvas.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    zoomLabel.textContent = `${Math.round(s * 100)}%`;
  };
  const clampPan = () => {
    // keep at least part of the drawing on screen
    const { W, H } = size();
    const w = natW * s, h = natH * s;
    const minX = Math.min(PAD, W - w - PAD), maxX = Math.max(W - w - PAD, PAD);
    const minY = Math.min(PAD, H - h - PAD), maxY = Math.max(H - h - PAD, PAD);
    if (w + 2 * PAD <= W) tx = (W - w) / 2; else tx = Math.min(Math.max(tx, minX), maxX);
    if (h + 2 * PAD <= H) ty = Math.max(PAD, Math.min(ty, H - h - PAD)); else ty = Math.min(Math.max(ty, minY), maxY);
  };
  const zoomAt = (ns, cx, cy) => {
    ns = Math.min(MAX_SCALE, Math.max(MIN_SCALE, ns));
    tx = cx - ((cx - tx) * ns) / s;
    ty = cy - ((cy - ty) * ns) / s;
    s = ns;
    clampPan();
    apply();
  };
  const fitScale = () => {
    const { W, H } = size();
    if (!natW || !natH || !W || !H) return 1;
    return Math.min(1, (W - 2 * PAD) / natW, (H - 2 * PAD) / natH);
  };
  const fit = () => {
    const { W, H } = size();
    s = Math.max(MIN_SCALE, fitScale());
    tx = (W - natW * s) / 2;
    ty = Math.max(PAD, (H - natH * s) / 2);
    apply();
  };
  const find = (id) => (id ? canvas.querySelector(`[id="${CSS.escape(id)}"]`) : null);
  const boxOf = (n) => {
    // the element's box in unscaled canvas coordinates
    const r = n.getBoundingClientRect(), c = canvas.getBoundingClientRect();
    return { x: (r.left - c.left) / s, y: (r.top - c.top) / s, w: r.width / s, h: r.height / s };
  };
  const visibleAt = (b, sc, ox, oy) => {
    const { W, H } = size();
    const x0 = ox + b.x * sc, y0 = oy + b.y * sc;
    return x0 >= 0 && y0 >= 0 && x0 + b.w * sc <= W && y0 + b.h * sc <= H;
  };

  // bring element `id` into view; true when done (false: not drawn, or the viewport has no size yet)
  const show = (id, kind) => {
    const { W, H } = size();
    if (!W || !H) return false;
    if (kind === "overview") { fit(); return true; }
    const n = find(id);
    if (!n) return false;
    const b = boxOf(n);
    const fitB = Math.min((W - 2 * PAD) / Math.max(b.w, 1), (H - 2 * PAD) / Math.max(b.h, 1));
    let ns = s;
    if (b.w * s > W - 2 * PAD || b.h * s > H - 2 * PAD) ns = Math.max(Math.min(MIN_FIT, s), fitB); // too big
    if ((kind === "search" || kind === "current") && ns < READABLE) ns = Math.min(READABLE, fitB); // readable
    if (kind === "expanded" && ns < READABLE && fitB > ns) ns = Math.min(READABLE, fitB);
    ns = Math.min(MAX_SCALE, Math.max(MIN_SCALE, ns));
    if (ns !== s || !visibleAt(b, s, tx, ty)) {
      s = ns;
      tx = W / 2 - (b.x + b.w / 2) * s;
      ty = b.h * s > H - 2 * PAD ? PAD - b.y * s : H / 2 - (b.y + b.h / 2) * s;
    }
    apply();
    return true;
  };

  const centreAnchor = () => {
    // the drawn box nearest the viewport centre, with its screen position
    const { W, H } = size();
    const vr = vp.getBoundingClientRect();
    let best = null, bestD = Infinity;
    for (const g of canvas.querySelectorAll("g.node[id], g.cluster[id]")) {
      const r = g.getBoundingClientRect();
      const x = r.left + r.width / 2 - vr.left, y = r.top + r.height / 2 - vr.top;
      const d = (x - W / 2) ** 2 + (y - H / 2) ** 2 + (g.classList.contains("cluster") ? 1e6 : 0);
      if (d < bestD) { bestD = d; best = { id: g.id, x: r.left - vr.left, y: r.top - vr.top }; }
    }
    return best;
  };

  const marks = () => {
    for (const g of canvas.querySelectorAll(".pe-sel, .pe-hl")) g.classList.remove("pe-sel", "pe-hl");
    const sel = find(model.get("selected"));
    if (sel) sel.classList.add("pe-sel");
    const hl = find(model.get("highlight"));
    if (hl) hl.classList.add("pe-hl");
  };

  // ---- styles: patch the boxes whose style changed -------------------------------------------------------------
  const XLINK = "http://www.w3.org/1999/xlink";
  let applied = new Map(); // element id -> the style (JSON) it shows
  const styleBox = (g, st) => {
    const keep = ["pe-sel", "pe-hl"].filter((c) => g.classList.contains(c));
    g.setAttribute("class", ["node", ...String(st.cls || "").split(" ").filter(Boolean), ...keep].join(" "));
    for (const sh of g.querySelectorAll("path, polygon, ellipse, polyline")) {
      if (sh.getAttribute("fill") !== "none") sh.setAttribute("fill", st.fill);
      sh.setAttribute("stroke", st.stroke);
      sh.setAttribute("stroke-width", st.pw);
      if (st.dash) sh.setAttribute("stroke-dasharray", "5,2"); // Graphviz's "dashed"
      else sh.removeAttribute("stroke-dasharray");
    }
    const texts = g.querySelectorAll("text");
    (st.lines || []).forEach((line, k) => {
      if (texts[k] && texts[k].textContent !== line) texts[k].textContent = line;
    });
    for (const t of texts) t.setAttribute("fill", st.font);
    const a = g.querySelector("a");
    if (a && st.tip) a.setAttributeNS(XLINK, "xlink:title", st.tip);
  };
  const restyle = () => {
    const styles = model.get("styles") || {};
    for (const id of Object.keys(styles)) {
      const key = JSON.stringify(styles[id]);
      if (applied.get(id) === key) continue;
      const g = find(id);
      if (!g) continue;
      styleBox(g, styles[id]);
      applied.set(id, key);
    }
  };

  // a new target that the new drawing holds: follow() brings it into view, so no anchor is needed (measuring one
  // would force a layout of the page before the new SVG is even in it)
  const targetAhead = () => {
    const t = model.get("target") || {};
    if (t.seq === undefined || t.seq === seenSeq || t.kind === "keep") return false;
    if (t.kind === "overview") return true;
    return !!t.element && (model.get("svg") || "").includes(`id="${t.element}"`);
  };

  const draw = () => {
    const had = natW > 0;
    anchor = had && !targetAhead() ? centreAnchor() : null;
    canvas.innerHTML = model.get("svg");
    const svg = canvas.querySelector("svg");
    if (svg) {
      const vb = (svg.getAttribute("viewBox") || "").split(/[ ,]+/).map(Number);
      natW = (vb[2] || svg.width.baseVal.value) * PT_TO_PX;
      natH = (vb[3] || svg.height.baseVal.value) * PT_TO_PX;
      svg.setAttribute("width", `${natW}px`);
      svg.setAttribute("height", `${natH}px`);
      for (const t of svg.querySelectorAll("g.node > title, g.cluster > title")) t.remove(); // tooltips instead
    }
    canvas.style.width = `${natW}px`;
    canvas.style.height = `${natH}px`;
    applied = new Map();
    restyle();
    marks();
    if (!had) {
      const { W } = size();
      s = Math.min(1, Math.max(READABLE, W ? (W - 2 * PAD) / natW : 1));
      tx = PAD; ty = PAD;
      clampPan();
      apply();
    }
  };

  const follow = () => {
    // after a redraw or a new target: go to the target if it is new, else keep the anchor in place
    const t = model.get("target") || {};
    if (t.seq !== undefined && t.seq !== seenSeq) {
      if (t.kind === "keep" || !t.element && t.kind !== "overview") { seenSeq = t.seq; pending = null; }
      else if (show(t.element, t.kind)) { seenSeq = t.seq; pending = null; anchor = null; return; }
      else { pending = t; }
    }
    if (anchor) {
      const n = find(anchor.id);
      if (n) {
        const vr = vp.getBoundingClientRect(), r = n.getBoundingClientRect();
        tx += anchor.x - (r.left - vr.left);
        ty += anchor.y - (r.top - vr.top);
      }
      anchor = null;
    }
    clampPan();
    apply();
  };

  // ---- interaction ----------------------------------------------------------------------------------------------
  let drag = null;
  let dragged = false;
  vp.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    vp.focus({ preventScroll: true });
    drag = { x: e.clientX, y: e.clientY, tx, ty, id: e.pointerId };
    dragged = false;
  });
  vp.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 5) return;
    if (!dragged) { dragged = true; vp.setPointerCapture(drag.id); vp.classList.add("pe-gv-dragging"); }
    tx = drag.tx + dx;
    ty = drag.ty + dy;
    clampPan();
    apply();
  });
  const endDrag = () => { drag = null; vp.classList.remove("pe-gv-dragging"); };
  vp.addEventListener("pointerup", endDrag);
  vp.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("click", (e) => {
    if (dragged) { dragged = false; return; }
    const node = e.target.closest("g.node[id]");
    let id = null;
    if (node) id = node.id;
    else {
      const cl = e.target.closest("g.cluster[id]");
      if (cl && e.target.closest("text")) id = cl.id; // an open block's label closes it
    }
    if (!id) return;
    if (node && !node.classList.contains("pe-block")) {
      for (const g of canvas.querySelectorAll(".pe-sel")) g.classList.remove("pe-sel");
      node.classList.add("pe-sel"); // immediate feedback; Python confirms through `selected`
    }
    model.send({ event: "click", element: id });
  });
  // the view moves by transform only: undo any scrolling the browser does by itself (focus, find in page)
  vp.addEventListener("scroll", () => { vp.scrollTop = 0; vp.scrollLeft = 0; });
  vp.addEventListener("wheel", (e) => {
    const vr = vp.getBoundingClientRect();
    if (e.ctrlKey || e.metaKey) {
      e.preventDefault();
      zoomAt(s * Math.exp(-e.deltaY * 0.0015), e.clientX - vr.left, e.clientY - vr.top);
    } else if (document.activeElement === vp) {
      e.preventDefault(); // the graph has focus: the wheel pans it
      tx -= e.deltaX;
      ty -= e.deltaY;
      clampPan();
      apply();
    }
  }, { passive: false });
  vp.addEventListener("keydown", (e) => {
    const { W, H } = size();
    const step = 60;
    const keys = {
      ArrowLeft: () => { tx += step; }, ArrowRight: () => { tx -= step; },
      ArrowUp: () => { ty += step; }, ArrowDown: () => { ty -= step; },
      "+": () => zoomAt(s * 1.25, W / 2, H / 2), "=": () => zoomAt(s * 1.25, W / 2, H / 2),
      "-": () => zoomAt(s / 1.25, W / 2, H / 2), "0": () => fit(), "1": () => zoomAt(1, W / 2, H / 2),
      c: () => model.send({ event: "current" }),
    };
    const f = keys[e.key];
    if (!f || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    e.stopPropagation(); // keep JupyterLab's own shortcuts out of the graph
    f();
    clampPan();
    apply();
  });
  zoomIn.addEventListener("click", () => { const { W, H } = size(); zoomAt(s * 1.25, W / 2, H / 2); });
  zoomOut.addEventListener("click", () => { const { W, H } = size(); zoomAt(s / 1.25, W / 2, H / 2); });
  fitBtn.addEventListener("click", fit);
  oneBtn.addEventListener("click", () => { const { W, H } = size(); zoomAt(1, W / 2, H / 2); });
  curBtn.addEventListener("click", () => model.send({ event: "current" }));

  const setHeight = () => { vp.style.height = model.get("height") || "560px"; };
  setHeight();
  const onSvg = () => { draw(); follow(); };
  model.on("change:svg", onSvg);
  model.on("change:styles", restyle);
  model.on("change:target", follow);
  model.on("change:selected", marks);
  model.on("change:highlight", marks);
  model.on("change:height", () => { setHeight(); follow(); });
  const ro = new ResizeObserver(() => {
    if (pending) follow();
    else { clampPan(); apply(); }
  });
  ro.observe(vp);
  draw();
  follow();
  return () => ro.disconnect();
}

export default { render };
