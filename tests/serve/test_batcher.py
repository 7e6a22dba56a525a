"""The dynamic batcher: requests share forward passes, and one that fails never fails its batch-mates."""

import asyncio

import pytest

from bertkit.serve.batcher import Batcher


def test_a_failing_request_fails_alone_and_its_batch_mates_get_their_answers():
    calls = []

    def run(examples):
        calls.append(len(examples))
        if any(ex["text"] == "bad" for ex in examples):
            raise ValueError("cannot encode")
        return [ex["text"].upper() for ex in examples]

    async def scenario():
        batcher = Batcher(run, max_wait=0.05)
        batcher.start()
        texts = ["a", "b", "bad", "c", "d"]
        answers = await asyncio.gather(*(batcher.submit([{"text": t}]) for t in texts), return_exceptions=True)
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert [a if isinstance(a, list) else type(a) for a in answers] == [["A"], ["B"], ValueError, ["C"], ["D"]]
    assert calls[0] == 5 and calls[1:] == [1] * 5  # one shared pass that failed, then each request alone


def test_requests_share_a_forward_pass():
    async def scenario():
        batcher = Batcher(lambda examples: [len(examples)] * len(examples), max_wait=0.05)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit([{"text": "x"}, {"text": "y"}]) for _ in range(4)))
        await batcher.stop()
        return answers, batcher.batches

    answers, batches = asyncio.run(scenario())
    assert answers == [[8, 8]] * 4 and batches == 1


@pytest.mark.parametrize("value,found", [("ok", None), (["a", {"b": "\ud800"}], "\ud800"),
                                         ({"x": ["\udfff z"]}, "\udfff z")])
def test_lone_surrogates_are_found_anywhere_in_an_input(value, found):
    from bertkit.data.readers import lone_surrogate

    assert lone_surrogate(value) == found
