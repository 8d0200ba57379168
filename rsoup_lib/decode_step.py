"""One decoding step of a Llama model, the same numbers as its ``forward``, without its overhead.

A decoding step of ``sampling.decode`` runs the model on one new token per row, attending to the
key/value cache. Through ``LlamaForCausalLM.forward`` (transformers 5) each step also builds the
4-D attention mask through the masking utilities, walks the ``DynamicCache`` object, merges
config defaults, installs the output-capturing hooks and wraps the outputs in dataclasses. For
``tiny`` at batch 32 the matmuls dominate even so: skipping that overhead saved about 5 % of the
sampling's CPU time at one torch thread (measured with ``benchmarks/rl_profile.py``); it counts
for more at two threads, where the matmuls run in parallel and the overhead does not.

``LlamaDecodeStep`` runs the same modules in the same order, with the same tensor operations on
the same shapes, and keeps the cache as plain per-layer key/value tensors:

- embedding, rotary cos/sin (``model.model.rotary_emb`` at the new positions), then per layer
  h <- h + o_proj(SDPA(rope(q_proj(n1(h))), [K; rope(k_proj(n1(h)))], [V; v_proj(n1(h))]))
  h <- h + mlp(n2(h)), and finally logits = lm_head(norm(h));
- the attention mask SDPA receives is the one the masking utilities build for a single query:
  None when no row of the batch has padding, else the padding mask as booleans [n, 1, 1, T];
- attention goes through transformers' own ``sdpa_attention_forward`` (grouped-query packing
  included).

So the logits are bit-for-bit those of ``model(...)`` (``tests/test_decode_step.py`` checks it on
random models; ``benchmarks/same_numbers.py`` on whole trainings). Models it does not cover
(another architecture, another attention implementation, sliding windows, rotary scalings other
than the default) return None from ``LlamaDecodeStep.build`` and decode through ``forward``.
"""

from __future__ import annotations

import torch


class LlamaDecodeStep:
    """Callable ``(token [n], attention_mask [n, T], position_ids [n, 1]) -> logits [n, V]``
    continuing a prefilled ``DynamicCache``; the cache tensors are taken over (the cache object
    is not updated any more)."""

    def __init__(self, causal_lm, cache):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self.lm = causal_lm
        self.trunk = causal_lm.model
        self.layers = list(self.trunk.layers[: causal_lm.config.num_hidden_layers])
        self.keys = [layer.keys for layer in cache.layers]
        self.values = [layer.values for layer in cache.layers]
        self.attention = sdpa_attention_forward
        self.rope = apply_rotary_pos_emb

    @staticmethod
    def build(model, cache) -> "LlamaDecodeStep | None":
        """The fast step for ``model`` (a Llama causal LM, possibly inside a peft wrapper) and its
        prefilled ``cache``, or None when the model is not one it reproduces exactly."""
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
        if type(cache) is not DynamicCache or any(type(layer) is not DynamicLayer for layer in cache.layers):
            return None
        if len(cache.layers) != config.num_hidden_layers:
            return None
        return LlamaDecodeStep(lm, cache)

    def __call__(self, token: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        n = token.shape[0]
        hidden = self.trunk.embed_tokens(token[:, None])  # [n, 1, H]
        cos, sin = self.trunk.rotary_emb(hidden, position_ids=position_ids)
        mask = None if bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            residual = hidden
            x = layer.input_layernorm(hidden)
            shape = (n, 1, -1, attn.head_dim)
            q = attn.q_proj(x).view(shape).transpose(1, 2)
            k = attn.k_proj(x).view(shape).transpose(1, 2)
            v = attn.v_proj(x).view(shape).transpose(1, 2)
            q, k = self.rope(q, k, cos, sin)
            self.keys[i] = keys = torch.cat([self.keys[i], k], dim=-2)
            self.values[i] = values = torch.cat([self.values[i], v], dim=-2)
            out, _ = self.attention(attn, q, keys, values, mask, dropout=0.0, scaling=attn.scaling)
            hidden = residual + attn.o_proj(out.reshape(n, 1, -1).contiguous())
            residual = hidden
            hidden = residual + layer.mlp(layer.post_attention_layernorm(hidden))
        hidden = self.trunk.norm(hidden)
        return self.lm.lm_head(hidden[:, -1:, :])[:, -1]
