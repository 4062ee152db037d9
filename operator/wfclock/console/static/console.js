// The viewer's own time zone and live countdowns. The pages work without it (times in UTC and
// in each schedule's zone are rendered by the server).
"use strict";
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
    timeZoneName: "short",
  });
  function countdown(ms) {
    const ahead = ms >= 0;
    let left = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(left / 86400); left -= d * 86400;
    const h = Math.floor(left / 3600); left -= h * 3600;
    const m = Math.floor(left / 60); const s = left - m * 60;
    let text;
    if (d) text = h ? `${d} d ${h} h` : `${d} d`;
    else if (h) text = m ? `${h} h ${m} min` : `${h} h`;
    else if (m) text = `${m} min ${s} s`;
    else if (s) text = `${s} s`;
    else return "now";
    return ahead ? `in ${text}` : `${text} ago`;
  }
  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll(".countdown[data-at]")) {
      el.textContent = countdown(Date.parse(el.dataset.at) - now);
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    for (const el of document.querySelectorAll("time.local[datetime]")) {
      el.textContent = fmt.format(new Date(el.getAttribute("datetime")));
      el.title = zone;
    }
    for (const el of document.querySelectorAll(".viewer-zone")) {
      el.textContent = `your time zone: ${zone}`;
    }
    tick();
    setInterval(tick, 1000);
  });
})();
