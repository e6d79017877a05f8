// Front end of PlotlyChart (prune_explorer/explorer/plotly_chart.py): draws the `figure` trait (a plotly figure
// as JSON) with plotly.js at the width of the widget's own box, and redraws it when that width changes.
//
// * plotly.js comes from the kernel, once per page: the first chart asks ({event: "need-plotly-js"}), Python
//   answers with the plotly.min.js that ships with the plotly package, and every chart of the page shares it.
// * Sizing: a chart is drawn only once its box has a width (a chart drawn in a box of width 0 -- a column not laid
//   out yet -- is what left plotly's own FigureWidget empty or pinned at 700 px), at exactly that width; a
//   ResizeObserver redraws it whenever the box's width changes (window, side panel, grid columns wrapping).
//   The height is the figure's layout.height.

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

  const boxWidth = () => Math.floor(el.getBoundingClientRect().width);
  const draw = () => {
    frame = 0;
    if (!Plotly || disposed) return;
    const w = boxWidth();
    if (w <= 0) return; // not laid out yet: the observer draws it once the box has a width
    const fig = model.get("figure") || {};
    const layout = Object.assign({}, fig.layout || {}, { width: w, autosize: false });
    const config = Object.assign({ displaylogo: false, responsive: false }, fig.config || {});
    Plotly.react(plot, fig.data || [], layout, config);
    drawnWidth = w;
    el.dataset.drawnWidth = String(w);
  };
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  const ro = new ResizeObserver(() => {
    const w = boxWidth();
    if (w > 0 && w !== drawnWidth) schedule();
  });
  ro.observe(el);
  model.on("change:figure", schedule);
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
    if (frame) cancelAnimationFrame(frame);
    model.off("change:figure", schedule);
    if (Plotly) Plotly.purge(plot);
  };
}

export default { render };
