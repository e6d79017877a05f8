"""Two small trained models to measure what pruning does to quality, with their data (no download).

    .venv/bin/python benchmarks/quality_models.py            # trains both, writes assets/quality/*.pt (~1 minute)
    .venv/bin/python benchmarks/quality_models.py --check    # loads the stored checkpoints and prints their metrics

* **digits CNN**: a residual CNN (a stem, two residual blocks, a strided stage, a classifier; 8x8 grey images) trained
  on scikit-learn's ``load_digits`` (1797 images that ship with scikit-learn; 1437 train / 360 test). Metric: test
  accuracy (%).
* **byte-level Llama**: a ``transformers.LlamaConfig`` model (4 layers, hidden 96, 4 query / 2 key-value heads,
  vocabulary of the 256 byte values) trained on Python source files of the standard library that ships with Python.
  Metric: perplexity per byte on held-out *files* (never seen in training). The texts differ a little between
  Python versions, so the figures do too (by a few percent).

Both trainings are seeded; the checkpoints under ``assets/quality/`` (float16 for the Llama, so the file stays small)
are what the notebook, the tests and ``benchmarks/quality.py`` measure. Import this file from its folder
(``sys.path.insert(0, "benchmarks")``).
"""

from __future__ import annotations

import argparse
import math
import os
import sysconfig
import time
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "assets", "quality")
DIGITS_PATH = os.path.join(ASSETS, "digits_cnn.pt")
LLAMA_PATH = os.path.join(ASSETS, "byte_llama.pt")

# ----------------------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------------------


