"""The box starts as a real process, serves its web page, and stops cleanly on Ctrl-C."""
import signal
import urllib.request


def test_box_serves_web_page_and_stops_on_sigint(box_factory):
    box = box_factory()
    with urllib.request.urlopen(f"http://127.0.0.1:{box.web_port}/", timeout=5) as r:
        assert r.status == 200
        page = r.read().decode()
    assert "<html" in page.lower()
    assert "setup code:" in box.output()  # first start: no admin yet, a one-time code is printed
    assert box.stop(signal.SIGINT) == 0
    assert "officebox stopped" in box.output()
