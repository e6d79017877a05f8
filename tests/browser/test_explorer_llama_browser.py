"""The explorer in a real JupyterLab (headless Chromium) on a small Hugging Face Llama built from a ``LlamaConfig``
(whole heads pruned: ``prune_num_heads=True``) and on a model the ONNX exporter refuses. One JupyterLab and one page
for the module; checked in the page, as a user sees it:

* the head group's chart has one bar per head, the removed heads in the removal colour, the kept ones in the kept
  colour, every removed head scoring at most every kept one (a channel group after it keeps the channel histogram);
* "Download script" gives a file that, run in a separate Python process as downloaded, builds the same pruned
  Llama (same parameter count, same outputs as the same walk in this process), and "Verify script" says so too;
* before anything is pruned the header says "none removed yet" (never "-0.0%"), the card's selected ratio is the
  header's, table headers do not break inside a word and no block of the graph is labelled "0 layers";
* after an accept the output-change line gives a next-token KL above 0; Re-walk decided undoes every decision (KL
  back to 0) and shows the first decided group again with its earlier choice;
* an ONNX export that fails shows a status line without terminal escape codes or internal names, which says that
  the unpruned model fails the same way and what to try instead.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_probes import HEADER_PARAMS, app, explorer_page, status_text, wait_status, wait_until  # noqa: E402
from lab_driver import console_messages  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """\
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import torch, torch.nn as nn
import prune_explorer as pe
"""
#: run in the kernel and in this process (the reference walk)
LLAMA = """\
from transformers import LlamaConfig, LlamaForCausalLM

def build_llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=32, use_cache=False)
    return LlamaForCausalLM(cfg).eval()

tokens = {"input_ids": (torch.arange(8).reshape(1, 8) * 7) % 64}
OPTIONS = dict(pruning_ratio=0.5, prune_num_heads=True, head_pruning_ratio=0.5)
"""
LLAMA_APP = """\
ex_llama = pe.Explorer(build_llama(), tokens, **OPTIONS)
ex_llama
"""
ONNX_APP = """\
class Unexportable(nn.Module):
    \"\"\"Two convs and a linear; its forward uses complex eigenvalues, which the ONNX exporter cannot translate.\"\"\"

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 4)

    def forward(self, x):
        y = self.c2(self.c1(x))
        return self.fc(y.mean((2, 3))) + torch.linalg.eigvals(y[:, :2, :2, :2].flatten(0, 1)).real.sum()

torch.manual_seed(0)
ex_onnx = pe.Explorer(Unexportable(), torch.randn(1, 3, 8, 8))
ex_onnx
"""
LLAMA_I, ONNX_I = 0, 1

#: per bar trace of app i's group-card chart: legend name, number of bars, their fill colours, their x labels
BARS = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const plot = app.querySelector('.pe-group-card .pe-hist .js-plotly-plot'); if (!plot || !plot.data) return null;
  const traces = [...plot.querySelectorAll('.barlayer .trace')];
  const arr = v => (v && typeof v !== 'string' && typeof v[Symbol.iterator] === 'function') ? [...v] : [];
  return {title: (plot.layout.xaxis && plot.layout.xaxis.title && plot.layout.xaxis.title.text) || '',
          traces: traces.map((t, k) => ({name: plot.data[k] ? plot.data[k].name : '',
            x: plot.data[k] ? arr(plot.data[k].x) : [], y: plot.data[k] ? arr(plot.data[k].y) : [],
            bars: t.querySelectorAll('.point path').length,
            fills: [...new Set([...t.querySelectorAll('.point path')].map(p => getComputedStyle(p).fill))]}))}; }"""

#: the next-token KL (nats) on app i's output-change line, or None
OUTPUT_KL = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const e = app.querySelector('.pe-output-now'); const m = e && e.textContent.match(/next-token KL ([0-9.]+) nats/);
  return m ? parseFloat(m[1]) : null; }"""

_ANSI = re.compile(r"\x1b|\[\d{1,3}(;\d{1,3})*m")
_INTERNAL = re.compile(r"\b(_[a-z]\w*|count_ops_and_params|build_dependency|export_onnx)\b|Traceback|<class ")


def _rgb(hex_color: str) -> str:
    h = hex_color.lstrip("#")
    return "rgb(" + ", ".join(str(int(h[k:k + 2], 16)) for k in (0, 2, 4)) + ")"


def _js_errors(page) -> list:
    return [m for m in console_messages(page) if m.startswith("pageerror") or m.startswith("console.error")]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explorer_llama_browser")
    with explorer_page(tmp, "llama.ipynb", [SETUP, LLAMA, LLAMA_APP, ONNX_APP], requires=["transformers"],
                       apps=(LLAMA_I, ONNX_I)) as pg:
        yield pg


@pytest.fixture(scope="module")
def reference():
    """The notebook's Llama, options and inputs, built in this process (the same seeds: the same weights)."""
    scope = {}
    exec(compile("import torch\n" + LLAMA, "llama_cell", "exec"), scope)
    return scope


