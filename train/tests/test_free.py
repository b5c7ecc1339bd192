import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import T5Config, T5ForConditionalGeneration

from free_train.free import (FreeObjective, dynamic_alignment, layerwise_kd, masked_mse, output_scale,
                             teacher_layers)


def tiny_config(**kw):
    base = dict(vocab_size=97, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=6,
                num_heads=4, dropout_rate=0.0, feed_forward_proj="relu", tie_word_embeddings=True,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    base.update(kw)
    return T5Config(**base)


def batch(seed=0, vocab=97):
    g = torch.Generator().manual_seed(seed)
    inp = torch.randint(3, vocab, (3, 9), generator=g)
    att = torch.ones_like(inp)
    att[0, 6:] = 0
    inp[0, 6:] = 0
    lab = torch.randint(3, vocab, (3, 7), generator=g)
    lab[1, 4:] = -100
    lab[2, 6:] = -100
    return inp, att, lab


def test_teacher_layers():
    assert teacher_layers(8, 2) == [3, 7]
    assert teacher_layers(12, 3) == [3, 7, 11]
    assert teacher_layers(6, 2) == [2, 5]
    assert teacher_layers(8, 1) == [7]


# ---- KD against a brute-force reference written with plain Python loops ----

def reference_kd(normed, S, mask):
    """Literal docs/method.md#training-objective on Python floats: per-position squared error averaged over the
    model dimension, averaged over non-padding positions."""
    L = len(normed)
    B, T, D = normed[0].shape

    def mse(a, b):
        tot, n = 0.0, 0
        for i in range(B):
            for j in range(T):
                if mask[i][j]:
                    tot += sum((float(a[i, j, d]) - float(b[i, j, d])) ** 2 for d in range(D)) / D
                    n += 1
        return tot / n

    teachers = [round((t + 1) * L / S) - 1 for t in range(S)]
    table = [[mse(normed[j], normed[teachers[t]]) for j in range(S)] for t in range(S)]
    picks = [None] * S
    allowed = list(range(S))  # the first pick may use any student
    prev = None
    for t in range(S - 1, -1, -1):
        cands = [j for j in allowed if prev is None or j < prev]
        if not cands:
            picks[t] = prev  # nothing below: keep the previous pick
        else:
            picks[t] = min(cands, key=lambda j: table[t][j])
        prev = picks[t]
    return sum(table[t][picks[t]] for t in range(S)) / S, picks


@pytest.mark.parametrize("L,S,seed", [(6, 2, 0), (8, 2, 1), (9, 3, 2), (8, 4, 3), (6, 3, 4)])
def test_layerwise_kd_matches_reference(L, S, seed):
    g = torch.Generator().manual_seed(seed)
    B, T, D = 2, 5, 6
    normed = [torch.randn(B, T, D, generator=g) * (1 + 0.3 * k) for k in range(L)]
    # make a deep teacher closest to a LOW student so the dynamic choice matters
    normed[teacher_layers(L, S)[-1]] = normed[0] + 0.01 * torch.randn(B, T, D, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 3:] = False
    kd, picks = layerwise_kd(normed, S, mask)
    ref, ref_picks = reference_kd(normed, S, mask.tolist())
    assert picks == ref_picks
    assert kd.item() == pytest.approx(ref, rel=1e-5)
    if S > 1:
        assert picks[-1] == 0  # the planted match was found


def test_alignment_is_monotone_and_reuses_when_exhausted():
    # teacher 1 best matches student 0 -> teacher 0 has nothing below, keeps 0
    assert dynamic_alignment(torch.tensor([[5.0, 1.0], [0.1, 3.0]])) == [0, 0]
    assert dynamic_alignment(torch.tensor([[1.0, 5.0], [3.0, 0.1]])) == [0, 1]
    assert dynamic_alignment(torch.tensor([[9.0, 1.0, 2.0], [1.0, 9.0, 2.0], [3.0, 2.0, 1.0]])) == [0, 0, 2]
    assert dynamic_alignment(torch.tensor([[1.0, 9.0, 2.0], [9.0, 1.0, 2.0], [3.0, 2.0, 1.0]])) == [0, 1, 2]


def test_padding_is_masked_out_of_kd():
    g = torch.Generator().manual_seed(5)
    normed = [torch.randn(2, 4, 8, generator=g) for _ in range(6)]
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    kd1, p1 = layerwise_kd(normed, 2, mask)
    noisy = [x.clone() for x in normed]
    for x in noisy:
        x[~mask] = 1e3 * torch.randn_like(x[~mask])
    kd2, p2 = layerwise_kd(noisy, 2, mask)
    assert p1 == p2 and kd1.item() == pytest.approx(kd2.item(), rel=1e-6)
    assert masked_mse(normed[0], normed[1], torch.zeros(2, 4, dtype=torch.bool)).item() == 0.0


def test_kd_gradient_flows_only_to_students():
    hs = [torch.randn(1, 3, 4, requires_grad=True) for _ in range(4)]
    kd, _ = layerwise_kd(hs, 2, torch.ones(1, 3, dtype=torch.bool))
    kd.backward()
    assert hs[0].grad is not None or hs[1].grad is not None
    assert hs[3].grad is None  # teacher (block 3) is detached
    assert hs[2].grad is None  # neither student nor teacher


# ---- the model paths ----

def test_deep_path_reproduces_hf_logits_and_states_are_pre_norm():
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(tiny_config()).eval()
    obj = FreeObjective(model, 2)
    inp, att, lab = batch()
    with torch.no_grad():
        out = obj(inp, att, lab, keep_logits=True)
        ref = model(input_ids=inp, attention_mask=att, labels=lab,
                    decoder_attention_mask=(lab != -100).long())
        torch.testing.assert_close(out.deep_logits, ref.logits, rtol=0, atol=0)
        assert out.ce_deep.item() == pytest.approx(ref.loss.item(), rel=1e-6)
        # h_L captured by the hooks is BEFORE the final norm: lm_head(c*FLN(h_L)) == HF logits
        obj(inp, att, lab)
        obj.tap.take()
        dec_in = model._shift_right(lab)
        enc = model.encoder(input_ids=inp, attention_mask=att)
        model.decoder(input_ids=dec_in, attention_mask=(lab != -100).long(),
                      encoder_hidden_states=enc.last_hidden_state, encoder_attention_mask=att)
        hs = obj.tap.take()
        assert len(hs) == 6
        fln = model.decoder.final_layer_norm
        mine = model.lm_head(fln(hs[-1]) * output_scale(model.config))
        torch.testing.assert_close(mine, ref.logits, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(hs[-1], fln(hs[-1]))


def test_shallow_logits_equal_a_truncated_model():
    torch.manual_seed(1)
    model = T5ForConditionalGeneration(tiny_config()).eval()
    S = 2
    obj = FreeObjective(model, S)
    inp, att, lab = batch(1)
    cfg = copy.deepcopy(model.config)
    cfg.num_decoder_layers = S
    small = T5ForConditionalGeneration(cfg).eval()
    missing = small.load_state_dict(model.state_dict(), strict=False)
    assert all(k.startswith("decoder.block.") for k in missing.unexpected_keys)
    with torch.no_grad():
        out = obj(inp, att, lab, keep_logits=True)
        ref = small(input_ids=inp, attention_mask=att, labels=lab, decoder_attention_mask=(lab != -100).long())
    torch.testing.assert_close(out.shallow_logits, ref.logits, rtol=1e-5, atol=1e-5)


def test_loss_formula_and_padding_ignored():
    torch.manual_seed(2)
    model = T5ForConditionalGeneration(tiny_config()).eval()
    S, L, alpha = 2, 6, 0.5
    obj = FreeObjective(model, S, alpha)
    inp, att, lab = batch(2)
    with torch.no_grad():
        out = obj(inp, att, lab, keep_logits=True)
        want = (S * out.ce_shallow + L * out.ce_deep) / (S + L) + alpha * out.kd
        assert out.loss.item() == pytest.approx(want.item(), rel=1e-6)
        m = lab != -100
        manual = F.cross_entropy(out.shallow_logits[m], lab[m])
        assert out.ce_shallow.item() == pytest.approx(manual.item(), rel=1e-6)
        assert out.n_tokens == int(m.sum())
        # example 1 alone, without its padding, gives the same per-token losses
        one = obj(inp[1:2], att[1:2], lab[1:2, :4], keep_logits=True)
        torch.testing.assert_close(one.deep_logits[0], out.deep_logits[1, :4], rtol=1e-5, atol=1e-5)


def test_output_scale_follows_scale_decoder_outputs():
    cfg = tiny_config(tie_word_embeddings=False)
    assert output_scale(cfg) == 1.0
    assert output_scale(tiny_config()) == pytest.approx(32 ** -0.5)


def test_t5_initialisation_from_scratch():
    """HF's _init_weights with initializer_factor 1.0 draws what docs/method.md#training-objective lists."""
    torch.manual_seed(0)
    d, dkv, h, ff = 256, 32, 8, 1024
    cfg = tiny_config(vocab_size=4096, d_model=d, d_kv=dkv, num_heads=h, d_ff=ff, num_layers=1,
                      num_decoder_layers=2, initializer_factor=1.0)
    m = T5ForConditionalGeneration(cfg)
    att = m.decoder.block[0].layer[0].SelfAttention
    ffn = m.decoder.block[0].layer[2].DenseReluDense

    def close(t, want):
        n = t.numel()  # sampling error of a std estimate is about 1/sqrt(2n)
        assert t.detach().std().item() == pytest.approx(want, rel=max(0.02, 4 / (2 * n) ** 0.5))

    close(m.shared.weight, 1.0)
    close(att.q.weight, (d * dkv) ** -0.5)
    close(att.k.weight, d ** -0.5)
    close(att.v.weight, d ** -0.5)
    close(att.o.weight, (h * dkv) ** -0.5)
    close(ffn.wi.weight, d ** -0.5)
    close(ffn.wo.weight, ff ** -0.5)
    close(att.relative_attention_bias.weight, d ** -0.5)
    assert torch.all(m.decoder.final_layer_norm.weight == 1.0)
    assert m.lm_head.weight.data_ptr() == m.shared.weight.data_ptr()  # tied


def test_hf_decoder_hidden_states_last_entry_is_after_the_final_norm():
    """Why free.py hooks the blocks: HF's decoder_hidden_states[k] is h_k for k < L, but its
    last entry is FLN(h_L) (after the final norm), not h_L."""
    torch.manual_seed(3)
    model = T5ForConditionalGeneration(tiny_config(num_decoder_layers=4)).eval()
    obj = FreeObjective(model, 2)
    inp, att, lab = batch(3)
    with torch.no_grad():
        obj.tap.take()
        r = model(input_ids=inp, attention_mask=att, labels=lab, output_hidden_states=True)
        hs = obj.tap.take()
    dh = r.decoder_hidden_states
    assert len(dh) == 5 and len(hs) == 4
    for k in range(3):
        torch.testing.assert_close(dh[k + 1], hs[k])
    torch.testing.assert_close(dh[4], model.decoder.final_layer_norm(hs[3]))
    assert not torch.allclose(dh[4], hs[3])
