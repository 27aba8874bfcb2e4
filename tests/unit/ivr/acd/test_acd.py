from __future__ import annotations

import pytest

from ivr.acd import (
    Acd,
    AgentCommand,
    AgentEvent,
    AgentState,
    AgentStateChanged,
    AnnouncePosition,
    CancelOffer,
    IllegalTransition,
    OfferCall,
    Overflow,
    PlayPeriodicAnnouncement,
    UnknownCall,
    UnknownName,
)

from .helpers import agent, of_type, online, settings


def _offers(acd: Acd) -> list[tuple[str, str, float]]:
    return [(o.call_id, o.agent_id, o.deadline) for o in of_type(acd.drain(), OfferCall)]


def _finish(acd: Acd, call_id: str, agent_id: str, *, answered: float, ended: float) -> None:
    assert acd.offer_accepted(call_id, agent_id, answered)
    acd.call_bridged(call_id, answered)
    acd.call_ended(call_id, ended)


# --------------------------------------------------------------------------------------------
# strategies


def test_longest_idle_order_across_two_agents() -> None:
    acd = Acd(
        settings(
            [agent("a1", "billing"), agent("a2", "billing")],
            [{"name": "billing", "wrap_up_seconds": 5}],
        )
    )
    online(acd, "a1", now=0)
    online(acd, "a2", now=5)
    acd.drain()

    acd.enqueue("c1", "billing", now=10)
    assert _offers(acd) == [("c1", "a1", 30.0)]  # a1 idle since 0, a2 since 5
    _finish(acd, "c1", "a1", answered=12, ended=30)
    assert acd.agent("a1").state is AgentState.WRAP_UP
    assert acd.get_timer() == 35
    acd.handle_timer(35)
    assert acd.agent("a1").idle_since == 35

    acd.enqueue("c2", "billing", now=40)
    assert _offers(acd) == [("c2", "a2", 60.0)]  # now a2 (idle since 5) is idle longer
    _finish(acd, "c2", "a2", answered=41, ended=50)
    acd.handle_timer(55)
    acd.enqueue("c3", "billing", now=60)
    assert _offers(acd) == [("c3", "a1", 80.0)]  # a1 since 35, a2 since 55


def test_round_robin_rotates_in_member_order_regardless_of_idle_time() -> None:
    acd = Acd(
        settings(
            [agent(a, "sales") for a in ("a", "b", "c")],
            [{"name": "sales", "strategy": "round_robin"}],
        )
    )
    # Reverse login order: longest idle would pick c first.
    online(acd, "c", now=0)
    online(acd, "b", now=1)
    online(acd, "a", now=2)
    acd.drain()
    chosen = []
    for n in range(5):
        call = f"c{n}"
        acd.enqueue(call, "sales", now=10 + n)
        (offer,) = of_type(acd.drain(), OfferCall)
        chosen.append(offer.agent_id)
        _finish(acd, call, offer.agent_id, answered=10 + n, ended=10.5 + n)
    assert chosen == ["a", "b", "c", "a", "b"]


def test_ring_all_first_accept_wins_and_the_others_are_cancelled() -> None:
    acd = Acd(
        settings(
            [agent(a, "support") for a in ("a", "b", "c")],
            [{"name": "support", "strategy": "ring_all"}],
        )
    )
    online(acd, "a", "b", "c", now=0)
    acd.drain()
    acd.enqueue("c1", "support", now=1)
    offers = of_type(acd.drain(), OfferCall)
    assert sorted(o.agent_id for o in offers) == ["a", "b", "c"]
    assert all(o.ring_all and o.deadline == 21 for o in offers)

    assert acd.offer_accepted("c1", "b", 4)
    commands = acd.drain()
    cancels = of_type(commands, CancelOffer)
    assert [(c.agent_id, c.reason) for c in cancels] == [
        ("a", "answered_elsewhere"),
        ("c", "answered_elsewhere"),
    ]
    assert {c.offer_id for c in cancels} == {o.offer_id for o in offers if o.agent_id != "b"}
    assert acd.agent("b").state is AgentState.ON_CALL
    assert acd.agent("a").state is AgentState.AVAILABLE
    assert acd.agent("a").missed_in_a_row == 0  # losing a ring-all is not a miss
    # A 200 OK from a crossing our CANCEL: stale, the engine hangs that leg up.
    assert not acd.offer_accepted("c1", "a", 4.1)


