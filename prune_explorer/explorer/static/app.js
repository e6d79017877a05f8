// The explorer app's front-end helper (anywidget, invisible): keyboard shortcuts and downloads.
//
// * Keyboard: while the focus is inside the app (click anywhere in it) and not in a text box, the keys listed in
//   the `shortcuts` trait ({key: action}) send {event: "key", action} to Python, which runs the action.
// * Downloads: {event: "download", filename, text} from Python becomes a file download in the browser.
// (Charts size themselves: see plotly_chart.js.)

function render({ model, el }) {
  el.classList.add("pe-bridge");
  let app = null;
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
    if (app) app.removeEventListener("keydown", onKey);
  };
}

export default { render };
