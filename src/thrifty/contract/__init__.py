"""The ground floor: the call, its answer, the stage interface, usage and lever effects.

Nothing here imports any other part of Thrifty; everything else may import this.
"""

from thrifty.contract.call import Answer, Attempt, Call, Next, Stage, after_answer, compose
from thrifty.contract.effects import (
    AnsweredFromCache, Batched, BreakpointsAdded, Counted, Effect, ModelMoved, Unrequested,
)
from thrifty.contract.levers import LEVERS, LeverSaving
from thrifty.contract.usage import Usage

__all__ = [
    "LEVERS", "AnsweredFromCache", "Answer", "Attempt", "Batched", "BreakpointsAdded", "Call", "Counted", "Effect",
    "LeverSaving", "ModelMoved", "Next", "Stage", "Unrequested", "Usage", "after_answer", "compose",
]