def test_lower_level_agents_are_backups() -> None:
    acd = Acd(
        settings(
            [agent("backup", {"queue": "q", "level": 2}), agent("primary", "q")],
            [{"name": "q"}],
        )
    )
    online(acd, "backup", now=0)  # idle longer, but a backup
    online(acd, "primary", now=5)
    acd.drain()
    acd.enqueue("c1", "q", now=10)
    assert _offers(acd) == [("c1", "primary", 30.0)]
    acd.enqueue("c2", "q", now=11)
    assert _offers(acd) == [("c2", "backup", 31.0)]


# --------------------------------------------------------------------------------------------
# priority, multi-queue, abandon


def test_priority_caller_is_served_first() -> None:
    acd = Acd(
        settings(
            [agent("a1", "billing")],
            [
                {
                    "name": "billing",
                    "priority_rules": [
                        {"when": "profile.repeat_customer", "priority": 10},
                        {"when": ["vip"], "priority": 50},
                    ],
                }
            ],
        )
    )
    acd.registration_changed("a1", 1, 0)
    acd.log_in("a1", 0, ready=False)
    assert acd.enqueue("plain", "billing", now=1) == 1
    assert acd.enqueue("repeat", "billing", now=2, profile={"repeat_customer": True}) == 1
    assert acd.enqueue("vip", "billing", now=3, variables={"vip": "yes"}) == 1
    assert acd.enqueue("not-vip", "billing", now=4, variables={"vip": "false"}) == 4
    assert acd.waiting_calls("billing") == ["vip", "repeat", "plain", "not-vip"]
    acd.drain()
    acd.agent_command("a1", AgentCommand.READY, 10)
    (offer,) = of_type(acd.drain(), OfferCall)
    assert (offer.call_id, offer.priority) == ("vip", 50)


def test_agent_in_several_queues_gets_the_oldest_call() -> None:
    acd = Acd(settings([agent("x", "q1", "q2")], [{"name": "q1"}, {"name": "q2"}]))
    acd.registration_changed("x", 1, 0)
    acd.log_in("x", 0, ready=False)
    acd.enqueue("old", "q2", now=1)
    acd.enqueue("new", "q1", now=5)
    acd.drain()
    acd.agent_command("x", AgentCommand.READY, 10)
    assert _offers(acd) == [("old", "x", 30.0)]


def test_abandon_removes_the_caller_and_withdraws_its_offer() -> None:
    acd = Acd(settings([agent("a1", "q")], [{"name": "q"}]))
    acd.enqueue("c1", "q", now=0)
    acd.enqueue("c2", "q", now=1)
    acd.enqueue("c3", "q", now=2)
    acd.abandon("c2", 3)
    assert acd.waiting_calls("q") == ["c1", "c3"]
    assert acd.position("c3") == 2
    with pytest.raises(UnknownCall):
        acd.position("c2")

    online(acd, "a1", now=4)
    assert _offers(acd) == [("c1", "a1", 24.0)]
    acd.abandon("c1", 6)
    commands = acd.drain()
    assert [(c.agent_id, c.reason) for c in of_type(commands, CancelOffer)] == [("a1", "abandoned")]
    # a1 is free again and gets the next caller at once.
    assert [(o.call_id, o.agent_id) for o in of_type(commands, OfferCall)] == [("c3", "a1")]
    (row,) = acd.queue_snapshot(6)
    assert row["abandoned"] == 2


# --------------------------------------------------------------------------------------------
# offers: timeout, re-notify, missed -> not ready


