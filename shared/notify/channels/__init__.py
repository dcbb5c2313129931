"""Teams and Slack channels on a notification rule: webhook URLs kept as app settings,
messages rendered inert, one post per (rule, channel, alert version) through the ledger."""
