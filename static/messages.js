// The status page's messages card: re-read every few seconds from /api/messages (the same feed
// the main application reads), so new messages and status changes show without a reload. Text
// is only ever set with textContent: whatever people write is shown, never run.
(function () {
  "use strict";
  var card = document.getElementById("messages");
  if (!card) { return; }
  var T = JSON.parse(document.getElementById("page-texts").textContent);
  var REFRESH_MS = 4000;
  var ZH = document.documentElement.lang === "zh-CN";  // why a message failed, in the page's language
  var body = card.querySelector("#message-rows tbody");
  var form = document.getElementById("message-filter");
  var FILTERS = { all: {}, "in": { direction: "in" }, out: { direction: "out" }, failed: { status: "failed" } };

  var localTime = window.geekaiLocalTime;  // status.js, loaded first
  // The column names, for the phone layout (table.stack: each value under its column's name).
  var LABELS = Array.prototype.map.call(card.querySelectorAll("#message-rows thead th"), function (th) { return th.textContent; });
  function cell(text, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    td.textContent = text;
    return td;
  }
  function labelled(tr) {
    Array.prototype.forEach.call(tr.children, function (td, n) { if (LABELS[n]) { td.dataset.label = LABELS[n]; } });
    return tr;
  }

  function row(m) {
    var tr = document.createElement("tr");
    tr.className = "message message-" + m.status;
    tr.dataset.id = m.id;
    var when = document.createElement("td"), time = document.createElement("time");
    time.setAttribute("datetime", m.created_at);
    time.textContent = localTime(m.created_at);
    when.appendChild(time);
    var who = document.createElement("td"), contact = document.createElement("span");
    contact.className = "contact";
    contact.textContent = m.contact;
    who.appendChild(contact);
    if (m.contact_name && m.contact_name !== m.contact) {
      var name = document.createElement("span");
      name.className = "muted";
      name.textContent = " (" + m.contact_name + ")";
      who.appendChild(name);
    }
    var status = cell(T[m.status] || m.status, "long");
    if (m.error) {
      var error = document.createElement("div");
      error.className = "message-error";
      error.textContent = ZH && m.error_zh ? m.error_zh : m.error;
      status.appendChild(error);
    }
    who.className = "long";
    tr.append(when, cell(T["direction_" + m.direction] || m.direction), who, cell(m.text, "message-text long"), status);
    return labelled(tr);
  }

  function render(messages) {
    body.textContent = "";
    if (!messages.length) {
      var empty = document.createElement("tr"), td = cell(T.no_messages, "muted");
      empty.className = "empty";
      td.colSpan = 5;
      empty.appendChild(td);
      body.appendChild(empty);
      return;
    }
    messages.forEach(function (m) { body.appendChild(row(m)); });
  }

  function refresh() {
    return fetch(card.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (page) { render(page.messages); })
      .catch(function () {});  // the status card already says when the service is away
  }

  // The filter applies at once; the form still works without this script (a page load).
  form.addEventListener("change", function () {
    var choice = form.querySelector("input[name=messages]:checked").value;
    var query = new URLSearchParams(Object.assign({ order: "newest", limit: "50" }, FILTERS[choice]));
    card.dataset.url = card.dataset.url.split("?")[0] + "?" + query.toString();
    var here = new URL(window.location.href);
    here.searchParams.set("messages", choice);
    window.history.replaceState(null, "", here.toString());
    refresh();
  });
  form.addEventListener("submit", function (event) { event.preventDefault(); refresh(); });

  body.querySelectorAll("time[datetime]").forEach(function (el) { el.textContent = localTime(el.getAttribute("datetime")); });
  setInterval(refresh, REFRESH_MS);
}());
