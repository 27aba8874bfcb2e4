"""Goertzel detection and the frame player."""

from __future__ import annotations

import pytest

from media.g711 import ulaw_encode
from media.goertzel import dominant_frequency_present, goertzel_power, mean_square, relative_power
from media.player import Player
from media.prompts import Prompt, silence, tone


def test_goertzel_pure_and_dual_tone() -> None:
    pure = tone((440.0,), 200, amplitude=10000).pcm
    assert goertzel_power(pure, 440.0) == pytest.approx(10000**2 / 2, rel=0.01)
    assert dominant_frequency_present(pure, 440.0, 0.9)
    assert not dominant_frequency_present(pure, 350.0, 0.05)
    dual = tone((350.0, 440.0), 200).pcm
    assert 0.45 < relative_power(dual, 350.0) < 0.55
    assert 0.45 < relative_power(dual, 440.0) < 0.55
    assert not dominant_frequency_present(dual, 1000.0, 0.05)
    assert relative_power(silence(100).pcm, 440.0) == 0.0
    assert mean_square(b"") == 0.0 and goertzel_power(b"", 440.0) == 0.0


def frames(n: int, fill: int) -> Prompt:
    return Prompt([bytes([fill, 0]) * 160] * n)


def test_player_plays_prompts_in_order_then_none() -> None:
    a, b = frames(2, 1), frames(1, 2)
    player = Player([a, b])
    got = [player.next_payload("PCMU") for _ in range(4)]
    assert got == [*a.payloads("PCMU"), *b.payloads("PCMU"), None]
    assert player.finished and player.frames_played == 3
    assert player.next_payload("PCMU") is None


def test_player_payloads_are_the_cached_objects() -> None:
    prompt = frames(2, 3)
    first = prompt.payloads("PCMA")
    assert prompt.payloads("PCMA") is first  # encoded once
    player = Player(prompt)
    assert player.next_payload("PCMA") is first[0]


def test_player_loop_and_stop() -> None:
    a = frames(2, 5)
    player = Player(a, loop=True)
    got = [player.next_frame() for _ in range(5)]
    assert got == [a.frames[0], a.frames[1]] * 2 + [a.frames[0]]
    player.stop()
    assert player.finished and player.next_frame() is None


def test_player_skips_empty_prompts_and_empty_loop_terminates() -> None:
    a = frames(1, 7)
    player = Player([Prompt([]), a, Prompt([])])
    assert player.next_payload("PCMU") == ulaw_encode(a.frames[0])
    assert player.next_payload("PCMU") is None
    looped_empty = Player([Prompt([])], loop=True)
    assert looped_empty.finished and looped_empty.next_payload("PCMU") is None
