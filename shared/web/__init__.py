"""Server-rendered pages (Jinja2, autoescaped, no external assets)."""