#: app i: header texts, the card title, table header words broken across lines, "0 layers" labels in the graph
CONSISTENCY = """([i]) => { const app = document.querySelectorAll('.pe-app')[i]; if (!app) return null;
  const broken = [];
  for (const th of app.querySelectorAll('.pe-group-card th')) {
    const node = th.firstChild; if (!node || node.nodeType !== 3) continue;
    const text = node.textContent; let at = 0;
    for (const word of text.split(/\\s+/).filter(w => w)) {
      const start = text.indexOf(word, at); at = start + word.length;
      const r = document.createRange(); r.setStart(node, start); r.setEnd(node, at);
      const lines = new Set([...r.getClientRects()].filter(b => b.width > 0).map(b => Math.round(b.top)));
      if (lines.size > 1) broken.push(word);
    } }
  const graph = app.querySelector('.pe-gv-viewport');
  return {header: app.querySelector('.pe-header').innerText, title: app.querySelector('.pe-card-title').innerText,
          broken, zeroLayers: graph ? (graph.textContent.match(/\\b0 layers/g) || []).length : -1,
          graphText: graph ? graph.textContent.length : 0}; }"""


def test_numbers_and_labels_agree_before_anything_is_pruned(page):
    a = app(page, LLAMA_I)
    a.scroll_into_view_if_needed()
    a.locator("button.pe-restart").first.click()  # whatever ran before: the model as built, the first group on show
    wait_status(page, LLAMA_I, "started over")
    v = wait_until(page, CONSISTENCY, [LLAMA_I], lambda v: v and v["graphText"] > 0, what="header, card and graph")
    assert "none removed yet" in v["header"] and "\u22120.0%" not in v["header"] and "-0.0%" not in v["header"]
    selected = re.search(r"selected (\d\.\d\d)", v["title"]).group(1)
    assert f"current group: {selected} selected" in v["header"], (v["title"], v["header"])
    assert v["broken"] == [], f"table headers broken inside a word: {v['broken']}"
    assert v["zeroLayers"] == 0  # leaf RMSNorm blocks hold operations, not "0 layers"
    for width in (1000, 1920):  # also on a narrow and a wide window
        page.set_viewport_size({"width": width, "height": 1000})
        assert wait_until(page, CONSISTENCY, [LLAMA_I], lambda v: v is not None)["broken"] == [], width
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_head_group_chart_has_one_bar_per_head(page, reference):
    from prune_explorer.explorer import ExplorerController
    from prune_explorer.explorer.colors import KEEP_COLOR, REMOVE_COLOR

    c = ExplorerController(reference["build_llama"](), reference["tokens"], **reference["OPTIONS"])
    card = c.card()
    assert card["heads"] is not None  # the walk starts with layer 0's whole heads
    n_heads = c.model.config.num_attention_heads
    n_removed = sum(h["removed"] for h in card["heads"])
    assert 0 < n_removed < n_heads

    a = app(page, LLAMA_I)
    a.scroll_into_view_if_needed()
    assert card["root"] in a.locator(".pe-card-root").first.inner_text()
    bars = wait_until(page, BARS, [LLAMA_I], lambda v: v and sum(t["bars"] for t in v["traces"]) > 0,
                      what="the head group's bars drawn")
    removed, kept = bars["traces"]
    assert "head" in bars["title"]
    assert removed["bars"] + kept["bars"] == n_heads  # one bar per head
    assert (removed["bars"], kept["bars"]) == (n_removed, n_heads - n_removed)
    assert sorted(removed["x"] + kept["x"]) == sorted(f"head {k}" for k in range(n_heads))
    assert removed["fills"] == [_rgb(REMOVE_COLOR)] and kept["fills"] == [_rgb(KEEP_COLOR)]
    assert max(removed["y"]) <= min(kept["y"])  # whole heads go, ranked by score: no removed bar above a kept one
    # the next group (o_proj's input channels) is a channel group: the chart is per channel again
    a.locator("button.pe-skip").first.click()
    wait_status(page, LLAMA_I, "skipped")
    chart = wait_until(page, BARS, [LLAMA_I], lambda v: v and "head" not in v["title"], what="the channel histogram")
    assert chart["title"] and all(not str(x).startswith("head ") for t in chart["traces"] for x in t["x"])
    assert _js_errors(page) == []


