"""PyTorch CPU reference for Loom's character-level GPT (nanoGPT's "baby GPT").

The model is written out the way Loom builds it: separate q, k, v projections with bias,
attention spelled out (q k^T / sqrt(D), causal mask with -inf, softmax, @ v) rather than
`scaled_dot_product_attention`, GELU with the tanh approximation, no dropout, no weight tying.
`train` mirrors nanoGPT's train.py for `config/train_shakespeare_char.py` shrunk to the CPU
"baby GPT" (4 layers, 4 heads, 128 wide, context 64, batch 12, 2000 iterations).

    python bench/gpt_torch.py --text resources/datasets/shakespeare.txt.xz --iters 2000 --threads 2

The module imports without PyTorch; `TORCH_AVAILABLE` says whether it can run.
"""
from __future__ import annotations

import argparse
import dataclasses
import lzma
import math
import sys
import time
from pathlib import Path

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # the caller reports PyTorch as unavailable
    torch = nn = F = None

TORCH_AVAILABLE = torch is not None


def _require_torch():
    if torch is None:
        raise ImportError("PyTorch is not installed (pip install '.[bench]')")


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    vocab: int = 65
    context: int = 64
    layers: int = 4
    heads: int = 4
    width: int = 128
    mlp_ratio: int = 4


BABY_GPT = GPTConfig()


def _config(cfg) -> GPTConfig:
    if cfg is None:
        return BABY_GPT
    if isinstance(cfg, dict):
        return GPTConfig(**cfg)
    return cfg


def param_count(cfg) -> int:
    """Trainable parameters of TorchGPT(cfg), computed without PyTorch."""
    c = _config(cfg)
    C, V, T, H = c.width, c.vocab, c.context, c.mlp_ratio * c.width
    layer_norm = 2 * C
    attention = 4 * (C * C + C)                    # q, k, v, output projection
    mlp = (C * H + H) + (H * C + C)
    block = 2 * layer_norm + attention + mlp
    return V * C + T * C + c.layers * block + layer_norm + (C * V + V)


# ---- model -----------------------------------------------------------------------------------

_Module = nn.Module if nn is not None else object


class Block(_Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        C = c.width
        self.heads = c.heads
        self.ln1 = nn.LayerNorm(C)
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, C)
        self.v = nn.Linear(C, C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc = nn.Linear(C, c.mlp_ratio * C)
        self.fc_proj = nn.Linear(c.mlp_ratio * C, C)

    def attention(self, x, mask):
        B, T, C = x.shape
        H, D = self.heads, C // self.heads
        q = self.q(x).view(B, T, H, D).transpose(1, 2)          # (B, H, T, D)
        k = self.k(x).view(B, T, H, D).transpose(1, 2)
        v = self.v(x).view(B, T, H, D).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))  # (B, H, T, T)
        att = att.masked_fill(mask[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)

    def forward(self, x, mask):
        x = x + self.attention(self.ln1(x), mask)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class TorchGPT(_Module):
    """nanoGPT-style decoder: token + learned position embeddings, pre-LN blocks, final LN,
    untied lm head with bias. forward(idx, targets=None) -> (logits, loss)."""

    def __init__(self, cfg=None):
        _require_torch()
        super().__init__()
        c = self.cfg = _config(cfg)
        assert c.width % c.heads == 0
        self.tok = nn.Embedding(c.vocab, c.width)
        self.pos = nn.Embedding(c.context, c.width)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.layers)])
        self.ln_f = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.vocab)
        # True above the diagonal: the positions a query may not see
        self.register_buffer("mask", torch.triu(torch.ones(c.context, c.context, dtype=torch.bool), 1),
                             persistent=False)
        # nanoGPT's init: N(0, 0.02) weights, zero biases, residual projections / sqrt(2 layers)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * c.layers) if name.endswith(("proj.weight",)) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x, self.mask)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return logits, loss


def make_optimizer(model, lr=1e-3, beta2=0.99, weight_decay=0.1):
    """AdamW as nanoGPT configures it: decay every parameter with >= 2 dims (matmul weights
    and embeddings), none on biases and LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, beta2))


# ---- timing ----------------------------------------------------------------------------------

def train_step_fn(cfg=None, batch=12, seed=0, threads=None, lr=1e-3, grad_clip=None):
    """A zero-argument callable running one training step (forward, backward, AdamW step;
    gradient clipping too when grad_clip is given) on a fixed random token batch."""
    _require_torch()
    c = _config(cfg)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = TorchGPT(c)
    model.train()
    opt = make_optimizer(model, lr=lr)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, c.vocab, (batch, c.context), generator=g, dtype=torch.int64)
    y = torch.randint(0, c.vocab, (batch, c.context), generator=g, dtype=torch.int64)

    def step():
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        return loss
    return step


# ---- training --------------------------------------------------------------------------------

def lr_at(it, lr, min_lr, warmup, decay_iters):
    """nanoGPT's get_lr: linear warmup, cosine decay to min_lr at decay_iters."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / max(1, decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def split(text_ids: np.ndarray, train_fraction=0.9):
    n = int(train_fraction * len(text_ids))
    return text_ids[:n], text_ids[n:]