def test_offer_timeout_moves_to_the_next_agent_then_rotates() -> None:
    acd = Acd(
        settings(
            [agent("a", "q"), agent("b", "q")],
            [{"name": "q", "offer": {"timeout_seconds": 15}}],
        )
    )
    online(acd, "a", now=0)
    online(acd, "b", now=1)
    acd.drain()
    acd.enqueue("c1", "q", now=10)
    assert _offers(acd) == [("c1", "a", 25.0)]
    assert acd.get_timer() == 25
    acd.handle_timer(24.9)
    assert acd.drain() == []
    acd.handle_timer(25)
    commands = acd.drain()
    assert [(c.agent_id, c.reason) for c in of_type(commands, CancelOffer)] == [("a", "timeout")]
    assert [
        (o.call_id, o.agent_id, o.deadline, o.attempt) for o in of_type(commands, OfferCall)
    ] == [("c1", "b", 40.0, 2)]
    assert acd.get_timer() == 40
    acd.handle_timer(40)
    # Everyone has missed it: the rotation starts again with a, without a pause.
    assert _offers(acd) == [("c1", "a", 55.0)]


def test_renotify_every_n_seconds_from_the_start_of_the_missed_offer() -> None:
    acd = Acd(
        settings(
            [agent("a", "q"), agent("b", "q")],
            [
                {
                    "name": "q",
                    "offer": {
                        "timeout_seconds": 15,
                        "renotify_every_seconds": 40,
                        "max_missed_offers_before_not_ready": 0,
                    },
                }
            ],
        )
    )
    online(acd, "a", now=0)
    online(acd, "b", now=1)
    acd.drain()
    acd.enqueue("c1", "q", now=0)
    assert _offers(acd) == [("c1", "a", 15.0)]
    acd.handle_timer(15)
    assert _offers(acd) == [("c1", "b", 30.0)]
    acd.handle_timer(30)
    assert _offers(acd) == []  # a pauses until 0 + 40, b until 15 + 40
    assert acd.get_timer() == 40
    acd.handle_timer(40)
    assert _offers(acd) == [("c1", "a", 55.0)]
    acd.handle_timer(55)
    assert _offers(acd) == [("c1", "b", 70.0)]  # b's pause ended at 55 too
    assert acd.get_timer() == 70


def test_renotify_single_agent_exact_deadlines() -> None:
    acd = Acd(
        settings(
            [agent("a", "q")],
            [{"name": "q", "offer": {"timeout_seconds": 20, "renotify_every_seconds": 30}}],
        )
    )
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=100)
    acd.drain()
    timeline = []
    for _ in range(3):
        deadline = acd.get_timer()
        assert deadline is not None
        acd.handle_timer(deadline)
        timeline.append((deadline, _offers(acd)))
    assert timeline == [
        (120.0, []),
        (130.0, [("c1", "a", 150.0)]),
        (150.0, []),
    ]
    assert acd.get_timer() == 160.0


def test_n_missed_offers_make_the_agent_not_ready() -> None:
    acd = Acd(
        settings(
            [agent("a", "q")],
            [
                {
                    "name": "q",
                    "offer": {"timeout_seconds": 10, "max_missed_offers_before_not_ready": 2},
                }
            ],
        )
    )
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=0)
    acd.drain()
    acd.handle_timer(10)
    assert _offers(acd) == [("c1", "a", 20.0)]
    acd.handle_timer(20)
    changes = of_type(acd.drain(), AgentStateChanged)
    assert [(c.old, c.new, c.event) for c in changes] == [
        (AgentState.OFFERED, AgentState.NOT_READY, AgentEvent.MISS_LIMIT)
    ]
    assert acd.get_timer() is None  # nobody to offer to
    assert acd.waiting_calls("q") == ["c1"]


def test_declined_offer_counts_as_missed_and_moves_on() -> None:
    acd = Acd(settings([agent("a", "q"), agent("b", "q")], [{"name": "q"}]))
    online(acd, "a", now=0)
    online(acd, "b", now=1)
    acd.enqueue("c1", "q", now=2)
    acd.drain()
    acd.offer_failed("c1", "a", 3)  # 486/603 from a's phone: no CANCEL needed
    commands = acd.drain()
    assert of_type(commands, CancelOffer) == []
    assert [o.agent_id for o in of_type(commands, OfferCall)] == ["b"]
    assert acd.agent("a").missed_in_a_row == 1


def test_logging_out_or_not_ready_while_ringing_withdraws_without_a_miss() -> None:
    acd = Acd(settings([agent("a", "q"), agent("b", "q")], [{"name": "q"}]))
    online(acd, "a", now=0)
    online(acd, "b", now=1)
    acd.enqueue("c1", "q", now=2)
    acd.drain()
    acd.agent_command("a", AgentCommand.NOT_READY, 3)
    commands = acd.drain()
    assert [(c.agent_id, c.reason) for c in of_type(commands, CancelOffer)] == [
        ("a", "agent_not_ready")
    ]
    assert [o.agent_id for o in of_type(commands, OfferCall)] == ["b"]
    assert acd.agent("a").missed_in_a_row == 0


