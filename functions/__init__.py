"""Thin trigger adapters (Blueprints): parse the trigger, call `shared`, map the result."""
