"""The embedding task: reading pairs and scored pairs, the search metrics against pytrec_eval, the losses against
their formulas, gradient caching against the whole batch, and a run on the tiny model whose model folder
sentence-transformers loads with the same vectors, through `bertkit embed`, evaluate, the ONNX export and
the OpenAI embeddings API of `bertkit serve`."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertkit.config import DataConfig, task_config
from bertkit.data.task_files import read_examples
from bertkit.errors import DataError
from bertkit.tasks import get_task
from bertkit.tasks.embedding import cosent_loss, in_batch_loss
from bertkit.tasks.retrieval_metrics import retrieval_metrics
from conftest import CITIES, FILLER, NAMES, VERBS, cli_train, write_jsonl


def toy_pairs(n: int, seed: int) -> list[dict]:
    """A question naming a person and a city, and a passage about the same two among filler: each pair has its
    own key (most of the 36 combinations), so search can tell them apart only by reading both words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        name, city = rng.choice(NAMES), rng.choice(CITIES)
        rows.append({"query": f"{name} {' '.join(rng.sample(FILLER, 2))} {city} ?",
                     "passage": " ".join(rng.sample(FILLER, 3) + [city, rng.choice(VERBS), name])})
    return rows


def embedding_task(**options):
    return get_task(task_config("embedding", **options))


# --- reading ---------------------------------------------------------------------------------------------
def test_pairs_are_found_by_their_usual_column_names_and_bad_rows_are_named(tmp_path):
    task = embedding_task()
    path = write_jsonl(tmp_path / "p.jsonl", [{"query": "q1", "passage": "p1", "negative": "n1"}])
    (ex,) = read_examples(task, path, DataConfig(), None)
    assert (ex["anchor"], ex["positive"], ex["negative"], ex["where"]) == ("q1", "p1", "n1", f"{path}:1")
    task.fit([ex])
    assert task.state()["problem"] == "pairs" and task.primary_metric == "ndcg@10"

    scored = write_jsonl(tmp_path / "s.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 0.5},
                                                {"sentence1": "c", "sentence2": "d", "score": "4"}])
    examples = read_examples(task, scored, DataConfig(), None)
    assert [e["score"] for e in examples] == [0.5, 4.0]
    task.fit(examples)
    assert task.state()["problem"] == "scored" and task.primary_metric == "spearman"

    for rows, message in (([{"query": "q", "passage": " "}], r"p.jsonl:1: column 'passage' is empty"),
                          ([{"anchor": "a", "positive": "b", "score": "high"}],
                           r"p.jsonl:1: score 'high' is not a number"),
                          ([{"title": "a", "body": "b"}], r"no column for task.anchor_column \(looked for anchor, "
                                                          r"query.*--anchor-column")):
        write_jsonl(path, rows)
        with pytest.raises(DataError, match=message):
            read_examples(task, path, DataConfig(), None)
    write_jsonl(path, [{"a": "x", "b": "y"}])
    (ex,) = read_examples(embedding_task(anchor_column="a", positive_column="b"), path, DataConfig(), None)
    assert (ex["anchor"], ex["positive"]) == ("x", "y")


def test_each_training_pair_gets_a_mined_negative_that_is_not_its_own_passage(tmp_path):
    pytest.importorskip("bm25s")
    from bertkit.data.checks import near_key

    task = embedding_task(mine_negatives=True)
    rows = toy_pairs(60, 7) + [{"query": "alice film paris ?", "passage": "Alice: the film, Paris."}]
    examples = read_examples(task, write_jsonl(tmp_path / "p.jsonl", rows), DataConfig(), None)
    task.fit(examples)
    mined, note = task.complete_training(examples)
    assert "hard negative mined with BM25" in note and len(mined) == len(examples)
    own = {}
    for ex in examples:
        own.setdefault(ex["anchor"], set()).add(near_key(ex["positive"]))
    for ex in mined:
        assert near_key(ex["negative"]) not in own[ex["anchor"]]
        words = set(near_key(ex["anchor"]).split()) - set(FILLER)
        assert words & set(near_key(ex["negative"]).split())  # BM25 found it by a name or city the query has
    assert embedding_task().complete_training(examples) == (examples, None)  # off by default
    with_negative = [{**ex, "negative": "given"} for ex in examples]
    assert task.complete_training(with_negative)[0] == with_negative  # a file's own negatives are kept


