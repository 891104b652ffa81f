"""Stage 4: the request as it will be forwarded, and what dispatch needs besides the plan.

The operator's ``set:`` beats the session's settings, which beat what the client sent: a session
chooses only where the operator left a value open. (Dispatch writes the settings of rules that
match only through the target over these, see ``TargetRules``.)
"""

from __future__ import annotations

from dsl.evaluate import TargetRules

from .dispatch import request_settings
from .exchange import Exchange


def apply_overrides(ex: Exchange) -> None:
    """Set the planned model and the settings on ``ex.request``; fill ``governed`` and ``scopes``."""
    request, plan, session = ex.request, ex.plan, ex.session
    assert plan is not None and session is not None and ex.facts is not None
    request.model = ex.model
    if session.temperature is not None or session.params:
        for key in ("temperature", "top_p", "max_tokens"):
            value = session.temperature if key == "temperature" else session.params.get(key)
            if value is not None:
                setattr(request, key, int(value) if key == "max_tokens" else float(value))
    if plan.overrides:
        for key, value in request_settings(plan.overrides).items():
            setattr(request, key, value)
    # File rules with limits or set govern every target tried, not only this request's facts.
    ex.governed = TargetRules(ex.facts, plan, ex.state.ruleset) if ex.state.ruleset.governs else None
    # Scope values are read only by limits (most requests have none).
    if plan.limits or ex.governed is not None:
        ex.scopes = {"session": session.scope(), "caller": ex.ctx.caller}
