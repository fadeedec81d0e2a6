from __future__ import annotations

from bridge.webrtc.clock import PtsClock


def test_first_frame_anchors_and_contiguous_frames_follow() -> None:
    clock = PtsClock(max_jump_samples=48_000)
    assert clock.position(123_456, 0) == 0
    assert clock.position(123_456 + 960, 960) == 960


def test_lost_packets_leave_a_hole_the_leg_fills() -> None:
    clock = PtsClock(max_jump_samples=48_000)
    clock.position(1000, 0)
    assert clock.position(1000 + 3 * 960, 960) == 3 * 960


def test_large_jump_rebases() -> None:
    clock = PtsClock(max_jump_samples=48_000)
    clock.position(0, 0)
    assert clock.position(10 * 48_000, 960) == 960
    assert clock.position(10 * 48_000 + 960, 1920) == 1920


def test_no_pts_means_contiguous() -> None:
    assert PtsClock(max_jump_samples=1).position(None, 5) is None
