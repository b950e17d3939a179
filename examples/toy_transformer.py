"""The seed's toy transformer, twice: ``nn.MultiheadAttention`` against FlashAttention.

The seed (``shared/seeds/003``) swaps ``nn.MultiheadAttention`` for flash-attn's
``FlashSelfAttention`` in a toy transformer, with some errors: ``FlashSelfAttention``
takes no ``embed_dim``/``num_heads`` (it has no projections: it takes packed heads
``qkv (B, N, 3, H, d)``, batch first), and it takes no mask. Here the two models are
written correctly and trained side by side from the same initial weights:

* ``standard``: the seed's ``StandardTransformer`` (``nn.MultiheadAttention``,
  sequence first, a causal ``attn_mask``);
* ``drop-in``: the same class with :class:`FlashMultiheadAttention` in place of
  ``nn.MultiheadAttention`` (same constructor, same call, its state dict loaded);
* ``flash``: the seed's ``FlashTransformer`` made correct: its own ``Wqkv`` and
  ``out_proj`` projections (initialised from the standard model's ``in_proj`` and
  ``out_proj``), a permute to batch first, ``FlashSelfAttention(causal=True)``.

Each is a tiny next-token model on a synthetic sequence rule, trained a few Adam
steps on the CPU (Triton's interpreter; seeded, small sizes, well under a minute);
the three loss curves agree to float32 rounding. With a GPU it also times one
training step at the seed's sizes (N = 1024, E = 512, 8 heads, batch 4, bf16) and
reports peak memory.

Run::

    python examples/toy_transformer.py
"""

from __future__ import annotations

import time

import flashanim.kernels  # noqa: F401  (chooses the device before triton is imported)
import torch
from flashanim.kernels._device import default_device
from flashanim.kernels.modules import FlashMultiheadAttention, FlashSelfAttention
from torch import nn

__all__ = ["StandardTransformer", "FlashTransformer", "ToyLM", "main"]