class Block(nn.Module):
    """A residual block without a shape change: conv-bn-relu-conv-bn, plus the input."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class DigitsCNN(nn.Module):
    """8x8 -> 10 classes: stem (32 ch), two residual blocks, a strided conv (64 ch, 4x4), two residual blocks, fc."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = nn.Sequential(Block(width), Block(width))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.layer2 = nn.Sequential(Block(2 * width), Block(2 * width))
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x):
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def digits_data() -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train [1437, 1, 8, 8], y_train, x_test [360, 1, 8, 8], y_test)``: pixels scaled to [0, 1], a fixed split
    (every fifth image is a test image)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    test = torch.arange(len(y)) % 5 == 0
    return x[~test], y[~test], x[test], y[test]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent (eval mode, no gradients; the model's mode is restored)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)])
    model.train(was)
    return 100.0 * (pred == y).float().mean().item()


def train_digits(epochs: int = 30, seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    xtr, ytr, _, _ = digits_data()
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * math.ceil(len(xtr) / 64))
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            b = perm[i:i + 64]
            loss = F.cross_entropy(model(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def load_digits_cnn(path: str = DIGITS_PATH) -> DigitsCNN:
    model = DigitsCNN()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------------
# byte-level Llama on the standard library's sources
# ----------------------------------------------------------------------------------------------------------------------

TRAIN_FILES = ["argparse.py", "ast.py", "calendar.py", "configparser.py", "dataclasses.py", "difflib.py",
               "enum.py", "ftplib.py", "functools.py", "gettext.py", "inspect.py", "ipaddress.py", "locale.py",
               "logging/__init__.py", "mailbox.py", "pathlib.py", "pickle.py", "pprint.py", "shutil.py",
               "smtplib.py", "statistics.py", "subprocess.py", "tarfile.py", "tempfile.py", "threading.py",
               "typing.py", "zipfile.py", "json/decoder.py", "json/encoder.py", "csv.py", "heapq.py", "bisect.py"]
HELD_OUT_FILES = ["textwrap.py", "fractions.py", "shlex.py", "queue.py"]


def _read(names: List[str]) -> bytes:
    lib = sysconfig.get_paths()["stdlib"]
    out = []
    for name in names:
        path = os.path.join(lib, name)
        if not os.path.exists(path):  # a Python version without it (zipfile became a package in 3.12)
            alt = os.path.join(lib, name[:-3], "__init__.py")
            if not os.path.exists(alt):
                continue
            path = alt
        with open(path, "rb") as f:
            out.append(f.read())
    return b"\n".join(out)


def stdlib_bytes(split: str = "train") -> torch.Tensor:
    """The standard library's sources as a 1-D tensor of byte values (long): ``"train"`` or ``"heldout"`` files."""
    data = _read(TRAIN_FILES if split == "train" else HELD_OUT_FILES)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def llama_config(hidden: int = 96, layers: int = 4, heads: int = 4, kv_heads: int = 2, intermediate: int = 256):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=256, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=512,
                       tie_word_embeddings=False, attn_implementation="eager")


def byte_llama(config=None) -> nn.Module:
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(config or llama_config()).eval()


def lm_batches(data: torch.Tensor, seq: int, batch: int, n: Optional[int] = None, seed: int = 0):
    """``n`` batches ``[batch, seq]`` of random windows of ``data`` (seeded); ``n=None``: every non-overlapping
    window in order, ``batch`` at a time (for evaluation)."""
    if n is None:
        windows = data[: (len(data) // seq) * seq].view(-1, seq)
        return [windows[i:i + batch] for i in range(0, len(windows), batch)]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        start = torch.randint(0, len(data) - seq - 1, (batch,), generator=g)
        out.append(torch.stack([data[s:s + seq] for s in start.tolist()]))
    return out


def lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy (nats) of a causal LM on ``ids [batch, seq]``."""
    logits = model(input_ids=ids).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


def perplexity(model: nn.Module, batches) -> float:
    """Perplexity per byte over ``batches`` (token-weighted; eval mode, no gradients; the mode is restored)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in batches:
            n = ids.shape[0] * (ids.shape[1] - 1)
            total += lm_loss(model, ids).item() * n
            count += n
    model.train(was)
    return math.exp(total / count)


def heldout_batches(seq: int = 128, batch: int = 16, max_batches: Optional[int] = 8):
    """The held-out evaluation set: non-overlapping windows of the held-out files (the first ``max_batches``)."""
    b = lm_batches(stdlib_bytes("heldout"), seq, batch)
    return b[:max_batches] if max_batches else b


def train_llama(steps: int = 800, seq: int = 128, batch: int = 8, lr: float = 3e-3, seed: int = 0,
                config=None, log_every: int = 100) -> nn.Module:
    torch.manual_seed(seed)
    model = byte_llama(config).train()
    data = stdlib_bytes("train")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    for step, ids in enumerate(lm_batches(data, seq, batch, n=steps, seed=seed)):
        loss = lm_loss(model, ids)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"  step {step + 1}/{steps}: train loss {loss.item():.3f}", flush=True)
    return model.eval()


def load_byte_llama(path: str = LLAMA_PATH) -> nn.Module:
    """The stored byte-level Llama (float32, eval mode)."""
    model = byte_llama()
    sd = torch.load(path, weights_only=True)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only load the stored checkpoints and print their metrics")
    ap.add_argument("--llama-steps", type=int, default=800)
    ap.add_argument("--only", choices=["digits", "llama"], help="train only this model")
    args = ap.parse_args(argv)
    if not args.check:
        os.makedirs(ASSETS, exist_ok=True)
        if args.only != "llama":
            t = time.time()
            cnn = train_digits()
            torch.save(cnn.state_dict(), DIGITS_PATH)
            print(f"digits CNN trained in {time.time() - t:.0f} s")
        if args.only != "digits":
            t = time.time()
            lm = train_llama(steps=args.llama_steps)
            torch.save({k: v.half() for k, v in lm.state_dict().items()}, LLAMA_PATH)
            print(f"byte-level Llama trained in {time.time() - t:.0f} s")
    _, _, xte, yte = digits_data()
    cnn = load_digits_cnn()
    print(f"digits CNN: {sum(p.numel() for p in cnn.parameters()):,} parameters, test accuracy "
          f"{accuracy(cnn, xte, yte):.2f}%")
    lm = load_byte_llama()
    print(f"byte-level Llama: {sum(p.numel() for p in lm.parameters()):,} parameters, held-out perplexity "
          f"{perplexity(lm, heldout_batches()):.3f}")


if __name__ == "__main__":
    main()
