"""The box starts as a real process, serves its status page, and stops cleanly on Ctrl-C."""
import json
import signal
import urllib.request


def test_box_serves_status_and_stops_on_sigint(box_factory):
    box = box_factory()
    with urllib.request.urlopen(f"http://127.0.0.1:{box.web_port}/status.json", timeout=5) as r:
        st = json.load(r)
    assert st["engine"]
    assert box.stop(signal.SIGINT) == 0
    assert "officebox stopped" in box.output()