def eval_starts(n_tokens, context, windows):
    """Start positions of up to `windows` evenly spaced, non-overlapping windows of
    context + 1 tokens (input plus shifted target) over n_tokens."""
    span = context + 1
    windows = max(1, min(windows, n_tokens // span))
    last = n_tokens - span
    starts = np.linspace(0, last, windows).astype(np.int64)
    return starts


def windows_at(data: np.ndarray, starts, context):
    idx = starts[:, None] + np.arange(context + 1)[None, :]
    w = data[idx].astype(np.int64)
    return w[:, :-1], w[:, 1:]


def train(text_ids: np.ndarray, vocab_size, cfg=None, iters=2000, batch=12, lr=1e-3, min_lr=1e-4,
          warmup=100, beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_every=200,
          eval_windows=256, seed=1337, threads=None, log=None) -> list[dict]:
    """Train TorchGPT on text_ids (integer character ids) as nanoGPT's train.py does and
    return records {"iter", "train_loss", "val_loss", "seconds"} every eval_every iterations
    and at the end. train_loss: mean over the iterations since the previous record; val_loss:
    mean over eval_windows fixed windows of the last 10 %; seconds: training wall time, evals
    excluded."""
    _require_torch()
    c = dataclasses.replace(_config(cfg), vocab=int(vocab_size))
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_data, val_data = split(np.asarray(text_ids))
    T = c.context
    vx, vy = windows_at(val_data, eval_starts(len(val_data), T, eval_windows), T)
    vx, vy = torch.from_numpy(vx), torch.from_numpy(vy)

    model = TorchGPT(c)
    opt = make_optimizer(model, lr=lr, beta2=beta2, weight_decay=weight_decay)

    @torch.no_grad()
    def val_loss():
        model.eval()
        total = 0.0
        for i in range(0, len(vx), 64):
            _, loss = model(vx[i:i + 64], vy[i:i + 64])
            total += loss.item() * len(vx[i:i + 64])
        model.train()
        return total / len(vx)

    offsets = np.arange(T + 1)[None, :]
    records, recent, elapsed = [], [], 0.0
    for it in range(iters):
        start = time.perf_counter()
        ix = rng.integers(0, len(train_data) - T, size=batch)
        w = torch.from_numpy(train_data[ix[:, None] + offsets].astype(np.int64))
        x, y = w[:, :-1], w[:, 1:]
        for group in opt.param_groups:
            group["lr"] = lr_at(it, lr, min_lr, warmup, iters)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        recent.append(loss.item())
        elapsed += time.perf_counter() - start
        done = it + 1
        if done % eval_every == 0 or done == iters:
            rec = {"iter": done, "train_loss": float(np.mean(recent)), "val_loss": val_loss(),
                   "seconds": elapsed}
            records.append(rec)
            recent = []
            if log:
                log(rec)
    return records


# ---- command line ----------------------------------------------------------------------------

def read_text(path) -> str:
    path = Path(path)
    raw = lzma.open(path).read() if path.suffix == ".xz" else path.read_bytes()
    return raw.decode("utf-8")


def encode(text: str):
    """(ids as uint16 array, vocabulary string): sorted distinct characters, as nanoGPT's
    shakespeare_char/prepare.py does."""
    chars = sorted(set(text))
    if all(ord(ch) < 256 for ch in chars):
        lut = np.zeros(256, dtype=np.uint16)
        lut[[ord(ch) for ch in chars]] = np.arange(len(chars))
        ids = lut[np.frombuffer(text.encode("latin-1"), dtype=np.uint8)]
    else:
        index = {ch: i for i, ch in enumerate(chars)}
        ids = np.array([index[ch] for ch in text], dtype=np.uint16)
    return ids, "".join(chars)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", required=True, help="UTF-8 text file, or .xz of one")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=200)
    args = ap.parse_args(argv)
    if not TORCH_AVAILABLE:
        print("PyTorch unavailable: pip install '.[bench]'", file=sys.stderr)
        return 1
    ids, chars = encode(read_text(args.text))
    cfg = dataclasses.replace(BABY_GPT, vocab=len(chars))
    print(f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}; "
          f"{len(ids):,} characters, vocab {len(chars)}; "
          f"{param_count(cfg):,} parameters ({sum(p.numel() for p in TorchGPT(cfg).parameters()):,} counted)")
    print(f"{'iter':>6} {'train loss':>11} {'val loss':>9} {'seconds':>9}", flush=True)
    train(ids, len(chars), cfg, iters=args.iters, eval_every=args.eval_every, threads=args.threads,
          log=lambda r: print(f"{r['iter']:>6} {r['train_loss']:>11.4f} {r['val_loss']:>9.4f} "
                              f"{r['seconds']:>9.1f}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