def test_registration_lost_withdraws_the_offer_and_keeps_the_agent_logged_in() -> None:
    acd = Acd(settings([agent("a", "q"), agent("b", "q")], [{"name": "q"}]))
    online(acd, "a", now=0)
    online(acd, "b", now=1)
    acd.enqueue("c1", "q", now=2)
    acd.drain()
    acd.registration_changed("a", 0, 3)
    commands = acd.drain()
    assert [(c.agent_id, c.reason) for c in of_type(commands, CancelOffer)] == [
        ("a", "registration_lost")
    ]
    assert [o.agent_id for o in of_type(commands, OfferCall)] == ["b"]
    assert acd.agent("a").state is AgentState.AVAILABLE
    assert acd.agent("a").idle_since == 0  # idle time kept across a phone reboot
    acd.enqueue("c2", "q", now=4)
    assert _offers(acd) == []  # no contact: not offerable
    acd.registration_changed("a", 1, 5)
    assert _offers(acd) == [("c2", "a", 25.0)]


# --------------------------------------------------------------------------------------------
# wrap-up, feature codes, illegal commands


def test_wrap_up_timer_then_available_and_ready_ends_it_early() -> None:
    acd = Acd(settings([agent("a", "q")], [{"name": "q", "wrap_up_seconds": 10}]))
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=1)
    _finish(acd, "c1", "a", answered=2, ended=100)
    assert acd.agent("a").state is AgentState.WRAP_UP
    assert acd.get_timer() == 110
    acd.handle_timer(110)
    assert acd.agent("a").state is AgentState.AVAILABLE

    acd.enqueue("c2", "q", now=120)
    _finish(acd, "c2", "a", answered=121, ended=130)
    acd.agent_command("a", AgentCommand.READY, 133)
    assert acd.agent("a").state is AgentState.AVAILABLE
    assert acd.get_timer() is None


def test_no_wrap_up_is_available_at_once() -> None:
    acd = Acd(settings([agent("a", "q")], [{"name": "q"}]))
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=1)
    acd.enqueue("c2", "q", now=1)
    acd.drain()
    _finish(acd, "c1", "a", answered=2, ended=10)
    changes = of_type(acd.drain(), AgentStateChanged)
    assert [c.new for c in changes][-3:] == [
        AgentState.WRAP_UP,
        AgentState.AVAILABLE,
        AgentState.OFFERED,
    ]


def test_feature_codes_map_to_agent_commands() -> None:
    acd = Acd(settings([agent("a", "q")], [{"name": "q"}], feature_codes={"not_ready": "*99"}))
    acd.registration_changed("a", 1, 0)
    assert acd.feature_code("a", "*41", 1) is AgentCommand.LOG_IN
    assert acd.feature_code("a", "*99", 2) is AgentCommand.NOT_READY
    assert acd.agent("a").state is AgentState.NOT_READY
    assert acd.feature_code("a", "5551234", 3) is None


def test_illegal_agent_command_raises_and_changes_nothing() -> None:
    acd = Acd(settings([agent("a", "q")], [{"name": "q"}]))
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=1)
    acd.offer_accepted("c1", "a", 2)
    acd.drain()
    with pytest.raises(IllegalTransition):
        acd.agent_command("a", AgentCommand.LOG_OUT, 3)
    assert acd.agent("a").state is AgentState.ON_CALL
    assert acd.drain() == []
    with pytest.raises(UnknownName):
        acd.agent_command("nobody", AgentCommand.LOG_IN, 3)
    with pytest.raises(UnknownName):
        acd.enqueue("c9", "nowhere", now=3)


# --------------------------------------------------------------------------------------------
# overflow, announcements, estimated wait


