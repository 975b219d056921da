"""A room's vocabulary in the pipeline: the prompt budget, the spelling it restores, the guard."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipeline.engines.whisper import kept_prompt
from pipeline.text import join_words
from pipeline.types import TranscribeRequest, Transcript, Word
from pipeline.vocabulary import Vocabulary
from pipeline.wire import WhisperCodec

TERMS = Vocabulary(("Niamh Okonkwo", "Databricks", "Elasticsearch", "Kafka", "Airflow"))


def words(text: str, probability: float = 0.9) -> list[Word]:
    return [Word(" " + w, i * 0.3, i * 0.3 + 0.25, probability) for i, w in enumerate(text.split())]


def corrected(text: str) -> str:
    return join_words(TERMS.correct(words(text)))


def test_terms_misheard_by_a_letter_or_split_are_written_as_the_term() -> None:
    assert (
        corrected("please ask about the data bricks invoice.") == "please ask about the Databricks invoice."
    )
    assert corrected("I am Akonkwo, today") == "I am Okonkwo, today"
    assert corrected("Niamh Okonkwa will present") == "Niamh Okonkwo will present"
    assert corrected("the air flow team") == "the Airflow team"


def test_neighbours_and_ordinary_words_are_left_alone() -> None:
    assert (
        corrected("will present the elastic search migration") == "will present the Elasticsearch migration"
    )
    assert (
        corrected("the bricks and the graph on the dashboard") == "the bricks and the graph on the dashboard"
    )
    assert corrected("a cafe cake") == "a cafe cake"  # "Kafka" is too short to be guessed at


def test_corrected_words_keep_their_span_and_doubt() -> None:
    heard = words("the data bricks invoice", probability=0.6)
    fixed = TERMS.correct(heard)
    term = next(w for w in fixed if "Databricks" in w.text)
    assert term.start == heard[1].start and abs(term.end - heard[2].end) < 1e-9 and term.probability == 0.6


def test_text_heard_only_through_the_prompt_is_not_speech() -> None:
    sure = Transcript(tuple(words("Kafka and Airflow.")), "en", no_speech_prob=0.02, avg_logprob=-0.3)
    assert not TERMS.echoed(sure, duration=3.0)
    # Noise prompted with a vocabulary: Whisper's no-speech probability falls to ~0.5.
    noise = Transcript(tuple(words("Fade,")), "en", no_speech_prob=0.5, avg_logprob=-2.2)
    assert TERMS.echoed(noise, duration=3.0)
    # Nothing but vocabulary, too short to have been said, or doubted.
    assert TERMS.echoed(Transcript(tuple(words("Niamh Okonkwo")), "en", 0.05, -0.2), duration=0.5)
    assert TERMS.echoed(Transcript(tuple(words("Niamh")), "en", 0.25, -1.3), duration=3.0)
    assert not Vocabulary().echoed(noise, duration=3.0)


@given(
    vocabulary=st.lists(st.integers(0, 50), max_size=20),
    context=st.lists(st.integers(51, 99), max_size=40),
    keep=st.integers(0, 70),
)
def test_a_cut_prompt_keeps_the_vocabulary_whole_and_the_newest_context(
    vocabulary: list[int], context: list[int], keep: int
) -> None:
    tokens = vocabulary + context
    keep = min(keep, len(tokens))
    out = kept_prompt(tokens, len(vocabulary), keep)
    assert len(out) == keep
    assert out[: min(keep, len(vocabulary))] == vocabulary[:keep]
    rest = keep - len(vocabulary)
    if rest > 0:
        assert out[len(vocabulary) :] == context[len(context) - rest :]


def test_the_vocabulary_travels_with_a_request_to_workers() -> None:
    codec = WhisperCodec()
    request = TranscribeRequest(np.zeros(1600, np.float32), "earlier text", hotwords=TERMS.prompt)
    body, blob = codec.request_body(request)
    assert (
        codec.read_request(body, blob).hotwords == "Niamh Okonkwo, Databricks, Elasticsearch, Kafka, Airflow."
    )
    body.pop("hotwords")  # a gateway from before issue 21
    assert codec.read_request(body, blob).hotwords == ""
