"""What Teams (Adaptive Cards) and Slack (Block Kit) accept from an incoming webhook: the
documented schema rules and limits, encoded by hand (sources named in each module), so
the local receiver and the tests refuse what the platform would."""

from devtools.webhook_schemas.adaptive_card import card_problems
from devtools.webhook_schemas.adaptive_card import message_problems as teams_problems
from devtools.webhook_schemas.block_kit import message_problems as slack_problems

__all__ = ["card_problems", "slack_problems", "teams_problems"]