# --- metrics ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("graded", [False, True])
def test_search_metrics_match_pytrec_eval(graded):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    scores = rng.random((40, 150))  # no ties: trec_eval breaks them by document id, we by document order
    relevant = []
    for _ in range(40):
        docs = rng.choice(150, size=rng.integers(1, 4), replace=False)
        relevant.append({int(d): int(rng.integers(1, 4)) for d in docs} if graded else {int(d) for d in docs})
    ours = retrieval_metrics(scores, relevant)
    qrels = {f"q{q}": {f"d{d}": (rel[d] if graded else 1) for d in rel} for q, rel in enumerate(relevant)}
    run = {f"q{q}": {f"d{d}": float(s) for d, s in enumerate(row)} for q, row in enumerate(scores)}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recall.1,10,100", "ndcg_cut.10"})
    theirs = evaluator.evaluate(run)
    for ours_key, their_key in (("recall@1", "recall_1"), ("recall@10", "recall_10"), ("recall@100", "recall_100"),
                                ("ndcg@10", "ndcg_cut_10")):
        assert ours[ours_key] == pytest.approx(np.mean([theirs[q][their_key] for q in theirs]), abs=1e-9), ours_key
    # MRR@10: trec_eval's recip_rank over the top 10 of each ranking
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    assert ours["mrr@10"] == pytest.approx(np.mean([rr[q]["recip_rank"] for q in rr]), abs=1e-9)


# --- losses ----------------------------------------------------------------------------------------------
def test_the_in_batch_loss_is_cross_entropy_over_all_candidates_and_never_counts_a_twin_positive_as_negative():
    torch.manual_seed(0)
    vectors = F.normalize(torch.randn(4, 3, 8), dim=-1)  # anchor, positive, negative per row
    keys = torch.arange(12).view(4, 3)
    candidates = torch.cat([vectors[:, 1], vectors[:, 2]])  # every positive, then every negative
    expected = F.cross_entropy(20.0 * vectors[:, 0] @ candidates.T, torch.arange(4))
    assert in_batch_loss(vectors, keys, 20.0) == pytest.approx(float(expected), rel=1e-6)

    # rows 0 and 2 share a positive text (the same passage answers two questions): for row 0, row 2's copy is
    # left out of the candidates, and the other way round
    keys[2, 1] = keys[0, 1]
    vectors[2, 1] = vectors[0, 1]
    scores = 20.0 * vectors[:, 0] @ torch.cat([vectors[:, 1], vectors[:, 2]]).T
    scores[0, 2] = scores[2, 0] = float("-inf")
    assert in_batch_loss(vectors, keys, 20.0) == pytest.approx(float(F.cross_entropy(scores, torch.arange(4))),
                                                               rel=1e-6)
    symmetric = in_batch_loss(vectors[:, :2], keys[:, :2], 20.0, symmetric=True)
    forward = in_batch_loss(vectors[:, :2], keys[:, :2], 20.0)
    backward = F.cross_entropy(20.0 * vectors[:, 1] @ vectors[:, 0].T, torch.arange(4))
    assert symmetric == pytest.approx(float((forward + backward) / 2), rel=1e-6)


def test_cosent_is_the_log_sum_over_every_wrongly_ordered_pair():
    torch.manual_seed(1)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    scores = torch.tensor([0.1, 0.9, 0.5, 0.5, 0.3, 0.8])
    cos = F.cosine_similarity(a, b, dim=-1) * 20.0
    terms = [cos[i] - cos[j] for i in range(6) for j in range(6) if scores[i] < scores[j]]
    expected = torch.log(1 + torch.exp(torch.stack(terms)).sum())
    assert cosent_loss(a, b, scores, 20.0) == pytest.approx(float(expected), rel=1e-5)


def test_gradient_caching_gives_the_gradients_of_the_whole_batch_with_dropout_on(tiny_model_dir):
    from transformers import AutoModel, AutoTokenizer

    from bertkit.training.objectives import GradCache, TaskLoss

    task = embedding_task()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [{"where": f"x:{i}", "anchor": r["query"], "positive": r["passage"]} for i, r in enumerate(toy_pairs(6, 3))]
    batch = task.collate(task.preprocess(rows, tokenizer, DataConfig(max_length=32)), tokenizer.pad_token_id)
    model = AutoModel.from_pretrained(tiny_model_dir).train()  # dropout on: the replay must draw the same masks

    def grads(objective, reference_in_chunks=False):
        model.zero_grad()
        torch.manual_seed(5)
        if reference_in_chunks:  # the same mini-batches, in the same order, kept in one graph
            outputs = torch.cat([task.forward(model, {k: v[i:i + 2] for k, v in batch.items()}) for i in (0, 2, 4)])
        else:
            outputs = objective.forward(model, batch)
        loss = objective.loss(outputs.float(), batch) / 2  # as the loop divides by its accumulation steps
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    cached_loss, cached = grads(GradCache(task, 2, lambda: torch.autocast("cpu", enabled=False)))
    plain_loss, plain = grads(TaskLoss(task), reference_in_chunks=True)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-6)
    assert cached.keys() == plain.keys() and len(cached) > 10
    for name in plain:
        assert torch.allclose(cached[name], plain[name], atol=1e-6), name


