"""Chinese end to end on the tiny model (which knows the characters of conftest.CHINESE): a tagger trained on
character-level CoNLL predicts entities with character offsets into raw text without spaces (CLI, Python and
the HTTP server), and the run report of a classifier with Chinese labels renders its text in the browser with
real glyphs, not the boxes of a missing font."""

import json
import random
import subprocess

import pytest

from bertkit.cli import main
from bertkit.inference.predictor import Predictor
from conftest import cli_train, write_csv

PEOPLE, PLACES, LINKS = ["张三", "李四"], ["北京", "上海"], ["在", "去了", "见了"]


def _sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Character-level sentences such as 张三在北京见了李四, tagged B-/I-PER and B-/I-LOC per character."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chars, tags = [], []
        for k in range(rng.randint(2, 3)):
            name, kind = (rng.choice(PEOPLE), "PER") if (k + rng.random()) % 2 < 1 else (rng.choice(PLACES), "LOC")
            chars += list(name)
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
            link = rng.choice(LINKS)
            chars += list(link)
            tags += ["O"] * len(link)
        out.append((chars, tags))
    return out


def _conll(path, sentences):
    """Two columns, character and tag, as the People's Daily files are."""
    path.write_text("".join("".join(f"{c} {t}\n" for c, t in zip(chars, tags)) + "\n" for chars, tags in sentences),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tagger(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("zh-ner")
    return cli_train("ner", _conll(tmp / "train.txt", _sentences(200, 1)), _conll(tmp / "dev.txt", _sentences(40, 2)),
                     tmp / "run", tiny_model_dir, "--max-steps", "80", "--lr", "5e-3", "--batch-size", "16")


TEXT = "张三在北京见了李四。"
EXPECTED = [("张三", "PER", 0, 2), ("北京", "LOC", 3, 5), ("李四", "PER", 7, 9)]


def _found(entities):
    return [(e["text"], e["label"], e["start"], e["end"]) for e in entities]


def test_a_character_level_tagger_finds_entities_in_raw_text_with_offsets(tagger, capsys):
    assert json.loads((tagger / "results.json").read_text())["dev"]["f1"] >= 0.9
    capsys.readouterr()
    assert main(["predict", str(tagger), "--text", TEXT]) == 0
    entities = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["entities"]
    assert _found(entities) == EXPECTED
    assert all(TEXT[e["start"]:e["end"]] == e["text"] for e in entities)
    # the same offsets from the Python API, after two spaces
    pred = Predictor.from_path(tagger, precision="fp32").predict(["  " + TEXT])[0]
    assert _found(pred["entities"]) == [(t, k, s + 2, e + 2) for t, k, s, e in EXPECTED]


def test_the_server_takes_and_returns_chinese(tagger):
    from serve.test_server import ThreadServer

    server = ThreadServer(tagger)  # the app of `bertkit serve`, under uvicorn in a thread
    try:
        status, body = server.call("POST", "/v1/predict", {"inputs": [TEXT, list("李四去了上海")]})
        assert status == 200
        assert _found(body["predictions"][0]["entities"]) == EXPECTED
        assert body["predictions"][1]["tags"] == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    finally:
        server.stop()


# A missing glyph draws as the font's .notdef box: the same pixels for any missing character. A private-use
# code point is missing from every font the report names, so it draws that box.
SAME_AS_TOFU = """
const [text, font] = arguments;
function pixels(s) {
  const c = document.createElement('canvas'); c.width = 64; c.height = 64;
  const g = c.getContext('2d'); g.font = font; g.fillText(s, 4, 48);
  return Array.from(g.getImageData(0, 0, 64, 64).data).join(',');
}
const tofu = pixels('\\uE000');
return [...new Set(text)].filter(ch => /[\\p{Script=Han}\\uE001]/u.test(ch)).map(ch => [ch, pixels(ch) === tofu]);
"""


def test_the_report_of_a_chinese_run_draws_its_characters(tmp_path, tiny_model_dir):
    from evaluation.test_report import _chrome

    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout.strip()
    if not fonts:
        pytest.skip("no font with Chinese glyphs on this machine (scripts/setup-browser.sh installs one)")
    rows = [("这部电影很好看" if i % 2 else "剧情无聊", "好评" if i % 2 else "差评") for i in range(120)]
    train, dev = write_csv(tmp_path / "train.csv", ["text", "label"], rows), write_csv(tmp_path / "dev.csv",
                                                                                       ["text", "label"], rows[:40])
    run = cli_train("classification", train, dev, tmp_path / "run", tiny_model_dir, "--max-steps", "20")
    driver = _chrome()
    try:
        driver.get((run / "report.html").as_uri())
        body = driver.execute_script("return document.body.innerText")
        assert "好评" in body and "差评" in body
        font = driver.execute_script("return getComputedStyle(document.body).font")
        checked = driver.execute_script(SAME_AS_TOFU, body, font)
        assert checked and not [ch for ch, tofu in checked if tofu], checked
        assert driver.execute_script(SAME_AS_TOFU, "好\ue001", font) == [["好", False], ["\ue001", True]]
    finally:
        driver.quit()