def test_max_wait_overflows_and_cancels_a_ringing_offer() -> None:
    acd = Acd(
        settings(
            [agent("a", "q")],
            [{"name": "q", "max_wait_seconds": 60, "overflow": "voicemail:billing"}],
        )
    )
    acd.enqueue("c1", "q", now=0)
    online(acd, "a", now=45)  # offer rings 45 -> 65, past the max wait
    acd.drain()
    assert acd.get_timer() == 60
    acd.handle_timer(60)
    commands = acd.drain()
    assert [(c.agent_id, c.reason) for c in of_type(commands, CancelOffer)] == [("a", "overflow")]
    (overflow,) = of_type(commands, Overflow)
    assert (overflow.call_id, overflow.kind, overflow.name, overflow.reason) == (
        "c1",
        "voicemail",
        "billing",
        "max_wait",
    )
    assert acd.waiting_calls("q") == []
    assert acd.agent("a").state is AgentState.AVAILABLE


def test_max_queue_size_overflows_at_enqueue() -> None:
    acd = Acd(
        settings(
            [],
            [{"name": "q", "max_queue_size": 2, "overflow": "queue:backup"}, {"name": "backup"}],
        )
    )
    assert acd.enqueue("c1", "q", now=0) == 1
    assert acd.enqueue("c2", "q", now=1) == 2
    acd.drain()
    assert acd.enqueue("c3", "q", now=2) is None
    (overflow,) = of_type(acd.drain(), Overflow)
    assert (overflow.call_id, overflow.target, overflow.reason) == (
        "c3",
        "queue:backup",
        "queue_full",
    )
    # The engine resolves a queue target by enqueueing again.
    assert acd.enqueue("c3", "backup", now=2) == 1
    (row,) = [r for r in acd.queue_snapshot(2) if r["queue"] == "q"]
    assert row["overflowed"] == 1 and row["callers_waiting"] == 2


def test_estimated_wait_uses_average_handle_time_over_staffed_agents() -> None:
    acd = Acd(
        settings(
            [agent("a", "q"), agent("b", "q"), agent("c", "q")],
            [
                {
                    "name": "q",
                    "wrap_up_seconds": 10,
                    "announce_position": True,
                    "announce_estimated_wait": True,
                    "position_every_seconds": 45,
                }
            ],
        )
    )
    online(acd, "a", "b", now=0)
    assert acd.estimated_wait("q", 1) is None  # no handled call yet: no made-up figure
    acd.enqueue("c1", "q", now=0)
    first = of_type(acd.drain(), AnnouncePosition)
    assert [(p.position, p.estimated_wait_seconds) for p in first] == [(1, None)]
    _finish(acd, "c1", "a", answered=10, ended=70)
    acd.handle_timer(80)  # wrap-up ends: handle time 10 -> 80 = 70 s
    acd.enqueue("c2", "q", now=90)
    _finish(acd, "c2", "b", answered=90, ended=170)
    acd.handle_timer(180)  # 90 s
    # average handle 80 s, 2 staffed agents (c is logged out)
    assert acd.estimated_wait("q", 3) == pytest.approx(3 * 80 / 2)

    acd.agent_command("a", AgentCommand.NOT_READY, 190)
    acd.agent_command("b", AgentCommand.NOT_READY, 190)
    acd.drain()
    assert acd.estimated_wait("q", 1) is None  # nobody staffed
    acd.agent_command("b", AgentCommand.READY, 191)
    acd.agent_command("b", AgentCommand.NOT_READY, 191)
    online(acd, "c", now=195)
    acd.registration_changed("c", 0, 196)  # staffed only while registered
    acd.agent_command("a", AgentCommand.READY, 197)
    acd.enqueue("busy", "q", now=200)  # a takes it
    acd.enqueue("w1", "q", now=201)
    acd.enqueue("w2", "q", now=202)
    commands = acd.drain()
    announced = [
        (p.call_id, p.position, p.estimated_wait_seconds)
        for p in of_type(commands, AnnouncePosition)
    ]
    # One staffed agent (b is not ready, c has no contact); a ringing caller keeps its place.
    assert announced == [("busy", 1, 80.0), ("w1", 2, 160.0), ("w2", 3, 240.0)]
    assert acd.get_timer() == 220  # a's offer deadline
    acd.handle_timer(220)
    acd.drain()
    assert acd.get_timer() == 240  # a's second offer; announcements at 245, 246, 247
    acd.handle_timer(240)
    acd.drain()
    acd.handle_timer(246)
    repeats = of_type(acd.drain(), AnnouncePosition)
    assert [p.call_id for p in repeats] == ["busy", "w1"]


