// Keeps the admin's status page current without reloads: polls /api/bot and swaps the QR.
(function () {
  "use strict";
  var box = document.getElementById("bot");
  if (!box) { return; }
  var last = "";

  function show(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value || "—"; }
  }

  function render(s) {
    var key = [s.state, s.since, s.qr_expires_at].join("|");
    if (key === last) { return; }
    last = key;
    box.dataset.state = s.state;
    var state = document.getElementById("state");
    state.className = "state-" + s.state;
    state.querySelector("code").textContent = s.state;
    show("reason", s.reason);
    show("since", s.since);
    show("account", s.account);
    show("next-retry", s.next_retry_at);
    show("qr-expires", s.qr_expires_at);
    var qrBox = document.getElementById("qr-box");
    qrBox.hidden = s.state !== "waiting_for_scan";
    if (!qrBox.hidden) { document.getElementById("qr").src = "/api/bot/qr.png?t=" + encodeURIComponent(s.since); }
    document.getElementById("confirm-hint").hidden = s.state !== "waiting_for_confirm";
    var online = document.getElementById("online");
    online.className = s.state === "logged_in" ? "ok" : "warn";
  }

  function poll() {
    fetch("/api/bot", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) { if (s) { render(s); } })
      .catch(function () {})
      .then(function () { setTimeout(poll, 1500); });
  }

  document.querySelectorAll("form.control").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      fetch(form.action, { method: "POST", credentials: "same-origin", body: new FormData(form) })
        .then(function () { last = ""; });
    });
  });
  poll();
}());
