// The explorer app's front-end helper (anywidget, invisible): keyboard shortcuts, chart resizing, downloads.
//
// * Keyboard: while the focus is inside the app (click anywhere in it) and not in a text box, the keys listed in
//   the `shortcuts` trait ({key: action}) send {event: "key", action} to Python, which runs the action.
// * Resizing: plotly charts size themselves to their box on a window resize only; when the app's or a chart box's
//   width changes (window, side panel, columns wrapping) this sends the charts a resize so they fill their boxes
//   again. Chart boxes are the elements with class `pe-plot-box` (a panel added later can use it too).

function render({ model, el }) {
  el.classList.add("pe-bridge");
  let app = null;
  let timer = null;
  const widths = new WeakMap();
  const watched = new WeakSet();
  const ro = new ResizeObserver((entries) => {
    let changed = false;
    for (const e of entries) {
      const w = Math.round(e.contentRect.width);
      if (widths.get(e.target) !== w) { widths.set(e.target, w); changed = true; }
    }
    watch(); // chart boxes added since (a panel added later)
    if (!changed) return;
    clearTimeout(timer);
    timer = setTimeout(() => window.dispatchEvent(new Event("resize")), 120);
  });
  // the app and every chart box (class pe-plot-box): a chart redraws when its own box changes width
  const watch = () => {
    if (!app) return;
    for (const b of [app, ...app.querySelectorAll(".pe-plot-box")]) {
      if (!watched.has(b)) { watched.add(b); ro.observe(b); }
    }
  };
  const typing = (t) => t && (t.closest("input, textarea, select, [contenteditable='true']") !== null);
  const onKey = (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.target.closest && e.target.closest(".pe-gv-viewport")) return; // the graph has its own keys
    const action = (model.get("shortcuts") || {})[e.key.toLowerCase()];
    if (!action) return;
    e.preventDefault();
    e.stopPropagation(); // not a JupyterLab command (e.g. 'a' would insert a cell)
    model.send({ event: "key", action });
  };
  const attach = () => {
    app = el.closest(".pe-app");
    if (!app) {
      if (el.isConnected || document.contains(el)) return;
      requestAnimationFrame(attach);
      return;
    }
    if (!app.hasAttribute("tabindex")) app.setAttribute("tabindex", "-1");
    app.addEventListener("keydown", onKey);
    watch();
    setTimeout(() => window.dispatchEvent(new Event("resize")), 50); // charts drawn before layout settled
  };
  requestAnimationFrame(attach);
  // {event: "download", filename, text} from Python: hand the text to the browser as a file download
  const onMsg = (msg) => {
    if (!msg || msg.event !== "download") return;
    const url = URL.createObjectURL(new Blob([msg.text], { type: "text/plain" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = msg.filename || "download.txt";
    a.style.display = "none";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
  };
  model.on("msg:custom", onMsg);
  return () => {
    model.off("msg:custom", onMsg);
    ro.disconnect();
    clearTimeout(timer);
    if (app) app.removeEventListener("keydown", onKey);
  };
}

export default { render };