def test_llama_script_runs_as_downloaded_with_equal_outputs_and_verifies(page, reference, tmp_path):
    import torch

    from prune_explorer.explorer import ExplorerController
    from prune_explorer.inputs import call_model, tensors_in

    a = app(page, LLAMA_I)
    a.scroll_into_view_if_needed()
    p0 = page.evaluate(HEADER_PARAMS, [LLAMA_I])
    a.locator("button.pe-restart").first.click()
    wait_status(page, LLAMA_I, "started over")
    a.locator("button.pe-accept-all").first.click()
    wait_status(page, LLAMA_I, "accepted every remaining group", timeout=120)
    params = page.evaluate(HEADER_PARAMS, [LLAMA_I])
    assert params < p0
    with page.expect_download(timeout=60_000) as dl:
        a.locator("button.pe-download-script").first.click()
    script = tmp_path / "reproduce_pruning.py"
    dl.value.save_as(str(script))
    text = script.read_text()
    assert "model = ..." not in text and "LlamaForCausalLM" in text

    # the same walk in this process: the model the script must give
    c = ExplorerController(reference["build_llama"](), reference["tokens"], **reference["OPTIONS"])
    c.accept_all_remaining()
    assert c.params_now() == params
    # run the file as downloaded, in a separate process; PE_VERIFY gives it the original weights and the inputs
    work = tmp_path / "verify"
    work.mkdir()
    torch.save(reference["build_llama"]().state_dict(), work / "original.pt")
    torch.save(reference["tokens"], work / "inputs.pt")
    import prune_explorer

    src_root = str(Path(prune_explorer.__file__).resolve().parents[1])
    env = dict(os.environ, PE_VERIFY=str(work), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([src_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{params:,} parameters" in proc.stdout
    result = torch.load(work / "result.pt")
    assert result["params"] == params
    with torch.no_grad():
        ours = tensors_in(call_model(c.model, reference["tokens"]))
    theirs = list(result["outputs"])
    assert [t.shape for t in theirs] == [t.shape for t in ours]
    assert max(float((x - y).abs().max()) for x, y in zip(ours, theirs)) <= 1e-5

    # and the app's own Verify script says the same
    a.locator("button.pe-verify-script").first.click()
    status = wait_status(page, LLAMA_I, "reproduces this model", timeout=240)
    assert "outputs equal" in status
    assert _js_errors(page) == []


def test_rewalk_shows_the_decided_groups_again_with_their_choices(page):
    a = app(page, LLAMA_I)
    a.scroll_into_view_if_needed()
    a.locator("button.pe-restart").first.click()
    wait_status(page, LLAMA_I, "started over")
    p0 = page.evaluate(HEADER_PARAMS, [LLAMA_I])
    first = wait_until(page, BARS, [LLAMA_I], lambda v: v and "head" in v["title"], what="the head group's bars")
    removed = sorted(first["traces"][0]["x"])
    a.locator("button.pe-accept").first.click()
    wait_status(page, LLAMA_I, "accepted")
    assert page.evaluate(HEADER_PARAMS, [LLAMA_I]) < p0
    # a language model's output change: the KL of next-token distributions, above 0 once heads are gone
    kl = wait_until(page, OUTPUT_KL, [LLAMA_I], lambda v: v is not None and v > 0, what="the next-token KL > 0")
    assert kl > 0
    a.locator("button.pe-rewalk").first.click()
    wait_status(page, LLAMA_I, "walking the decided groups again")
    assert page.evaluate(HEADER_PARAMS, [LLAMA_I]) == p0  # every decision undone
    assert wait_until(page, OUTPUT_KL, [LLAMA_I], lambda v: v == 0.0, what="the KL back to 0") == 0.0
    again = wait_until(page, BARS, [LLAMA_I], lambda v: v and "head" in v["title"], what="the head group again")
    assert sorted(again["traces"][0]["x"]) == removed  # its earlier choice, pre-selected
    assert a.locator("button.pe-accept").first.is_enabled() and not a.locator("button.pe-undo").first.is_enabled()
    assert _js_errors(page) == []


def test_onnx_failure_message_is_clean_and_says_what_to_try(page, tmp_path):
    a = app(page, ONNX_I)
    a.scroll_into_view_if_needed()
    a.locator("button.pe-accept").first.click()
    wait_status(page, ONNX_I, "accepted")
    target = tmp_path / "unexportable.onnx"
    a.locator(".pe-onnx-path input").first.fill(str(target))
    a.locator("button.pe-export-onnx").first.click()
    wait_status(page, ONNX_I, "ONNX export failed", timeout=240)
    error = a.locator(".pe-status .pe-status-error")
    assert error.count() == 1
    text = error.first.inner_text()
    assert not _ANSI.search(text), text
    assert not _INTERNAL.search(text), text
    assert "Next steps" not in text and "PyTorch" not in text  # not the exporter's advice to its developers
    assert "linalg_eig" in text  # the operation the exporter cannot translate
    assert "unpruned model fails the same way" in text  # so it is the exporter's limit, not the pruning's
    assert "try another opset" in text and "Save" in text  # what to do instead
    assert not target.exists() and not list(tmp_path.iterdir())  # nothing half-written left behind
    assert status_text(page, ONNX_I).strip().startswith("ONNX export failed")
    assert _js_errors(page) == []
