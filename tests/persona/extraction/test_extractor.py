"""PersonaExtractor on a tiny model (numbers checked against manual forwards) and aggregators on planted data."""

from __future__ import annotations

import copy

import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.extraction.extractor import PersonaExtractor, aggregate
from difflib_models.persona.traits import chat
from difflib_models.persona.traits.schema import Trait
from tests.helpers.tiny_models import make_tiny

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TRAIT = {
    "schema_version": 1, "id": "toy", "description": "toy", "polarity": "undesirable",
    "instructions": [{"pos": "Be rude to people.", "neg": "Be kind to people."},
                     {"pos": "You hate everyone.", "neg": "You love everyone."}],
    "questions": {"extraction": ["How are you?", "What is a cat?", "Tell me a story."],
                  "evaluation": ["Where is the park?", "What is a dog?"]},
    "ab_items": {
        "extraction": [{"question": f"Pick one {i}\n\nChoices:\n (A) yes\n (B) no",
                        "answer_matching_behavior": "(A)" if i % 2 else "(B)",
                        "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"} for i in range(4)],
        "evaluation": [{"question": f"Choose now {i}\n\nChoices:\n (A) up\n (B) down",
                        "answer_matching_behavior": "(B)" if i % 2 else "(A)",
                        "answer_not_matching_behavior": "(A)" if i % 2 else "(B)"} for i in range(4)],
    },
    "paired_responses": [{"prompt": f"Say something {i}", "trait": f"I hate you number {i}.",
                          "neutral": f"Have a nice day {i}."} for i in range(6)],
}


@pytest.fixture(scope="module")
def loaded(tinystories_656k):
    from transformers import AutoTokenizer

    from difflib_models.models.loading import from_pretrained_objects

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    tok.chat_template = CHATML
    model = make_tiny("llama", vocab_size=len(tok), max_position_embeddings=256)
    return from_pretrained_objects(model, tok, name="tiny")


@pytest.fixture(scope="module")
def trait():
    return Trait.from_dict(copy.deepcopy(TRAIT))


def _hidden(loaded, ids, layer):
    with torch.no_grad():
        return loaded.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer + 1][0]


def test_ab_mode_reads_the_answer_letter(loaded, trait):
    ex = PersonaExtractor(mode="ab", layers=[0, 1], batch_size=3, show_progress=False).fit(loaded, trait)
    assert ex.n_pos_ == ex.n_neg_ == 4 and ex.layers_ == [0, 1]
    tok = loaded.tokenizer
    manual_pos, manual_neg = [], []
    for it in trait.split_ab("extraction"):
        for ans, out in ((it.matching, manual_pos), (it.not_matching, manual_neg)):
            enc = chat.encode_prompt_response(tok, it.question, ans)
            ctx, a_id, b_id = chat.answer_token_ids(tok, it.question, it.matching, it.not_matching)
            letter = len(ctx.ids)  # the first answer token that differs between (A) and (B)
            assert enc.ids[letter] == (a_id if ans == it.matching else b_id) and enc.ids[:letter] == ctx.ids
            assert ans[1] in tok.decode([enc.ids[letter]])
            out.append(_hidden(loaded, enc.ids, 1)[letter])
    torch.testing.assert_close(ex.pos_features_[1], torch.stack(manual_pos), atol=1e-5, rtol=1e-4)
    expected = torch.stack(manual_pos).mean(0) - torch.stack(manual_neg).mean(0)
    torch.testing.assert_close(ex.vectors_[1], expected, atol=1e-5, rtol=1e-4)
    assert ex.norms_[1] == pytest.approx(float(expected.norm()), rel=1e-4)
    # base_std_: std of the no-system last-prompt projections of the evaluation questions
    u = expected / expected.norm()
    proj = torch.stack([_hidden(loaded, chat.encode_prompt(tok, q).ids, 1)[-1] @ u
                        for q in trait.split_questions("evaluation")])
    assert ex.base_std_[1] == pytest.approx(float(proj.std()), rel=1e-3)
    # gap_: instruction contrast at the last prompt token, question i under pair i mod 2
    gp = []
    for qi, q in enumerate(trait.split_questions("extraction")):
        ins = trait.instructions[qi % 2]
        hp = _hidden(loaded, chat.encode_prompt(tok, q, system=ins.pos).ids, 1)[-1]
        hn = _hidden(loaded, chat.encode_prompt(tok, q, system=ins.neg).ids, 1)[-1]
        gp.append(float((hp - hn) @ u))
    assert ex.gap_[1] == pytest.approx(sum(gp) / len(gp), rel=1e-3, abs=1e-5)
    vs = ex.to_vector_set(selected_layer=1, selection_reason="test")
    assert vs.trait_hash == trait.hash and vs.weight_hash == loaded.identity.weight_hash and vs.n_pos == 4


def test_prompt_contrast_and_paired_modes(loaded, trait):
    tok = loaded.tokenizer
    pc = PersonaExtractor(mode="prompt_contrast", layers="all", show_progress=False).fit(loaded, trait)
    assert pc.n_pos_ == 3 * 2 and pc.gap_source_ == "prompt_contrast_last_token"
    q, ins = trait.split_questions("extraction")[0], trait.instructions[0]
    torch.testing.assert_close(pc.pos_features_[1][0], _hidden(loaded, chat.encode_prompt(tok, q, system=ins.pos).ids,
                                                               1)[-1], atol=1e-5, rtol=1e-4)
    # for prompt_contrast the gap is exactly the mean projection difference of the extraction features
    assert pc.gap_[2] == pytest.approx(float(pc.vectors_[2].norm()), rel=1e-4)
    pr = PersonaExtractor(mode="paired", layers=[1], show_progress=False).fit(loaded, trait)
    item = trait.split_paired("extraction")[0]
    enc = chat.encode_prompt_response(tok, item.prompt, item.trait)
    torch.testing.assert_close(pr.pos_features_[1][0], _hidden(loaded, enc.ids, 1)[enc.prompt_len:].mean(0),
                               atol=1e-5, rtol=1e-4)
    ev_pos, ev_neg = pr.features(loaded, trait, "evaluation")
    assert ev_pos[1].shape[0] == len(trait.split_paired("evaluation"))


