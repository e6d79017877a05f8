// Front end of PlotlyChart (prune_explorer/explorer/plotly_chart.py): draws the `plot_data` and `plot_layout`
// traits (a plotly figure as JSON) with plotly.js at the width of the widget's own box, and redraws it when that width changes.
//
// * plotly.js comes from the kernel, once per page: the first chart asks ({event: "need-plotly-js"}), Python
//   answers with the plotly.min.js that ships with the plotly package, and every chart of the page shares it.
// * Sizing: a chart is drawn only once its box has a width (a chart drawn in a box of width 0 -- a column not laid
//   out yet -- is what left plotly's own FigureWidget empty or pinned at 700 px), at exactly that width; a
//   ResizeObserver redraws it whenever the box's width changes (window, side panel, grid columns wrapping).
//   The height is the figure's layout.height.
// * Updates: the figure comes as two traits, `plot_data` (traces) and `plot_layout`, each sent only when it
//   changed; a change of either goes to Plotly.react, which updates the chart in place (no new plot). A chart on
//   screen is redrawn in the next frame; one scrolled out of view (an IntersectionObserver says) is redrawn when it
//   comes into view or when the browser is idle, whichever is first, so a click redraws what the user sees first.
//   `data-pending="1"` marks a chart whose last figure is not drawn yet.

const KEY = "__prune_explorer_plotly_js__";

function loadPlotly(model) {
  const g = globalThis;
  if (g[KEY]) return g[KEY];
  g[KEY] = new Promise((resolve, reject) => {
    let timer = null;
    const onMsg = async (msg) => {
      if (!msg || msg.event !== "plotly-js") return;
      model.off("msg:custom", onMsg);
      clearTimeout(timer);
      try {
        // plotly.min.js is a UMD bundle: given a CommonJS `module` it hands its export to it
        const src = "const module = { exports: {} };\n" + msg.source + "\nexport default module.exports;\n";
        const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
        try {
          const mod = await import(/* webpackIgnore: true */ url);
          resolve(mod.default);
        } finally {
          URL.revokeObjectURL(url);
        }
      } catch (err) {
        delete g[KEY];
        reject(err);
      }
    };
    timer = setTimeout(() => {
      model.off("msg:custom", onMsg);
      delete g[KEY]; // a later chart asks again
      reject(new Error("plotly.js did not arrive from the kernel (is it running?)"));
    }, 60000);
    model.on("msg:custom", onMsg);
    model.send({ event: "need-plotly-js" });
  });
  return g[KEY];
}

function render({ model, el }) {
  el.classList.add("pe-chart");
  const plot = document.createElement("div");
  plot.className = "pe-chart-plot";
  el.appendChild(plot);
  let Plotly = null;
  let drawnWidth = 0;
  let disposed = false;
  let frame = 0;
  let onScreen = true; // until the IntersectionObserver says otherwise
  let idle = 0;

  const boxWidth = () => Math.floor(el.getBoundingClientRect().width);
  const draw = () => {
    frame = 0;
    if (!Plotly || disposed) return;
    const w = boxWidth();
    if (w <= 0) return; // not laid out yet: the observer draws it once the box has a width
    const layout = Object.assign({}, model.get("plot_layout") || {}, { width: w, autosize: false });
    const config = { displaylogo: false, responsive: false };
    Plotly.react(plot, model.get("plot_data") || [], layout, config);
    drawnWidth = w;
    el.dataset.drawnWidth = String(w);
    delete el.dataset.pending;
  };
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  const whenIdle = globalThis.requestIdleCallback || ((f) => setTimeout(f, 200));
  const cancelIdle = globalThis.cancelIdleCallback || clearTimeout;
  const onFigure = () => {
    el.dataset.pending = "1";
    if (onScreen || !drawnWidth) { schedule(); return; }
    if (!idle) idle = whenIdle(() => { idle = 0; if (el.dataset.pending) schedule(); }, { timeout: 1000 });
  };
  const io = new IntersectionObserver((entries) => {
    onScreen = entries[entries.length - 1].isIntersecting;
    if (onScreen && el.dataset.pending) schedule();
  });
  io.observe(el);
  const ro = new ResizeObserver(() => {
    const w = boxWidth();
    if (w > 0 && w !== drawnWidth) schedule();
  });
  ro.observe(el);
  model.on("change:plot_data", onFigure);
  model.on("change:plot_layout", onFigure);
  loadPlotly(model).then(
    (P) => {
      Plotly = P;
      schedule();
    },
    (err) => {
      if (disposed) return;
      el.classList.add("pe-chart-error");
      plot.textContent = "chart unavailable: " + (err && err.message ? err.message : err);
    },
  );
  return () => {
    disposed = true;
    ro.disconnect();
    io.disconnect();
    if (frame) cancelAnimationFrame(frame);
    if (idle) cancelIdle(idle);
    model.off("change:plot_data", onFigure);
    model.off("change:plot_layout", onFigure);
    if (Plotly) Plotly.purge(plot);
  };
}

export default { render };
