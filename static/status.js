// The admin's live status page. State arrives over server-sent events (/api/bot/stream); when
// the stream is refused (503: too many open pages) or a proxy buffers it, the page polls
// /api/bot instead and tries the stream again later. No page reloads, no outside assets.
(function () {
  "use strict";
  var box = document.getElementById("bot");
  if (!box) { return; }
  var T = JSON.parse(document.getElementById("page-texts").textContent);
  // Reasons, actors and incident kinds come in English and Chinese (geekai/web/reasons.py).
  var ZH = document.documentElement.lang === "zh-CN";
  function shown(row, field) { return (ZH && row[field + "_zh"]) || row[field]; }
  var POLL_MS = 2000;
  var STREAM_RETRY_MS = 30000;
  var FIRST_MESSAGE_MS = 5000;   // a stream that shows nothing this long is being buffered
  var SILENCE_MS = 40000;        // the server pings every 15 s
  var last = { state: box.dataset.state, since: box.dataset.since };
  var mode = "";
  var pageUrl = $("events").dataset.pageUrl;  // a page of history, in the page's own size
  var older = $("older");
  var noMore = document.createElement("span");
  noMore.hidden = true;
  older.after(noMore);

  // ----- small helpers ------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  // Every time is China time (UTC+8, no daylight saving), as on the other pages and in the CLI
  // (geekai/display_time.py): the same wall clock whatever this device's zone.
  var UTC_OFFSET_MS = 8 * 3600 * 1000;
  function localTime(iso) {
    if (!iso) { return "—"; }
    var d = new Date(Date.parse(iso) + UTC_OFFSET_MS);
    if (isNaN(d)) { return iso; }
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  function hourMinute(date) {
    var d = new Date(date.getTime() + UTC_OFFSET_MS);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }
  function setTime(el, iso) {
    el.setAttribute("datetime", iso || "");
    el.textContent = localTime(iso);
  }
  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) { setTime(el, el.getAttribute("datetime")); });
  }
  function clock(seconds) {
    var s = Math.max(0, Math.round(seconds));
    return Math.floor(s / 60) + ":" + pad(s % 60);
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); });
  }

  // ----- rendering ------------------------------------------------------------------------
  function render(s) {
    var qrChanged = s.state === "waiting_for_scan" && (last.state !== s.state || last.since !== s.since);
    box.dataset.state = s.state;
    box.dataset.since = s.since || "";
    var badge = $("state");
    badge.className = "badge state-" + s.state;
    badge.textContent = T[s.state] || s.state;
    $("state-code").textContent = s.state;
    box.querySelectorAll("[data-when]").forEach(function (el) {
      el.hidden = el.dataset.when.split(" ").indexOf(s.state) < 0;
    });
    box.querySelectorAll("button[data-enabled-in]").forEach(function (button) {
      button.disabled = button.dataset.enabledIn.split(" ").indexOf(s.state) < 0;
    });
    if (qrChanged) { $("qr").src = $("qr").dataset.url + "?t=" + encodeURIComponent(s.since); }
    $("qr-countdown").dataset.deadline = s.qr_expires_at || "";
    $("retry-countdown").dataset.deadline = s.next_retry_at || "";
    renderVerify(s.verify_code || "");
    $("nickname").textContent = s.account || "";
    $("reason").textContent = shown(s, "reason") || "—";
    $("account").textContent = s.account || "—";
    $("attempt").textContent = s.attempt;
    box.querySelectorAll("time.since").forEach(function (el) { setTime(el, s.since); });
    $("detail").hidden = !s.detail;
    $("detail-text").textContent = s.detail || "";
    var online = $("online");
    online.className = s.state === "logged_in" ? "ok" : "warn";
    online.textContent = s.state === "logged_in" ? online.dataset.on : online.dataset.off;
    last = s;
    tick();
  }

  // iLink's login may ask for the number the phone shows: required, wrong, or being checked.
  function renderVerify(code) {
    var asked = code === "required" || code === "wrong";
    $("panel-confirm").dataset.code = code;
    $("confirm-steps").hidden = !!code;
    $("verify-form").hidden = !asked;
    $("verify-wrong").hidden = code !== "wrong";
    $("verify-checking").hidden = code !== "checking";
    if (asked && last.verify_code !== code) { $("verify-code").value = ""; }
  }

  function tick() {
    var qr = $("qr-countdown"), retry = $("retry-countdown");
    qr.hidden = retry.hidden = lostSince !== null;  // a countdown from a state nobody vouches for
    if (lostSince !== null) { return; }
    if (qr.dataset.deadline) {
      var left = (new Date(qr.dataset.deadline) - Date.now()) / 1000;
      qr.textContent = left > 0 ? T.qr_expires_in.replace("{t}", clock(left)) : T.qr_expired_wait;
      qr.classList.toggle("urgent", left < 30);
    }
    if (retry.dataset.deadline) {
      var wait = (new Date(retry.dataset.deadline) - Date.now()) / 1000;
      retry.textContent = T.next_retry + ": " + localTime(retry.dataset.deadline) +
        " (" + T.retry_in.replace("{t}", clock(wait)) + ")";
    }
  }

  function eventRow(e) {
    var row = document.createElement("tr");
    row.dataset.id = e.id;
    var when = document.createElement("time");
    setTime(when, e.at);
    var change = document.createElement("td");
    [["state-" + e.from, T[e.from] || e.from], [null, " → "], ["state-" + e.to, T[e.to] || e.to]].forEach(function (part) {
      var span = document.createElement("span");
      if (part[0]) { span.className = part[0]; }
      span.textContent = part[1];
      change.appendChild(span);
    });
    var reason = document.createElement("td");
    reason.textContent = shown(e, "reason");
    if (e.detail) {
      var details = document.createElement("details"), summary = document.createElement("summary"),
        pre = document.createElement("pre");
      summary.textContent = T.details;
      pre.textContent = e.detail;
      details.append(summary, pre);
      reason.appendChild(details);
    }
    var cells = [document.createElement("td"), change, reason, document.createElement("td")];
    cells[0].appendChild(when);
    cells[3].textContent = shown(e, "actor");
    row.append.apply(row, cells);
    return row;
  }

  function addEvents(events, reset) {
    var body = document.querySelector("#events tbody");
    if (reset) {
      body.textContent = "";
      events.forEach(function (e) { body.appendChild(eventRow(e)); });
      var oldest = events[events.length - 1];
      older.hidden = !oldest;
      noMore.hidden = true;
      if (oldest) { older.href = pageUrl + "&before=" + oldest.id; }
      return;
    }
    // Newest first in the message; each goes on top unless the page has it already.
    events.slice().reverse().forEach(function (e) {
      if (!body.querySelector('tr[data-id="' + e.id + '"]')) { body.insertBefore(eventRow(e), body.firstChild); }
    });
  }

  function renderStats(stats) {
    Object.keys(stats || {}).forEach(function (window) {
      var row = document.querySelector('#counters tr[data-window="' + window + '"]');
      if (!row) { return; }
      var s = stats[window];
      row.querySelector('[data-field="logins"]').textContent = s.logins;
      row.querySelector('[data-field="failures"]').textContent = s.failures;
      row.querySelector('[data-field="uptime_percent"]').textContent =
        s.uptime_percent === null ? "—" : s.uptime_percent + "%";
    });
  }

  function renderAlerts(alerts) {
    if (!alerts) { return; }
    var incident = alerts.incident, open = $("open-incident");
    open.textContent = incident ? "#" + incident.id + " " + (ZH ? incident.kind_zh : incident.kind_en) + ": " + shown(incident, "reason")
      : open.dataset.none;
    $("alerts-pending").textContent = alerts.deliveries.pending;
    var failed = $("alerts-failed");
    failed.textContent = alerts.deliveries.failed;
    failed.className = alerts.deliveries.failed ? "error" : "";
    $("alerts-deliveries").hidden = !(alerts.deliveries.failed || alerts.deliveries.pending);
  }

  function apply(message) {
    render(message.state);
    addEvents(message.events, message.reset);
    renderStats(message.stats);
    renderAlerts(message.alerts);
    refreshPhone();
  }

  // Nothing answers (neither the stream nor a poll): the page cannot vouch for what it shows. The
  // service line says since when, the QR goes (it may be dead), countdowns stop; all comes back
  // with the next answer.
  var lostSince = null;
  var serviceLine = $("service-line"), serviceUp = serviceLine.textContent;
  function setMode(next) {
    mode = next;
    var el = $("live-mode");
    el.dataset.mode = next;
    el.textContent = next === "live" ? "● " + T.live : next === "polling" ? "○ " + T.polling : T.offline;
    var lost = next === "offline";
    if (lost && lostSince === null) { lostSince = new Date(); }
    if (!lost) { lostSince = null; }
    document.body.classList.toggle("connection-lost", lost);
    serviceLine.className = lost ? "up lost" : "up";
    serviceLine.textContent = lost ? "✖ " + T.connection_lost_since.replace("{t}", hourMinute(lostSince)) : serviceUp;
    $("qr").hidden = lost;
    tick();
  }

  // ----- polling, the fallback --------------------------------------------------------------
  var pollTimer = null;
  function poll() {
    getJSON("/api/bot").then(function (s) {
      var changed = ["state", "since", "qr_expires_at", "account", "reason"].some(function (k) { return s[k] !== last[k]; });
      render(s);
      setMode("polling");
      if (changed) {
        getJSON(pageUrl).then(function (page) { addEvents(page.events, false); });
        getJSON("/api/bot/stats").then(renderStats);
        refreshPhone();
      }
    }).catch(function () { setMode("offline"); }).then(function () {
      if (pollTimer !== null) { pollTimer = setTimeout(poll, POLL_MS); }
    });
  }
  function startPolling() { if (pollTimer === null) { pollTimer = setTimeout(poll, 0); } }
  function stopPolling() { clearTimeout(pollTimer); pollTimer = null; }

  // ----- the stream -------------------------------------------------------------------------
  var source = null, opened = 0, heard = 0;
  function connect() {
    if (!window.EventSource) { startPolling(); return; }
    // From the newest row the page shows: only what it missed comes, and older rows stay.
    var newest = document.querySelector("#events tbody tr[data-id]");
    source = new EventSource("/api/bot/stream" + (newest ? "?last_id=" + newest.dataset.id : ""));
    opened = Date.now();
    heard = 0;
    source.addEventListener("state", function (e) {
      heard = Date.now();
      stopPolling();
      setMode("live");
      apply(JSON.parse(e.data));
    });
    source.addEventListener("ping", function () { heard = Date.now(); });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        giveUpStream();  // refused (503, 401): the browser will not retry by itself
      } else {
        setMode("offline");  // the server went away; EventSource reconnects (retry: 2 s)
      }
    };
  }
  function giveUpStream() {
    if (source) { source.close(); source = null; }
    startPolling();
    setTimeout(connect, STREAM_RETRY_MS);
  }
  setInterval(function () {
    tick();
    if (!source || source.readyState !== EventSource.OPEN) { return; }
    var now = Date.now();
    if ((!heard && now - opened > FIRST_MESSAGE_MS) || (heard && now - heard > SILENCE_MS)) { giveUpStream(); }
  }, 1000);

  // ----- controls ---------------------------------------------------------------------------
  function submit(form, submitter) {
    // A button with its own formaction (the phone's forged payment) posts the same fields elsewhere.
    var action = (submitter && submitter.getAttribute("formaction")) || form.action;
    return fetch(action, { method: "POST", credentials: "same-origin", body: new FormData(form),
      headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) { throw new Error(body.error || r.status); }
          return body;
        });
      });
  }
  function showError(err) {
    var el = $("action-error");
    el.textContent = err ? T.action_failed + ": " + err.message : "";
    el.hidden = !err;
  }
  document.querySelectorAll("form.control").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var question = form.querySelector("button").dataset.confirm;
      if (question && !window.confirm(question)) { return; }
      // Polling: look now, restarting the one polling chain rather than adding another.
      submit(form).then(function () { showError(null); if (mode !== "live") { stopPolling(); startPolling(); } })
        .catch(showError);
    });
  });

  $("verify-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    submit(form).then(function (state) { showError(null); render(state); }).catch(showError);
  });

  older.addEventListener("click", function (event) {
    event.preventDefault();
    getJSON(older.href).then(function (page) {
      var body = document.querySelector("#events tbody");
      page.events.forEach(function (e) {
        if (!body.querySelector('tr[data-id="' + e.id + '"]')) { body.appendChild(eventRow(e)); }
      });
      if (page.next) { older.href = page.next; } else { older.hidden = true; noMore.textContent = T.no_more; noMore.hidden = false; }
    });
  });

  // ----- the simulated phone (demo mode only) -------------------------------------------------
  var phone = $("phone");
  var phoneTimer = null;
  function renderPhone(view) {
    $("phone-state").textContent = T["phone_" + view.phone] || view.phone;
    phone.dataset.phone = view.phone;
    var code = $("phone-code");
    code.hidden = !view.code;
    code.textContent = view.code ? T.phone_code.replace("{code}", view.code) : "";
    var chat = $("phone-chat");
    chat.textContent = "";
    view.texts.forEach(function (t) {
      var item = document.createElement("li"), mark = document.createElement("small");
      item.textContent = t.text;
      mark.textContent = t.delivered ? "✓ " + T.phone_delivered : "… " + T.phone_pending;
      item.appendChild(mark);
      chat.appendChild(item);
    });
    // Until the bot has fetched every text, look again shortly.
    var pending = view.texts.some(function (t) { return !t.delivered; });
    clearTimeout(phoneTimer);
    if (pending) { phoneTimer = setTimeout(refreshPhone, 500); }
  }
  function refreshPhone() {
    if (phone) { getJSON(phone.dataset.url).then(renderPhone).catch(function () {}); }
  }
  if (phone) {
    phone.querySelectorAll("form.phone-action").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        submit(form, event.submitter).then(function (view) {
          showError(null);
          renderPhone(view);
          if (form.classList.contains("send")) { $("phone-text").value = ""; }
        }).catch(showError);
      });
    });
  }

  // Uptime moves while the state stands still; messages only come with changes.
  setInterval(function () { getJSON("/api/bot/stats").then(renderStats).catch(function () {}); }, 60000);

  localizeTimes(document);
  tick();
  refreshPhone();
  connect();
}());