class StandardTransformer(nn.Module):
    """The seed's block: attention, a linear "feed-forward", a residual.

    ``x`` is ``(seq_len, batch, embed_dim)``; ``attention_cls`` is
    ``nn.MultiheadAttention`` or its drop-in :class:`FlashMultiheadAttention`.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0,
                 attention_cls=nn.MultiheadAttention):  # fmt: skip
        super().__init__()
        self.attention = attention_cls(embed_dim, num_heads, dropout=dropout)
        self.linear = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, mask=None):
        attn_output, _ = self.attention(x, x, x, attn_mask=mask, need_weights=False,
                                        is_causal=mask is not None)  # fmt: skip
        return self.linear(attn_output) + x


class FlashTransformer(nn.Module):
    """The seed's flash block, made correct: projections around
    ``FlashSelfAttention`` (which has none), batch-first heads, causal attention.

    ``x`` is ``(seq_len, batch, embed_dim)`` like the standard block's.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, use_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.Wqkv = nn.Linear(embed_dim, 3 * embed_dim, bias=use_bias)
        self.attention = FlashSelfAttention(causal=True, attention_dropout=dropout)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=use_bias)
        self.linear = nn.Linear(embed_dim, embed_dim)

    def load_from_standard(self, std: StandardTransformer) -> None:
        """Copy the standard block's weights (``in_proj`` is ``Wqkv``)."""
        mha = std.attention
        with torch.no_grad():
            self.Wqkv.weight.copy_(mha.in_proj_weight)
            self.Wqkv.bias.copy_(mha.in_proj_bias)
            self.out_proj.load_state_dict(mha.out_proj.state_dict())
            self.linear.load_state_dict(std.linear.state_dict())

    def forward(self, x, mask=None):
        del mask  # causal attention is FlashSelfAttention(causal=True)'s own
        x_bf = x.permute(1, 0, 2)  # (batch, seq_len, embed_dim)
        b, n, e = x_bf.shape
        qkv = self.Wqkv(x_bf).view(b, n, 3, self.num_heads, e // self.num_heads)
        attn = self.attention(qkv).reshape(b, n, e)  # (B, N, H, d) -> (B, N, E)
        out = self.linear(self.out_proj(attn)) + x_bf
        return out.permute(1, 0, 2)


class ToyLM(nn.Module):
    """Embedding + learned positions + one block + a head predicting the next token."""

    def __init__(self, block, vocab, embed_dim, max_len):
        super().__init__()
        self.tok = nn.Embedding(vocab, embed_dim)
        self.pos = nn.Parameter(torch.randn(max_len, 1, embed_dim) * 0.1)
        self.block = block
        self.head = nn.Linear(embed_dim, vocab)

    def forward(self, tokens, mask):  # tokens: (seq_len, batch)
        x = self.tok(tokens) + self.pos[: tokens.shape[0]]
        return self.head(self.block(x, mask))


def make_batch(gen, vocab, n, b, period=4):
    """A random ``period``-gram repeated: the next token is the one ``period - 1``
    positions back, so attention has something to learn."""
    gram = torch.randint(0, vocab, (period, b), generator=gen)
    x = gram.repeat(n // period + 2, 1)[: n + 1]
    return x[:-1], x[1:]


def build(embed_dim, num_heads, vocab, n, device, dtype=torch.float32, seed=0):
    """The three models, with the same initial weights."""
    torch.manual_seed(seed)
    std = ToyLM(StandardTransformer(embed_dim, num_heads), vocab, embed_dim, n)
    drop = ToyLM(StandardTransformer(embed_dim, num_heads,
                                     attention_cls=FlashMultiheadAttention),
                 vocab, embed_dim, n)  # fmt: skip
    drop.load_state_dict(std.state_dict())
    flash = ToyLM(FlashTransformer(embed_dim, num_heads), vocab, embed_dim, n)
    flash.block.load_from_standard(std.block)
    flash.tok.load_state_dict(std.tok.state_dict())
    flash.head.load_state_dict(std.head.state_dict())
    with torch.no_grad():
        flash.pos.copy_(std.pos)
    models = {"standard": std, "drop-in": drop, "flash": flash}
    return {k: m.to(device, dtype) for k, m in models.items()}


def train(models, steps, vocab, n, b, device, seed=0):
    """Train each model on the same batches; return the loss curves."""
    mask = nn.Transformer.generate_square_subsequent_mask(n, device=device)
    curves = {}
    for name, model in models.items():
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        losses = []
        for _ in range(steps):
            x, y = (t.to(device) for t in make_batch(gen, vocab, n, b))
            logits = model(x, mask.to(model.head.weight.dtype))
            loss = nn.functional.cross_entropy(logits.reshape(-1, vocab).float(),
                                               y.reshape(-1))  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves[name] = losses
    return curves


def gpu_speed(device):
    """One training step at the seed's sizes, bf16: time and peak memory."""
    e, h, n, b, vocab = 512, 8, 1024, 4, 256
    models = build(e, h, vocab, n, device, torch.bfloat16)
    mask = nn.Transformer.generate_square_subsequent_mask(n, device=device)
    mask = mask.to(torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    x, y = (t.to(device) for t in make_batch(gen, vocab, n, b))
    print(f"\nGPU ({torch.cuda.get_device_name()}), one training step, bf16, "
          f"N={n} E={e} H={h} B={b}")  # fmt: skip
    print(f"{'model':>10} {'ms/step':>9} {'peak MiB':>9}")
    for name, model in models.items():

        def step(model=model):
            loss = nn.functional.cross_entropy(
                model(x, mask).reshape(-1, vocab).float(), y.reshape(-1)
            )
            loss.backward()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        reps = 10
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / reps * 1e3
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        print(f"{name:>10} {ms:9.2f} {peak:9.1f}")
    print(
        "(standard: nn.MultiheadAttention, need_weights=False, is_causal: PyTorch "
        "SDPA's own fused kernels; drop-in/flash: flashanim's Triton kernel)"
    )


def main() -> None:
    device = default_device()
    vocab, e, h, n, b, steps = 8, 32, 2, 16, 4, 20
    models = build(e, h, vocab, n, device)
    t0 = time.perf_counter()
    curves = train(models, steps, vocab, n, b, device)
    print(f"toy next-token model: E={e}, H={h}, N={n}, batch {b}, {steps} Adam steps "
          f"on {device.type} ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    print(f"{'step':>4} " + " ".join(f"{k:>10}" for k in curves))
    for i in range(steps):
        print(f"{i:>4} " + " ".join(f"{c[i]:10.5f}" for c in curves.values()))
    ref = curves["standard"]
    for name, c in curves.items():
        if name != "standard":
            diff = max(abs(a - r) for a, r in zip(c, ref, strict=True))
            print(f"max |loss({name}) - loss(standard)| = {diff:.2e}")
    if torch.cuda.is_available():
        gpu_speed(device)


if __name__ == "__main__":
    main()
