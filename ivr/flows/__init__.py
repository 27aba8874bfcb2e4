"""YAML IVR flows: the typed flow language, its loader/validator, the sans-IO interpreter,
reserved caller data and the simulator. See ``docs/flows.md``.

Runtime integration (the engine) needs only what is exported here.
"""

from __future__ import annotations

from .actions import (
    Action,
    Answer,
    CallAnswered,
    CallerHungUp,
    CancelTimer,
    DigitReceived,
    Event,
    FilePrompt,
    FlowWarning,
    Hangup,
    LanguageSet,
    MenuChosen,
    NodeEntered,
    PlayPrompt,
    PromptFinished,
    PromptItem,
    SilencePrompt,
    StartTimer,
    StopPrompt,
    TimerExpired,
    TonePrompt,
    TtsPrompt,
    VariableSet,
)
from .interpreter import CallContext, FlowSession, Outcome
from .loader import Flow, FlowSet, check_routes, load_flow_files, load_flow_set
from .model import NODE_TYPES, NodeSpec, Route, RoutesConfig, register_node
from .profile import CallerProfile, ProfileConfig, parse_profile
from .simulate import add_simulate_arguments, main_simulate, run_simulate, simulate

__all__ = [
    "NODE_TYPES",
    "Action",
    "Answer",
    "CallAnswered",
    "CallContext",
    "CallerHungUp",
    "CallerProfile",
    "CancelTimer",
    "DigitReceived",
    "Event",
    "FilePrompt",
    "Flow",
    "FlowSession",
    "FlowSet",
    "FlowWarning",
    "Hangup",
    "LanguageSet",
    "MenuChosen",
    "NodeEntered",
    "NodeSpec",
    "Outcome",
    "PlayPrompt",
    "ProfileConfig",
    "PromptFinished",
    "PromptItem",
    "Route",
    "RoutesConfig",
    "SilencePrompt",
    "StartTimer",
    "StopPrompt",
    "TimerExpired",
    "TonePrompt",
    "TtsPrompt",
    "VariableSet",
    "add_simulate_arguments",
    "check_routes",
    "load_flow_files",
    "load_flow_set",
    "main_simulate",
    "parse_profile",
    "register_node",
    "run_simulate",
    "simulate",
]
