"""The semantic cache: what is compared, what must match exactly, the index, calibration."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from devora_lab.cache.semantic import (
    Calibration,
    Embedder,
    HashingEmbedder,
    SemanticIndex,
    calibrate,
    conversation_text,
    load_pairs,
    scope_key,
    semantic_parts,
)

PAIRS = Path(__file__).resolve().parents[2] / "data" / "semantic_pairs.jsonl"
PARAMS: dict[str, Any] = {"temperature": 0, "max_tokens": 256}


class TableEmbedder:
    """Fixed vectors per text, so that every cosine in a test is known exactly."""

    def __init__(self, table: Mapping[str, Sequence[float] | NDArray[np.float64]]) -> None:
        self.table = table
        self.calls = 0

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float64]:
        self.calls += 1
        return np.array([self.table[text] for text in texts], dtype=np.float64)


def at_cosine(similarity: float) -> tuple[float, float]:
    """A unit vector whose cosine with (1, 0) is ``similarity``."""
    return (similarity, math.sqrt(1.0 - similarity**2))


def index(table: Mapping[str, Sequence[float] | NDArray[np.float64]], threshold: float = 0.95,
          **limits: int) -> SemanticIndex:
    return SemanticIndex(TableEmbedder(table), threshold=threshold, **limits)


# -- conversation_text ----------------------------------------------------------------------


def tool_conversation(call_id: str, arguments: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "weather", "arguments": arguments}}]},
        {"tool_call_id": call_id, "role": "tool", "content": '{"celsius": 21}'},
    ]


def test_conversation_text_has_roles_contents_and_tool_calls_in_order() -> None:
    text = conversation_text(tool_conversation("call_1", '{"city": "Paris"}'))
    assert text == ('system: You are terse.\nuser: Weather in Paris?\n'
                    'assistant calls weather({"city":"Paris"})\ntool: {"celsius": 21}')


def test_conversation_text_is_stable_across_ids_key_order_and_runs() -> None:
    first = conversation_text(tool_conversation("call_1", '{"city": "Paris", "unit": "C"}'))
    second = conversation_text(tool_conversation("call_9", '{"unit":"C","city":"Paris"}'))
    assert first == second == conversation_text(
        tool_conversation("call_1", '{"city": "Paris", "unit": "C"}'))
    assert conversation_text(tool_conversation("call_1", '{"city": "Rome"}')) != first


def test_conversation_text_keeps_non_text_parts_as_stable_digests() -> None:
    def message(url: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}}]}]

    cat = conversation_text(message("https://example.com/cat.png"))
    assert cat.startswith("user: What is in this picture?\n[image_url ")
    assert cat == conversation_text(message("https://example.com/cat.png"))
    assert cat != conversation_text(message("https://example.com/dog.png"))


def test_conversation_text_names_the_speaker_and_skips_empty_content() -> None:
    messages = [{"role": "user", "name": "ana", "content": "Hi"}, {"role": "assistant",
                                                                    "content": ""}]
    assert conversation_text(messages) == "user (ana): Hi"


def test_semantic_parts_compares_only_a_final_text_user_message() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert semantic_parts(messages) == ([messages[0]], messages[1])
    assert semantic_parts(tool_conversation("c", "{}")) is None  # ends with a tool result
    assert semantic_parts([]) is None
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert semantic_parts(image) is None


# -- scopes ---------------------------------------------------------------------------------


def test_scope_changes_with_anything_that_can_change_the_answer() -> None:
    base = scope_key("openai", "gpt-4o", PARAMS)
    assert base == scope_key("openai", "gpt-4o", {"max_tokens": 256, "temperature": 0.0,
                                                  "stream": True, "user": "u1"})
    others = [scope_key("openai", "gpt-4o-mini", PARAMS),
              scope_key("openai", "gpt-4o", {**PARAMS, "temperature": 0.2}),
              scope_key("openai", "gpt-4o", {**PARAMS, "seed": 7}),
              scope_key("azure", "gpt-4o", PARAMS),
              scope_key("openai", "gpt-4o", PARAMS, namespace="team-b"),
              scope_key("openai", "gpt-4o", PARAMS,
                        context=[{"role": "system", "content": "Be brief."}])]
    assert len({base, *others}) == len(others) + 1


def test_a_request_never_matches_in_another_scope() -> None:
    idx = SemanticIndex(HashingEmbedder(), threshold=0.5)
    text = "user: Write a Python function that flattens a nested list."
    mini = scope_key("openai", "gpt-4o-mini", PARAMS)
    warm = scope_key("openai", "gpt-4o", {**PARAMS, "temperature": 0.7})
    idx.add(scope_key("openai", "gpt-4o", PARAMS), text, "default:abc")
    assert idx.nearest(mini, text) is None
    assert idx.nearest(warm, text) is None
    match = idx.nearest(scope_key("openai", "gpt-4o", PARAMS), text)
    assert match is not None
    assert match.key == "default:abc"
    assert match.similarity == pytest.approx(1.0)


# -- the index ------------------------------------------------------------------------------


def test_threshold_decides_the_hit() -> None:
    table = {"q": (1.0, 0.0), "stored": at_cosine(0.96)}
    strict, loose = index(table, threshold=0.97), index(table, threshold=0.95)
    for idx in (strict, loose):
        idx.add("s", "stored", "k")
    assert strict.nearest("s", "q") is None
    match = loose.nearest("s", "q")
    assert match is not None
    assert match.similarity == pytest.approx(0.96, abs=1e-6)


def test_a_similarity_equal_to_the_threshold_is_a_hit() -> None:
    table = {"q": (1.0, 0.0), "stored": at_cosine(0.9)}
    idx = index(table, threshold=0.9)
    idx.add("s", "stored", "k")
    assert idx.nearest("s", "q") is not None


def test_identical_text_hits_at_threshold_one() -> None:
    idx = SemanticIndex(HashingEmbedder(), threshold=1.0)
    idx.add("s", "user: Explain the CAP theorem.", "k")
    assert idx.nearest("s", "user: explain the  CAP theorem") is not None
    assert idx.nearest("s", "user: Explain the PACELC theorem.") is None


def test_nearest_picks_the_most_similar() -> None:
    table = {"q": (1.0, 0.0), "a": at_cosine(0.96), "b": at_cosine(0.99),
             "c": at_cosine(0.97), "far": (0.0, 1.0)}
    idx = index(table)
    for text in ("a", "b", "c", "far"):
        idx.add("s", text, f"key-{text}")
    match = idx.nearest("s", "q")
    assert match is not None
    assert (match.key, round(match.similarity, 4)) == ("key-b", 0.99)


def test_vectors_are_normalised_and_can_be_passed_in() -> None:
    embedder = TableEmbedder({"q": (3.0, 0.0), "stored": (2.0, 2.0)})  # cosine 0.7071
    idx = SemanticIndex(embedder, threshold=0.7)
    vector = idx.embed("q")
    assert np.linalg.norm(vector) == pytest.approx(1.0)
    idx.add("s", "stored", "k")
    calls = embedder.calls
    match = idx.nearest("s", "q", vector=vector)
    assert match is not None
    assert match.similarity == pytest.approx(math.sqrt(0.5), abs=1e-6)
    assert embedder.calls == calls  # the given vector was not embedded again


def test_each_scope_keeps_its_newest_entries() -> None:
    table = {f"t{i}": np.eye(40)[i] for i in range(40)}
    idx = index(table, threshold=0.99, max_entries_per_scope=20)
    for i in range(25):  # grows past the initial rows, then wraps around
        idx.add("s", f"t{i}", f"k{i}")
    assert len(idx) == 20
    assert all(idx.nearest("s", f"t{i}") is None for i in range(5))
    assert [m.key for i in range(5, 25) if (m := idx.nearest("s", f"t{i}"))] == \
        [f"k{i}" for i in range(5, 25)]


def test_re_adding_a_key_moves_it_to_the_back_and_discard_forgets_it() -> None:
    table = {f"t{i}": np.eye(4)[i] for i in range(4)}
    idx = index(table, threshold=0.99, max_entries_per_scope=3)
    for i in range(3):
        idx.add("s", f"t{i}", f"k{i}")
    idx.add("s", "t0", "k0")  # k0 is now the newest
    idx.add("s", "t3", "k3")  # evicts k1, the oldest
    assert len(idx) == 3
    assert idx.nearest("s", "t1") is None
    assert idx.nearest("s", "t0") is not None
    assert idx.discard("s", "k0")
    assert not idx.discard("s", "k0")
    assert idx.nearest("s", "t0") is None
    assert len(idx) == 2


@pytest.mark.parametrize("seed", range(10))
def test_trimming_matches_a_fifo_of_live_entries(seed: int) -> None:
    """Random adds, re-adds and discards against a reference list, oldest first."""
    rnd = random.Random(seed)
    limit = rnd.randint(1, 20)
    idx = index({str(i): np.eye(30)[i] for i in range(30)}, threshold=0.99,
                max_entries_per_scope=limit)
    live: list[str] = []
    for _ in range(200):
        text, action = str(rnd.randrange(30)), rnd.random()
        if action < 0.7:
            idx.add("s", text, f"k{text}")
            live = [key for key in live if key != f"k{text}"] + [f"k{text}"]
            del live[:-limit]  # the newest ``limit`` stay
        elif action < 0.85:
            assert idx.discard("s", f"k{text}") == (f"k{text}" in live)
            live = [key for key in live if key != f"k{text}"]
        else:
            match = idx.nearest("s", text)
            assert (match.key if match else None) == (f"k{text}" if f"k{text}" in live
                                                       else None)
        assert len(idx) == len(live)


def test_the_least_recently_used_scope_is_dropped() -> None:
    idx = index({"t": (1.0, 0.0)}, max_scopes=2)
    idx.add("a", "t", "ka")
    idx.add("b", "t", "kb")
    assert idx.nearest("a", "t") is not None  # a is now more recent than b
    idx.add("c", "t", "kc")
    assert idx.nearest("b", "t") is None
    assert idx.nearest("a", "t") is not None


def test_bad_settings_and_a_changed_embedder_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        index({}, threshold=0.0)
    with pytest.raises(ValueError, match="max_entries_per_scope"):
        index({}, max_entries_per_scope=0)
    idx = index({"two": (1.0, 0.0), "three": (1.0, 0.0, 0.0)})
    idx.add("s", "two", "k")
    with pytest.raises(ValueError, match="dimensions"):
        idx.nearest("s", "three")


def test_threads_add_and_look_up_at_once() -> None:
    idx = SemanticIndex(HashingEmbedder(dim=256), max_entries_per_scope=100)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(40):  # two workers share a scope: it grows 8 -> 100 rows meanwhile
                text = f"user: request {i} from worker {worker}"
                idx.add(f"scope-{worker % 2}", text, f"k-{worker}-{i}")
                match = idx.nearest(f"scope-{worker % 2}", text)
                assert match is not None
                assert match.key == f"k-{worker}-{i}"
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(idx) == 4 * 40


# -- calibration ----------------------------------------------------------------------------


def hand_calibration() -> Calibration:
    """Four pairs at cosines 1.0 (same), 0.9 (different), 0.8 (same), 0.6 (different)."""
    sims = {"p1": 1.0, "n1": 0.9, "p2": 0.8, "n2": 0.6}
    table: dict[str, Sequence[float]] = {}
    for name, sim in sims.items():
        table[f"{name}-a"], table[f"{name}-b"] = (1.0, 0.0), at_cosine(sim)
    pairs = [(f"{name}-a", f"{name}-b", name.startswith("p")) for name in sims]
    return calibrate(pairs, TableEmbedder(table), thresholds=[0.95, 0.5, 0.7, 0.85])


def test_calibrate_against_hand_computed_values() -> None:
    result = hand_calibration()
    assert result.scores["similarity"].round(6).tolist() == [1.0, 0.9, 0.8, 0.6]
    curve = result.curve.set_index("threshold")
    assert curve.index.tolist() == [0.5, 0.7, 0.85, 0.95]  # sorted
    assert curve["predicted_positives"].tolist() == [4, 3, 2, 1]
    assert curve["true_positives"].tolist() == [2, 2, 1, 1]
    assert curve["false_positives"].tolist() == [2, 1, 1, 0]
    assert curve["precision"].tolist() == pytest.approx([0.5, 2 / 3, 0.5, 1.0])
    assert curve["recall"].tolist() == pytest.approx([1.0, 1.0, 0.5, 0.5])


def test_recommend_maximises_recall_at_the_target_precision() -> None:
    result = hand_calibration()
    assert result.recommend(0.99) == 0.95
    assert result.recommend(0.6) == 0.7  # 0.95 also qualifies, with half the recall
    assert result.recommend(0.5) == 0.5  # recall 1.0 at 0.5 and 0.7: the lowest
    with pytest.raises(ValueError, match="target_precision"):
        result.recommend(1.5)


def test_recommend_is_none_when_the_target_is_unreachable() -> None:
    table = {"a": (1.0, 0.0), "same": at_cosine(0.7), "b": (1.0, 0.0), "other": (1.0, 0.0)}
    result = calibrate([("a", "same", True), ("b", "other", False)], TableEmbedder(table),
                       thresholds=[0.5, 0.9, 1.0])
    assert result.curve["precision"].tolist()[1:] == [0.0, 0.0]
    assert result.recommend(0.99) is None
    assert result.recommend(0.5) == 0.5
    empty = calibrate([("a", "same", True)], TableEmbedder(table), thresholds=[0.9])
    assert math.isnan(empty.curve["precision"].iloc[0])  # no predicted positive
    assert empty.recommend(0.5) is None


def test_chart_plots_precision_and_recall() -> None:
    spec = hand_calibration().chart().to_dict()
    assert spec["mark"]["type"] == "line"
    assert spec["encoding"]["x"]["field"] == "threshold"
    values = next(iter(spec["datasets"].values()))
    assert {row["metric"] for row in values} == {"precision", "recall"}


def test_calibrate_refuses_no_pairs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        calibrate([], HashingEmbedder())


# -- embedder and labelled set --------------------------------------------------------------


def test_hashing_embedder_is_an_embedder_of_unit_rows() -> None:
    embedder: Embedder = HashingEmbedder(dim=512)
    rows = embedder(["Write a SQL query.", "WRITE a  sql query", ""])
    assert rows.shape == (3, 512)
    assert np.linalg.norm(rows[:2], axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)
    assert float(rows[0] @ rows[1]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="dim"):
        HashingEmbedder(dim=0)


def test_the_shipped_labelled_set_loads_with_both_classes() -> None:
    pairs = load_pairs(PAIRS)
    assert len(pairs) >= 120
    labels = [same for _, _, same in pairs]
    assert min(labels.count(True), labels.count(False)) >= 0.4 * len(pairs)
    assert all(a.strip() and b.strip() and a != b for a, b, _ in pairs)
    assert len({(a, b) for a, b, _ in pairs}) == len(pairs)


def test_load_pairs_refuses_a_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"a": "x", "b": "y", "same": true}\n\n{"a": "x", "b": "y", "same": 1}\n')
    with pytest.raises(ValueError, match=":3:"):
        load_pairs(path)
