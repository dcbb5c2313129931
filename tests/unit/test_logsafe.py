from shared.logsafe import clean


def test_line_breaks_and_controls_cannot_forge_log_lines():
    text = "evil.exe\r\nExecuted 'Functions.x' (Succeeded)\x1b[31m\u2028tail\\"
    out = clean(text)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\u2028" not in out
    assert out == "evil.exe\\r\\nExecuted 'Functions.x' (Succeeded)\\x1b[31m\\u2028tail\\\\"


def test_length_is_capped():
    assert len(clean("a" * 10_000, limit=100)) == 100
    assert clean("ünïcode ok") == "ünïcode ok"