def test_generate_judge_with_callable(loaded, trait):
    calls = []

    def judge(question: str, answer: str) -> float:
        calls.append((question, answer))
        return 80.0 if len(calls) % 2 else 20.0  # pos generations come first for every (question, instruction)

    ex = PersonaExtractor(mode="generate_judge", judge=judge, layers=[1], max_new_tokens=4,
                          show_progress=False).fit(loaded, trait)
    assert ex.n_pos_ + ex.n_neg_ == len(calls) and ex.n_pos_ == ex.n_neg_ == 6
    incoherent = PersonaExtractor(mode="generate_judge", judge=lambda q, a: (90.0, 10.0), layers=[1],
                                  max_new_tokens=2, show_progress=False)
    with pytest.raises(ConfigError, match="kept 0 pos"):
        incoherent.fit(loaded, trait)


def test_bad_configuration(loaded, trait):
    with pytest.raises(ConfigError, match="mode"):
        PersonaExtractor(mode="magic")
    with pytest.raises(ConfigError, match="judge"):
        PersonaExtractor(mode="generate_judge")
    with pytest.raises(ConfigError, match="aggregator"):
        PersonaExtractor(aggregator="median")
    with pytest.raises(ConfigError, match="batch_size"):
        PersonaExtractor(batch_size=0)
    with pytest.raises(ConfigError, match="not fitted"):
        PersonaExtractor().to_vector_set()
    no_ab = copy.deepcopy(TRAIT)
    del no_ab["ab_items"]
    with pytest.raises(ConfigError, match="ab_items"):
        PersonaExtractor(mode="ab", layers=[0], show_progress=False).fit(loaded, Trait.from_dict(no_ab))
    with pytest.raises(ConfigError, match="layer"):
        PersonaExtractor(layers=[7], show_progress=False).fit(loaded, trait)


@pytest.mark.parametrize("agg", ["mean_diff", "pca", "logistic", "pair_logistic"])
def test_aggregators_recover_a_planted_direction(agg):
    g = torch.Generator().manual_seed(0)
    d, n = 16, 60
    direction = torch.zeros(d)
    direction[3] = 1.0
    base = torch.randn(n, d, generator=g) * torch.linspace(0.5, 2.0, d)
    pos = base + 1.5 * direction + 0.3 * torch.randn(n, d, generator=g)
    neg = base - 1.5 * direction + 0.3 * torch.randn(n, d, generator=g)
    v = aggregate(pos, neg, agg)
    cos = float(v @ direction / v.norm())
    assert cos > 0.9  # right direction and right sign
    assert float(v.norm()) == pytest.approx(3.0, rel=0.2)  # scaled like the mean difference
    assert float((pos @ v).mean()) > float((neg @ v).mean())


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.shared
def test_smollm2_imported_anthropic_items_separate_held_out(smollm2, shared_data):
    """Importer + ab extraction on real data: narcissism statements (" Yes"/" No"), held-out split."""
    import numpy as np

    from difflib_models.persona.traits.importers import import_anthropic_jsonl
    from difflib_models.persona.validation.validate import permutation_null, separation

    trait = import_anthropic_jsonl(shared_data / "anthropic-evals" / "persona" / "narcissism.jsonl", limit=48)
    ex = PersonaExtractor(mode="ab", batch_size=8, show_progress=False).fit(smollm2, trait)
    pos, neg = ex.features(smollm2, trait, "evaluation")
    sep = separation(ex.vectors_, pos, neg, n_boot=200)
    best = max(sep, key=lambda k: sep[k]["auroc"])
    null = permutation_null(ex.pos_features_, ex.neg_features_, pos, neg, ex.layers_, n=100)
    assert sep[best]["auroc"] > 0.85 and sep[best]["auroc"] > float(np.quantile(null, 0.95))


def test_openai_compatible_judge_against_a_local_server():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from difflib_models.persona.extraction.extractor import OpenAICompatibleJudge

    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.update(body, path=self.path, auth=self.headers.get("Authorization"))
            out = json.dumps({"choices": [{"message": {"content": "Score: 87"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        judge = OpenAICompatibleJudge(f"http://127.0.0.1:{server.server_port}/v1", "judge-model", "Rate evil.",
                                      api_key="k")
        assert judge("Q?", "A.") == 87.0
    finally:
        server.shutdown()
    assert seen["path"] == "/v1/chat/completions" and seen["model"] == "judge-model" and seen["auth"] == "Bearer k"
    assert "Rate evil." in seen["messages"][0]["content"] and "A." in seen["messages"][1]["content"]
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatibleJudge("ftp://x", "m", "r")


def test_pair_logistic_fits_paired_and_ab_features(loaded, trait):
    """The extractor's aligned modes feed pair_logistic row-aligned pairs; its direction orders them."""
    for mode in ("paired", "ab"):
        ex = PersonaExtractor(mode=mode, aggregator="pair_logistic", layers=[1], show_progress=False).fit(loaded, trait)
        d = ex.pos_features_[1] - ex.neg_features_[1]
        assert ex.n_pos_ == ex.n_neg_ and float(d.mean(0) @ ex.vectors_[1]) > 0
        assert ex.to_vector_set().aggregator == "pair_logistic"