def test_periodic_announcement_every_n_seconds() -> None:
    acd = Acd(
        settings(
            [],
            [
                {
                    "name": "q",
                    "hold_audio": {"file": "moh/jazz.mp3"},
                    "periodic_announcement": {"every_seconds": 30, "audio": "Thanks for waiting"},
                }
            ],
        )
    )
    acd.enqueue("c1", "q", now=5)
    assert acd.get_timer() == 35
    acd.handle_timer(35)
    (played,) = of_type(acd.drain(), PlayPeriodicAnnouncement)
    assert played.audio.tts == "Thanks for waiting"
    assert acd.get_timer() == 65
    acd.handle_timer(130)  # a late engine skips missed ticks instead of bursting them
    assert len(of_type(acd.drain(), PlayPeriodicAnnouncement)) == 1
    assert acd.get_timer() == 155


# --------------------------------------------------------------------------------------------
# bridging, metrics, transfer


def test_wait_includes_whisper_and_countdown() -> None:
    acd = Acd(settings([agent("a", "q")], [{"name": "q"}]))
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=10)
    assert acd.offer_accepted("c1", "a", 14)  # whisper and countdown play 14 -> 21
    (row,) = acd.calls_snapshot(18)
    assert (row["status"], row["wait_seconds"]) == ("whisper", 8)
    acd.call_bridged("c1", 21)
    (queue,) = acd.queue_snapshot(30)
    assert queue["answered"] == 1 and queue["average_wait_seconds"] == 11


def test_caller_hanging_up_during_the_whisper_is_abandoned() -> None:
    acd = Acd(settings([agent("a", "q")], [{"name": "q", "wrap_up_seconds": 5}]))
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=0)
    acd.offer_accepted("c1", "a", 3)
    acd.call_ended("c1", 5)
    (queue,) = acd.queue_snapshot(5)
    assert (queue["answered"], queue["abandoned"]) == (0, 1)
    assert acd.agent("a").state is AgentState.WRAP_UP


def test_blind_transfer_reoffers_with_the_same_reserved_data() -> None:
    acd = Acd(settings([agent("a", "q1"), agent("b", "q2")], [{"name": "q1"}, {"name": "q2"}]))
    online(acd, "a", "b", now=0)
    acd.enqueue(
        "c1",
        "q1",
        now=1,
        menu_path=("main", "billing"),
        language="fr",
        profile={"verified_customer": True},
        caller_number="+15551230000",
    )
    assert acd.offer_accepted("c1", "a", 2)
    acd.call_bridged("c1", 3)
    acd.drain()
    assert acd.transfer_to_queue("c1", "q2", 20) == 1
    (offer,) = of_type(acd.drain(), OfferCall)
    assert offer.agent_id == "b"
    assert offer.profile == {"verified_customer": True}
    assert (offer.menu_path, offer.language, offer.caller_number) == (
        ("main", "billing"),
        "fr",
        "+15551230000",
    )
    (row,) = [r for r in acd.calls_snapshot(21) if r["call_id"] == "c1"]
    assert row["transfers"] == 1


def test_snapshots_show_queue_and_agent_state() -> None:
    acd = Acd(settings([agent("a", "q"), agent("b", "q")], [{"name": "q"}]))
    online(acd, "a", now=0)
    acd.enqueue("c1", "q", now=1)
    acd.enqueue("c2", "q", now=2)
    (queue,) = acd.queue_snapshot(10)
    assert queue["callers_waiting"] == 2
    assert queue["longest_wait_seconds"] == 9
    assert (queue["agents_logged_in"], queue["agents_available"]) == (1, 0)
    rows = {r["agent_id"]: r for r in acd.agents_snapshot(10)}
    assert rows["a"]["state"] == "offered" and rows["a"]["idle_seconds"] == 10
    assert rows["b"]["state"] == "logged_out"
    calls = acd.calls_snapshot(10)
    assert [(c["call_id"], c["status"], c["position"]) for c in calls] == [
        ("c1", "ringing", 1),
        ("c2", "waiting", 2),
    ]