def test_texts_of_unlike_length_embedded_together_get_the_vectors_each_gets_alone(tiny_model_dir):
    """A column runs in sub-batches by length (less padding); each text's vector is the one it gets alone."""
    from transformers import AutoModel, AutoTokenizer

    task = embedding_task()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    texts = [" ".join(FILLER[: n % len(FILLER) + 1] * (1 + n // 3)) for n in (40, 1, 25, 3, 60, 2, 33)]
    examples = task.make_examples(texts, tokenizer)

    def vectors(items):
        batch = task.collate(task.preprocess(items, tokenizer, DataConfig(max_length=64)), tokenizer.pad_token_id)
        with torch.no_grad():
            return task.forward(model, batch)[:, 0]

    together = vectors(examples)
    alone = torch.cat([vectors([ex]) for ex in examples])
    assert torch.allclose(together, alone, atol=1e-5)
    alike = task.make_examples(["alice film paris and rome ?", "bob saw rome"], tokenizer)  # one sub-batch, sorted
    assert torch.allclose(vectors(alike), torch.cat([vectors([ex]) for ex in alike]), atol=1e-5)


# --- a run end to end --------------------------------------------------------------------------------------
def toy_embedding_run(tmp, model_dir, epochs: int):
    """(run, training file, dev file) of an embedding run on `toy_pairs` (480 to train, 60 dev)."""
    train, dev = write_jsonl(tmp / "train.jsonl", toy_pairs(480, 1)), write_jsonl(tmp / "dev.jsonl", toy_pairs(60, 2))
    run = cli_train("embedding", train, dev, tmp / "run", model_dir, "--lr", "3e-3", "--epochs", str(epochs),
                    "--batch-size", "16", "--max-length", "32")
    return run, train, dev


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory, tiny_model_dir):
    run, _, dev = toy_embedding_run(tmp_path_factory.mktemp("embedding"), tiny_model_dir, 6)
    return run, dev


def test_training_brings_each_question_to_its_passage(pairs_run, tiny_model_dir):
    from bertkit.api import evaluate

    run, dev = pairs_run
    results = json.loads((run / "results.json").read_text())
    assert results["primary_metric"] == "ndcg@10"
    before = evaluate_untrained(tiny_model_dir, dev)
    assert results["dev"]["ndcg@10"] > before["ndcg@10"] + 0.2, (before, results["dev"])
    assert evaluate(run, dev) == pytest.approx(results["dev"], abs=2e-3)  # bf16 or fp32 inference


def evaluate_untrained(model_dir, dev):
    from transformers import AutoModel, AutoTokenizer

    from bertkit.inference.batched import predict_outputs
    from bertkit.models.loading import sentence_transformers_config
    from bertkit.runtime import Runtime

    task = embedding_task()
    task.use_model_settings(sentence_transformers_config(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = read_examples(task, dev, DataConfig(), None)
    task.fit(examples)
    features = task.preprocess(examples, tokenizer, DataConfig(max_length=32))
    outputs = predict_outputs(AutoModel.from_pretrained(model_dir), task, features, Runtime("fp32", cpu=True),
                              tokenizer.pad_token_id, len(examples))
    return task.metrics(outputs, examples)


def test_the_model_folder_is_a_sentence_transformers_model_with_the_same_vectors(pairs_run):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from bertkit.inference.embed import embed_texts
    from bertkit.inference.predictor import Predictor

    run, dev = pairs_run
    texts = [r["query"] for r in map(json.loads, dev.read_text().splitlines())][:20] + ["a text that is new"]
    ours = embed_texts(Predictor.from_run(run, precision="fp32"), texts)
    st = SentenceTransformer(str(run / "model"), device="cpu").encode(texts, convert_to_numpy=True)
    assert ours.shape == st.shape and np.abs(ours - st).max() < 1e-5

    # plain transformers and the pooling recorded in the folder
    pooling = json.loads((run / "model" / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and "2_Normalize" in (run / "model" / "modules.json").read_text()
    tokenizer, model = AutoTokenizer.from_pretrained(run / "model"), AutoModel.from_pretrained(run / "model")
    enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        states = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    plain = F.normalize((states * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert np.abs(ours - plain).max() < 1e-5


def test_bertkit_embed_writes_every_format_in_input_order(pairs_run, tmp_path):
    import pyarrow.parquet as pq

    from bertkit.cli import main
    from bertkit.inference.embed import embed_texts
    from bertkit.inference.predictor import Predictor

    run, dev = pairs_run
    passages = [json.loads(line)["passage"] for line in dev.read_text().splitlines()]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": f"d{i}", "text": p} for i, p in enumerate(passages)])
    for name in ("v.npy", "v.parquet", "v.jsonl"):
        assert main(["embed", str(run), "--input", str(corpus), "--output", str(tmp_path / name)]) == 0
    expected = embed_texts(Predictor.from_run(run), passages)
    assert np.abs(np.load(tmp_path / "v.npy") - expected).max() < 1e-6
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column("id").to_pylist()[:2] == ["d0", "d1"]
    assert np.abs(np.array(table.column("embedding").to_pylist()) - expected).max() < 1e-6
    lines = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert lines[5]["id"] == "d5" and np.abs(np.array(lines[5]["embedding"]) - expected[5]).max() < 1e-6
    assert not list(tmp_path.glob(".v.*"))  # no temporary file left
    assert main(["embed", str(run), "--input", str(corpus), "--output", str(tmp_path / "v.csv")]) == 2


def test_scored_pairs_train_with_cosent_and_score_by_spearman(tmp_path, tiny_model_dir):
    from scipy.stats import spearmanr

    from bertkit.inference.embed import embed_texts
    from bertkit.inference.predictor import Predictor

    rng = random.Random(4)
    rows = []
    for _ in range(200):
        a, b = rng.sample(NAMES, 2)
        same = rng.random() < 0.5
        rows.append({"sentence1": f"{a} {rng.choice(VERBS)} {' '.join(rng.sample(FILLER, 2))}",
                     "sentence2": f"{' '.join(rng.sample(FILLER, 2))} {a if same else b}",
                     "score": 1.0 if same else 0.0})
    train, dev = write_jsonl(tmp_path / "t.jsonl", rows[:160]), write_jsonl(tmp_path / "d.jsonl", rows[160:])
    run = cli_train("embedding", train, dev, tmp_path / "run", tiny_model_dir, "--lr", "3e-3", "--epochs", "4",
                    "--batch-size", "16")
    results = json.loads((run / "results.json").read_text())
    assert results["primary_metric"] == "spearman" and results["dev"]["spearman"] > 0.5
    predictor = Predictor.from_run(run, precision="fp32")
    a = embed_texts(predictor, [r["sentence1"] for r in rows[160:]])
    b = embed_texts(predictor, [r["sentence2"] for r in rows[160:]])
    expected = spearmanr((a * b).sum(1), [r["score"] for r in rows[160:]]).statistic
    assert results["dev"]["spearman"] == pytest.approx(expected, abs=0.02)  # the run scored in its own precision


def test_the_onnx_export_gives_the_same_vectors(pairs_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from bertkit.export.onnx import export_onnx
    from bertkit.inference.embed import embed_texts
    from bertkit.inference.predictor import Predictor

    run, dev = pairs_run
    folder, _ = export_onnx(run, tmp_path / "onnx")
    texts = ["alice film paris ?", "a new text about rome"]
    torch_vectors = embed_texts(Predictor.from_run(run, precision="fp32"), texts)
    assert np.abs(embed_texts(Predictor.from_path(folder), texts) - torch_vectors).max() < 1e-4


def test_the_openai_client_gets_the_runs_vectors_from_bertkit_serve(pairs_run, toy_run):
    openai = pytest.importorskip("openai")
    pytest.importorskip("fastapi")
    from bertkit.inference.embed import embed_texts
    from bertkit.inference.predictor import Predictor
    from serve.test_server import ThreadServer

    run, _ = pairs_run
    server = ThreadServer(run, api_key="secret")
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="secret", max_retries=0)
        texts = ["alice film paris ?", "bob saw rome"]
        answer = client.embeddings.create(model="toy", input=texts)  # the client asks for base64 by default
        expected = embed_texts(Predictor.from_run(run), texts)
        assert [d.index for d in answer.data] == [0, 1] and answer.usage.prompt_tokens > 0
        assert np.abs(np.array([d.embedding for d in answer.data]) - expected).max() < 1e-5
        floats = client.embeddings.create(model="toy", input="bob saw rome", encoding_format="float")
        assert np.abs(np.array(floats.data[0].embedding) - expected[1]).max() < 1e-5
        with pytest.raises(openai.UnprocessableEntityError):
            client.embeddings.create(model="toy", input=texts, dimensions=3)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).embeddings.create(
                model="toy", input="x")
    finally:
        server.stop()
    server = ThreadServer(toy_run[0])
    try:
        status, body = server.call("POST", "/v1/embeddings", {"input": "a text"})
        assert status == 404 and body["error"]["code"] == "not_an_embedding_model"
    finally:
        server.stop()
