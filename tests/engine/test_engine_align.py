"""Words onto the 80 ms step clock."""

from __future__ import annotations

from bridge.engine.align import HORIZON_ALL, StepAligner, TimedWord
from bridge.engine.protocol import StepClock

CLOCK = StepClock(480)


def test_end_anchor_puts_a_word_on_the_first_step_past_its_end_plus_delay() -> None:
    aligner = StepAligner(delay_samples=CLOCK.delay_samples, anchor="end")
    aligner.add_words([TimedWord(" hi", 16000, 20000)])
    texts = [aligner.text_for_step(CLOCK.step_end_samples(k)) for k in range(20)]
    assert texts.index(" hi") == 15  # 9000 + 1280 * 15 = 28200 >= 20000 + 7680


def test_start_anchor_never_precedes_the_words_end() -> None:
    aligner = StepAligner(delay_samples=7680, anchor="start")
    aligner.add_words([TimedWord(" a", 16000, 18000), TimedWord(" long", 18000, 30000)])
    assert aligner.text_for_step(16000 + 7680) == " a"
    assert aligner.text_for_step(18000 + 7680) == ""  # " long" needs its whole audio
    assert aligner.text_for_step(30000) == " long"


def test_anchors_stay_in_order_and_late_words_go_out_at_once() -> None:
    aligner = StepAligner(delay_samples=0, anchor="end")
    aligner.add_words([TimedWord(" one", 0, 5000), TimedWord(" two", 0, 4000)])
    assert aligner.text_for_step(4500) == ""  # " two" may not overtake " one"
    assert aligner.text_for_step(5000) == " one two"
    aligner.add_words([TimedWord(" late", 0, 1000)])  # committed after its step went out
    assert aligner.text_for_step(6000) == " late"
    assert aligner.flush() == ""


def test_steps_wait_for_the_horizon() -> None:
    aligner = StepAligner(delay_samples=7680)
    assert aligner.may_send(9000, horizon_samples=1320)
    assert not aligner.may_send(9000, horizon_samples=1319)
    assert aligner.may_send(10**9, horizon_samples=HORIZON_ALL)
