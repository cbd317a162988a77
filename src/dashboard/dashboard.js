// Tocsin dashboard: progressive enhancement only; every page works without this file.
// Keeps "in 4m 10s" / "3m ago" countdowns current, measured against the server's clock
// (the page says what time the server thought it was when it rendered).
(function () {
  "use strict";
  var serverNow = Date.parse(document.body.getAttribute("data-now"));
  var offset = isNaN(serverNow) ? 0 : serverNow - Date.now();
  function span(ms) {
    var s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + (s % 60) + "s";
    return (s % 60) + "s";
  }
  function tick() {
    var now = Date.now() + offset;
    var els = document.querySelectorAll("time.countdown");
    for (var i = 0; i < els.length; i++) {
      var t = Date.parse(els[i].getAttribute("datetime"));
      if (isNaN(t)) continue;
      var d = t - now;
      els[i].textContent = d >= 0 ? "in " + span(d) : span(d) + " ago";
      els[i].classList.toggle("late", d < 0 && els[i].closest(".notice, .next") !== null);
    }
  }
  tick();
  setInterval(tick, 1000);
  // Ask before resolving: it stops escalation for everyone.
  var resolve = document.getElementById("resolve");
  if (resolve) {
    resolve.form.addEventListener("submit", function (e) {
      if (!window.confirm("Resolve this incident?")) e.preventDefault();
    });
  }
})();
