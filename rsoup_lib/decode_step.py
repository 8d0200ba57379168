"""One decoding step of a Llama model: the logits of its ``forward`` up to float rounding, at a
fraction of its cost on a CPU.

A decoding step of ``sampling.decode`` runs the model on one new token per row, attending to the
key/value cache. For ``tiny`` at the RL batch (32 rows) every matmul of such a step is small, and
through ``LlamaForCausalLM.forward`` (transformers 5) most of the step goes elsewhere:

- the BLAS matmul (``F.linear``) of 32 rows by a weight runs on one thread and packs the weight
  into its blocked layout at every call: 2.5 ms for the 256 x 8,192 output projection at 2
  threads, 50 GFLOP/s, a quarter of the machine's matmul peak;
- every step builds the 4-D attention mask, walks the ``DynamicCache`` object, grows it by
  ``torch.cat``, and packs the grouped key/value heads as extra queries before CPU flash attention
  (0.39 ms per layer, where SDPA's own grouped-query mode takes 0.10 ms);
- the rotary embedding, the RMS norms and the split projections cost a few small ops each.

``LlamaDecodeStep`` runs the same arithmetic:

- the weights are packed once per ``decode`` call for oneDNN's matmul (``rsoup_lib.packed``):
  the 256 x 8,192 projection of 32 rows takes 0.76 ms at 2 threads (177 GFLOP/s). q, k and v
  come out of one matmul of the stacked weights [Wq; Wk; Wv], the MLP's gate and up out of one
  of [W_gate; W_up];
- per layer, h <- h + o_proj(SDPA(rope(q), [K; rope(k)], [V; v])) with SDPA's grouped-query mode,
  then h <- h + W_down(silu(g) * u), and finally logits = lm_head(norm(h)); the norms are
  ``F.rms_norm`` with the model's weights and epsilon;
- the rotary cos/sin of every position are tabulated once (from the model's own
  ``rotary_emb``), and rope turns the queries and keys of a step at once;
- the keys and values live in one preallocated buffer per layer, [rows, kv heads, prompt +
  capacity, head dim]: a step writes one position and attends to a view of the first ones; the
  padding mask of every position to come is built once.

The logits differ from ``forward``'s by float rounding (oneDNN sums in another order than the
BLAS, and so does SDPA's grouped-query mode): ``tests/test_decode_step.py`` checks them against
``model(...)`` to 1e-5, LoRA included, and that sampling draws the same tokens either way (a draw
changes only when its uniform falls within rounding of a boundary of the CDF). The teacher of
``rsoup data build`` does not use the step (``sampling.sample_ids``): its reviews are the model's
own logits, bit for bit.

LoRA (peft) policies: the stacked weights are the effective ones, W + (alpha / r) B A, taken by
running each projection module on the identity matrix (so disabled or merged adapters are what
they are in ``forward``). Without oneDNN (a GPU, another dtype) ``Projection`` is ``F.linear`` on
the stacked weights. The packed weights are a copy of the model (``tiny``: 21 MB, packed in 5 ms,
3 % of a ``decode`` call). Models it does not cover (another architecture, another attention
implementation, biases, sliding windows, rotary scalings other than the default) return None from
``LlamaDecodeStep.build`` and decode through ``forward``.

Measured side by side (``tiny``, 8 prompts x 4 completions x 32 tokens, 2 threads, Nov 2026):
``sample_completions`` took 241-316 ms before, 150-174 ms with this step; in
``benchmarks/rl_step.py`` the RL step went from 0.60 to 0.53 s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rsoup_lib.packed import Projection


def _effective_weight(module: torch.nn.Module) -> torch.Tensor:
    """W [out, in] of a bias-free linear map: the weight of an ``nn.Linear``, else (a peft LoRA
    layer, say) the module applied to the identity, transposed."""
    if type(module) is torch.nn.Linear:
        return module.weight
    weight = module.base_layer.weight if hasattr(module, "base_layer") else module.weight
    eye = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)
    return module(eye).T


class LlamaDecodeStep:
    """Callable ``token [n] -> logits [n, V]`` of the next position, continuing a prefilled
    ``DynamicCache`` for at most ``capacity`` more tokens; the cache's tensors are copied into
    the step's own buffers (the cache object is not updated any more)."""

    def __init__(self, causal_lm, cache, attention_mask: torch.Tensor, capacity: int):
        config = causal_lm.config
        self.trunk = causal_lm.model
        self.layers = list(self.trunk.layers[: config.num_hidden_layers])
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = self.layers[0].self_attn.head_dim
        self.scaling, self.eps = self.layers[0].self_attn.scaling, config.rms_norm_eps
        n, prompt = attention_mask.shape
        self.length = self.prompt_length = prompt
        self.end = prompt + capacity
        # position of the next token in each row, and the padding mask of every position to come
        self.position = attention_mask.long().sum(-1, keepdim=True)  # [n, 1]
        mask = torch.cat([attention_mask.bool(), attention_mask.new_ones(n, capacity, dtype=torch.bool)], dim=1)
        self.mask = None if bool(mask.all()) else mask[:, None, None, :]
        self.cos, self.sin = self._rotary_table(int(self.position.max()) + capacity)  # every position to come

        def project(*modules):  # one Projection for the stacked effective weights of these modules
            weights = [_effective_weight(m) for m in modules]
            return Projection((torch.cat(weights) if len(weights) > 1 else weights[0]).detach(), n)

        with torch.no_grad():
            self.qkv = [project(l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj) for l in self.layers]
            self.o = [project(l.self_attn.o_proj) for l in self.layers]
            self.gate_up = [project(l.mlp.gate_proj, l.mlp.up_proj) for l in self.layers]
            self.down = [project(l.mlp.down_proj) for l in self.layers]
            self.lm_head = project(causal_lm.lm_head)
        self.keys, self.values = [], []
        for layer in cache.layers:
            for store, prefix in ((self.keys, layer.keys), (self.values, layer.values)):
                buffer = prefix.new_empty(*prefix.shape[:2], self.end, prefix.shape[-1])
                buffer[:, :, :prompt] = prefix
                store.append(buffer)

    @staticmethod
    def build(model, cache, attention_mask: torch.Tensor, capacity: int) -> "LlamaDecodeStep | None":
        """The fast step for ``model`` (a Llama causal LM, possibly inside a peft wrapper), its
        ``cache`` prefilled with left-padded prompts of ``attention_mask`` [n, P] (one row per
        cache row), and ``capacity`` more tokens; or None when the model is not one it covers
        (see the module docstring)."""
        from transformers.cache_utils import DynamicCache, DynamicLayer
        from transformers.models.llama.modeling_llama import LlamaForCausalLM, LlamaModel

        lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = getattr(lm, "config", None)
        if type(lm) is not LlamaForCausalLM or type(lm.model) is not LlamaModel or lm.training:
            return None
        if config._attn_implementation != "sdpa" or (config.rope_parameters or {}).get("rope_type") != "default":
            return None
        if getattr(config, "sliding_window", None) or getattr(lm.model.rotary_emb, "attention_scaling", 1.0) != 1.0:
            return None
        if config.attention_bias or config.mlp_bias or config.hidden_act != "silu":
            return None
        if type(cache) is not DynamicCache or any(type(layer) is not DynamicLayer for layer in cache.layers):
            return None
        if len(cache.layers) != config.num_hidden_layers:
            return None
        return LlamaDecodeStep(lm, cache, attention_mask, capacity)

    def _rotary_table(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin [positions, 1, head dim] of the rotary embedding at positions
        0 .. positions - 1, from the model's own ``rotary_emb`` (each entry one product: the same
        bits as per step). The sin's first half is negated, so that rope(x) = x cos + roll(x) sin
        (``roll`` by half a head swaps the halves; ``rotate_half`` also negates one)."""
        probe = self.trunk.embed_tokens.weight[:1, None]
        cos, sin = self.trunk.rotary_emb(probe, position_ids=torch.arange(positions, device=probe.device)[None])
        half = self.head_dim // 2
        sin = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)
        return cos[0, :, None], sin[:, None]

    def __call__(self, token: torch.Tensor) -> torch.Tensor:
        n, t = token.shape[0], self.length
        if t == self.end:
            raise ValueError(f"LlamaDecodeStep: token {t + 1 - self.prompt_length} after the prompt is past the "
                             f"step's capacity of {self.end - self.prompt_length} tokens")  # fmt: skip
        self.length = t + 1
        heads, kv_heads, d = self.heads, self.kv_heads, self.head_dim
        position = self.position + (t - self.prompt_length)
        cos, sin = self.cos[position], self.sin[position]  # [n, 1, 1, d]
        mask = None if self.mask is None else self.mask[..., : t + 1]
        hidden = self.trunk.embed_tokens(token[:, None])  # [n, 1, H]
        width = hidden.shape[-1:]
        for i, layer in enumerate(self.layers):
            qkv = self.qkv[i](F.rms_norm(hidden, width, layer.input_layernorm.weight, self.eps))
            qk = qkv[..., : (heads + kv_heads) * d].view(n, 1, heads + kv_heads, d)
            qk = qk * cos + qk.roll(d // 2, dims=-1) * sin  # rope on the queries and the keys at once
            self.keys[i][:, :, t] = qk[:, 0, heads:]
            self.values[i][:, :, t] = qkv[:, 0, (heads + kv_heads) * d :].view(n, kv_heads, d)
            out = F.scaled_dot_product_attention(
                qk[:, :, :heads].transpose(1, 2), self.keys[i][:, :, : t + 1], self.values[i][:, :, : t + 1],
                attn_mask=mask, scale=self.scaling, enable_gqa=heads != kv_heads,
            )  # [n, heads, 1, d]  # fmt: skip
            hidden = hidden + self.o[i](out.transpose(1, 2).reshape(n, 1, heads * d))
            x = F.rms_norm(hidden, width, layer.post_attention_layernorm.weight, self.eps)
            gate, up = self.gate_up[i](x).chunk(2, dim=-1)
            hidden = hidden + self.down[i](F.silu(gate) * up)
        return self.lm_head(F.rms_norm(hidden, width, self.trunk.norm.weight, self.eps))[:, 0]
