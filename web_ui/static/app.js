// Office box: small progressive enhancements. Every page works without this file.
"use strict";
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Confirm dangerous actions: <button data-confirm="Really?">
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-confirm]");
    if (b && !window.confirm(b.getAttribute("data-confirm"))) ev.preventDefault();
  });
  // <select data-autosubmit> submits its form when changed.
  document.addEventListener("change", (ev) => {
    const s = ev.target.closest("[data-autosubmit]");
    if (s && s.form) s.form.requestSubmit();
  });

  // Timers: <span class="timer" data-since="unix seconds"> counts up from the server's clock.
  let offset = 0; // server time - local time, seconds
  const fmtClock = (s) => {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
  };
  const tick = () => {
    const now = Date.now() / 1000 + offset;
    document.querySelectorAll(".timer[data-since]").forEach((el) => {
      el.textContent = fmtClock(now - parseFloat(el.dataset.since));
    });
  };
  setInterval(tick, 1000);

  // Live regions fed by Server-Sent Events: <div data-stream="/url" data-now="...">; each
  // `snapshot` event carries {now, html} rendered (and escaped) by the server.
  document.querySelectorAll("[data-stream]").forEach((box) => {
    if (box.dataset.now) offset = parseFloat(box.dataset.now) - Date.now() / 1000;
    const status = document.getElementById("live-status");
    const es = new EventSource(box.dataset.stream);
    es.addEventListener("snapshot", (ev) => {
      const d = JSON.parse(ev.data);
      offset = d.now - Date.now() / 1000;
      box.innerHTML = d.html;
      box.dataset.version = d.version;
      if (status) status.textContent = status.dataset.ok || "";
      box.dispatchEvent(new CustomEvent("obx:update", { bubbles: true }));
    });
    es.addEventListener("error", () => { if (status) status.textContent = status.dataset.lost || ""; });
  });

  // Long operations: <div data-job="id"> with a <progress> and a [data-step] text inside.
  document.querySelectorAll("[data-job]").forEach((el) => {
    const bar = el.querySelector("progress"), step = el.querySelector("[data-step]");
    const poll = async () => {
      let j;
      try {
        const r = await fetch("/jobs/" + encodeURIComponent(el.dataset.job), { headers: { Accept: "application/json" } });
        j = await r.json();
      } catch (e) { setTimeout(poll, 1500); return; }
      if (bar) bar.value = j.progress;
      if (step && j.step_text) step.textContent = j.step_text;
      if (j.state === "running") { setTimeout(poll, 400); return; }
      window.location.assign(el.dataset.done || window.location.href);
    };
    poll();
  });

  // fetch() helper for scripts: the CSRF token goes in a header.
  window.obxPost = (url, body) => fetch(url, {
    method: "POST", headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/json" },
    body: JSON.stringify(body || {}), credentials: "same-origin",
  });
})();
